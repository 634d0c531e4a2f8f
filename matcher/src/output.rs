//! Output records (language §7) and their deterministic ids.
//!
//! Every engine produces [`OutputRecord`]s; the CLI, HTTP, WebSocket and Kafka all print
//! them with [`OutputRecord::to_json`], so the NDJSON is the same everywhere.
//!
//! ## Ids
//! An id is 32 hex digits: FNV-1a (128 bit) over the statement name, the input stream, the
//! log partition, the input offset of the row that completed the output and a sequence
//! number among the outputs of that statement at that offset. The same input log and
//! statements therefore give the same ids, run after run, so a replay after a crash or a
//! retry can be de-duplicated downstream by id. For a stream that is itself the output of
//! another statement, the "offset" is the id of the upstream record.

use crate::value::format_timestamp as format_ts;
use serde_json::{Map, Value as Json};

/// One output record, ready to print.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputRecord {
    /// A rule's complex event.
    Rule {
        rule: String,
        id: String,
        ts_ms: i64,
        fields: Map<String, Json>,
        late: bool,
    },
    /// A stored search's hit.
    Search {
        search: String,
        id: String,
        ts_ms: i64,
        fields: Map<String, Json>,
        /// Per MATCHES field, byte ranges `[start, end)` of the tokens that satisfied it.
        highlights: Map<String, Json>,
        late: bool,
    },
    /// A metric window's values.
    Metric {
        metric: String,
        id: String,
        start_ms: i64,
        end_ms: i64,
        group: Map<String, Json>,
        values: Map<String, Json>,
        final_: bool,
        /// A retained window re-emitted because a late event changed it (`late = 'emit'`).
        late: bool,
    },
}

impl OutputRecord {
    /// The statement that produced this record.
    pub fn statement(&self) -> &str {
        match self {
            OutputRecord::Rule { rule, .. } => rule,
            OutputRecord::Search { search, .. } => search,
            OutputRecord::Metric { metric, .. } => metric,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            OutputRecord::Rule { id, .. }
            | OutputRecord::Search { id, .. }
            | OutputRecord::Metric { id, .. } => id,
        }
    }

    /// The record as the JSON object of language §7.
    pub fn to_json(&self) -> Json {
        let mut m = Map::new();
        match self {
            OutputRecord::Rule {
                rule,
                id,
                ts_ms,
                fields,
                late,
            } => {
                m.insert("rule".into(), rule.clone().into());
                m.insert("id".into(), id.clone().into());
                m.insert("ts".into(), format_ts(*ts_ms).into());
                m.insert("fields".into(), Json::Object(fields.clone()));
                if *late {
                    m.insert("late".into(), true.into());
                }
            }
            OutputRecord::Search {
                search,
                id,
                ts_ms,
                fields,
                highlights,
                late,
            } => {
                m.insert("search".into(), search.clone().into());
                m.insert("id".into(), id.clone().into());
                m.insert("ts".into(), format_ts(*ts_ms).into());
                m.insert("fields".into(), Json::Object(fields.clone()));
                m.insert("highlights".into(), Json::Object(highlights.clone()));
                if *late {
                    m.insert("late".into(), true.into());
                }
            }
            OutputRecord::Metric {
                metric,
                id,
                start_ms,
                end_ms,
                group,
                values,
                final_,
                late,
            } => {
                m.insert("metric".into(), metric.clone().into());
                m.insert("id".into(), id.clone().into());
                let mut w = Map::new();
                w.insert("start".into(), format_ts(*start_ms).into());
                w.insert("end".into(), format_ts(*end_ms).into());
                m.insert("window".into(), Json::Object(w));
                m.insert("group".into(), Json::Object(group.clone()));
                m.insert("values".into(), Json::Object(values.clone()));
                m.insert("final".into(), (*final_).into());
                if *late {
                    m.insert("late".into(), true.into());
                }
            }
        }
        Json::Object(m)
    }

    /// One NDJSON line (no trailing newline). The same text as `to_json().to_string()`,
    /// written without building the JSON object.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| self.to_json().to_string())
    }

    /// Writes the record as one NDJSON line, newline included (no intermediate JSON
    /// object or string).
    pub fn write_line<W: std::io::Write>(&self, mut w: W) -> std::io::Result<()> {
        serde_json::to_writer(&mut w, self).map_err(std::io::Error::from)?;
        w.write_all(b"\n")
    }
}

/// Serializes as [`OutputRecord::to_json`] does, key for key, without cloning.
impl serde::Serialize for OutputRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        match self {
            OutputRecord::Rule {
                rule,
                id,
                ts_ms,
                fields,
                late,
            } => {
                m.serialize_entry("rule", rule)?;
                m.serialize_entry("id", id)?;
                m.serialize_entry("ts", &format_ts(*ts_ms))?;
                m.serialize_entry("fields", fields)?;
                if *late {
                    m.serialize_entry("late", &true)?;
                }
            }
            OutputRecord::Search {
                search,
                id,
                ts_ms,
                fields,
                highlights,
                late,
            } => {
                m.serialize_entry("search", search)?;
                m.serialize_entry("id", id)?;
                m.serialize_entry("ts", &format_ts(*ts_ms))?;
                m.serialize_entry("fields", fields)?;
                m.serialize_entry("highlights", highlights)?;
                if *late {
                    m.serialize_entry("late", &true)?;
                }
            }
            OutputRecord::Metric {
                metric,
                id,
                start_ms,
                end_ms,
                group,
                values,
                final_,
                late,
            } => {
                #[derive(serde::Serialize)]
                struct Window {
                    start: String,
                    end: String,
                }
                m.serialize_entry("metric", metric)?;
                m.serialize_entry("id", id)?;
                m.serialize_entry(
                    "window",
                    &Window {
                        start: format_ts(*start_ms),
                        end: format_ts(*end_ms),
                    },
                )?;
                m.serialize_entry("group", group)?;
                m.serialize_entry("values", values)?;
                m.serialize_entry("final", final_)?;
                if *late {
                    m.serialize_entry("late", &true)?;
                }
            }
        }
        m.end()
    }
}

/// Deterministic 128-bit id (32 hex digits) of a tuple of parts; see the module docs.
pub fn make_id(parts: &[&[u8]]) -> String {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let mut h = OFFSET;
    for part in parts {
        // Length-prefix each part so ("ab","c") and ("a","bc") differ.
        for b in (part.len() as u64).to_le_bytes().iter().chain(part.iter()) {
            h ^= *b as u128;
            h = h.wrapping_mul(PRIME);
        }
    }
    format!("{h:032x}")
}

/// The id of an output of `statement` completed by input `offset` of `stream`/`partition`.
pub fn output_id(statement: &str, stream: &str, partition: u32, offset: u64, seq: u32) -> String {
    make_id(&[
        statement.as_bytes(),
        stream.as_bytes(),
        &partition.to_le_bytes(),
        &offset.to_le_bytes(),
        &seq.to_le_bytes(),
    ])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn formats_timestamps() {
        assert_eq!(format_ts(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ts(1_767_226_200_000), "2026-01-01T00:10:00.000Z");
        assert_eq!(format_ts(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(format_ts(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let a = output_id("r", "s", 0, 7, 0);
        assert_eq!(a, output_id("r", "s", 0, 7, 0));
        assert_eq!(a.len(), 32);
        assert_ne!(a, output_id("r", "s", 0, 7, 1));
        assert_ne!(a, output_id("r", "s", 1, 7, 0));
        assert_ne!(a, output_id("r2", "s", 0, 7, 0));
        assert_ne!(make_id(&[b"ab", b"c"]), make_id(&[b"a", b"bc"]));
    }

    /// The direct serialization prints exactly what `to_json().to_string()` prints.
    #[test]
    fn direct_serialization_equals_to_json() {
        let mut fields = Map::new();
        fields.insert("z".into(), Json::from(1.5));
        fields.insert("a".into(), serde_json::json!({"n": [1, null, "x\"y"]}));
        let mut values = Map::new();
        values.insert("count".into(), Json::from(3));
        let records = [
            OutputRecord::Rule {
                rule: "r".into(),
                id: "i".into(),
                ts_ms: -5,
                fields: fields.clone(),
                late: true,
            },
            OutputRecord::Search {
                search: "s".into(),
                id: "j".into(),
                ts_ms: 1,
                fields: fields.clone(),
                highlights: values.clone(),
                late: false,
            },
            OutputRecord::Metric {
                metric: "m".into(),
                id: "k".into(),
                start_ms: 0,
                end_ms: 60_000,
                group: fields,
                values,
                final_: true,
                late: true,
            },
        ];
        for r in &records {
            let want = r.to_json().to_string();
            assert_eq!(r.to_line(), want);
            let mut buf = Vec::new();
            r.write_line(&mut buf).unwrap();
            assert_eq!(buf, format!("{want}\n").into_bytes());
        }
    }

    #[test]
    fn rule_record_shape() {
        let mut fields = Map::new();
        fields.insert("card_id".into(), "c1".into());
        let r = OutputRecord::Rule {
            rule: "card_testing".into(),
            id: "x".into(),
            ts_ms: 1_767_226_200_000,
            fields,
            late: false,
        };
        assert_eq!(
            r.to_line(),
            r#"{"rule":"card_testing","id":"x","ts":"2026-01-01T00:10:00.000Z","fields":{"card_id":"c1"}}"#
        );
    }
}
