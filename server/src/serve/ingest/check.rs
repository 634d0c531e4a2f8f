//! Ingest-side event checks without building a `serde_json::Value`.
//!
//! An NDJSON body is split into lines, and each line is checked in one streaming pass
//! against the stream's declared columns: it must be a JSON object, every declared column
//! must be absent, null or of its type (the rules of [`matcher::value::RowDecoder`]), the
//! event-time column must be present, and the key column's text gives the partition. The
//! line is then logged as sent, borrowed from the request body (no copy until the log
//! frames the batch).
//!
//! The pass only ever says "certainly valid" or "don't know": anything it does not accept
//! (a type error, an escaped field name, a duplicate field, …) goes through the full
//! decoder, which gives the authoritative answer and the error message. So the fast path
//! cannot accept an event the decoder would reject (tested against the decoder below).

use super::{EventIn, StreamInfo};
use crate::serve::routing::{self, partition_of_hash};
use dsl::ast::DataType;
use dsl::plan::StreamDef;
use matcher::value::Value;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Value as Json};
use std::borrow::Cow;
use std::fmt;

/// The parts of a stream definition the check needs.
#[derive(Debug, Clone)]
pub struct Schema {
    columns: Vec<(String, DataType)>,
    event_time: Option<usize>,
    key: Option<usize>,
}

/// What the pass learned about a valid event.
#[derive(Debug, PartialEq, Eq)]
pub struct Checked {
    /// The hash of the key column's value as the decoder makes it
    /// ([`routing::key_hash`]); that of `Null` when the stream has no key or the event
    /// lacks it.
    pub key_hash: u64,
}

impl Schema {
    pub fn new(def: &StreamDef) -> Schema {
        let pos = |c: &Option<String>| {
            c.as_ref()
                .and_then(|c| def.columns.iter().position(|(n, _)| n == c))
        };
        Schema {
            columns: def.columns.clone(),
            event_time: pos(&def.event_time),
            key: pos(&def.key),
        }
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|(n, _)| n == name)
    }

    /// Checks one event (the trimmed line). `None` = not certainly valid: use the decoder.
    pub fn check(&self, line: &[u8]) -> Option<Checked> {
        let mut de = serde_json::Deserializer::from_slice(line);
        let seen = EventSeed { schema: self }.deserialize(&mut de).ok()?;
        de.end().ok()?;
        if let Some(et) = self.event_time {
            // The decoder yields an event time only for TIMESTAMP and INT columns.
            let ty = self.columns[et].1;
            if !seen.event_time_set || !matches!(ty, DataType::Timestamp | DataType::Int) {
                return None;
            }
        }
        Some(Checked {
            key_hash: seen.key_hash.unwrap_or(routing::FNV_EMPTY),
        })
    }
}

#[derive(Default)]
struct Seen {
    /// The last occurrence of the event-time column was non-null.
    event_time_set: bool,
    /// Hash of the last occurrence of the key column (None: absent).
    key_hash: Option<u64>,
}

struct EventSeed<'a> {
    schema: &'a Schema,
}

/// A "not certainly valid" marker error (the message is never shown).
fn unsure<E: de::Error>() -> E {
    E::custom("use the decoder")
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = Seen;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Seen, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EventSeed<'_> {
    type Value = Seen;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Seen, A::Error> {
        let mut seen = Seen::default();
        // Duplicate names: the decoder keeps the last value; to stay simple, any
        // duplicate of a declared column goes to the decoder.
        let mut present: u64 = 0;
        while let Some(name) = map.next_key_seed(NameSeed)? {
            let Some(i) = self.schema.find(name) else {
                map.next_value_seed(Skip)?;
                continue;
            };
            if i < 64 {
                if present & (1 << i) != 0 {
                    return Err(unsure());
                }
                present |= 1 << i;
            } else {
                return Err(unsure());
            }
            let want_key = self.schema.key == Some(i);
            let v = map.next_value_seed(Column {
                ty: self.schema.columns[i].1,
                want_key,
            })?;
            if self.schema.event_time == Some(i) {
                seen.event_time_set = !v.null;
            }
            if want_key {
                seen.key_hash = v.key_hash;
            }
        }
        Ok(seen)
    }
}

/// Field names: only unescaped (borrowed) names; an escaped one goes to the decoder.
struct NameSeed;

impl<'de> DeserializeSeed<'de> for NameSeed {
    type Value = &'de str;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<&'de str, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for NameSeed {
    type Value = &'de str;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<&'de str, E> {
        Ok(v)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<&'de str, E> {
        Err(unsure())
    }
}

/// Any JSON value, consumed without allocating (serde_json still checks its syntax,
/// UTF-8 and nesting depth, as the decoder's parse would).
struct Skip;

impl<'de> DeserializeSeed<'de> for Skip {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
        while s.next_element_seed(Skip)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
        while m.next_key_seed(Skip)?.is_some() {
            m.next_value_seed(Skip)?;
        }
        Ok(())
    }
}

/// A declared column's value: checked against its type.
struct Column {
    ty: DataType,
    want_key: bool,
}

struct ColumnSeen {
    null: bool,
    key_hash: Option<u64>,
}

impl Column {
    /// Valid; the key's hash is that of the value the decoder makes of it
    /// ([`routing::key_hash`]), built only for the key column.
    fn ok<E>(&self, value: impl FnOnce() -> Value) -> Result<ColumnSeen, E> {
        Ok(ColumnSeen {
            null: false,
            key_hash: self.want_key.then(|| routing::key_hash(&value())),
        })
    }
}

impl<'de> DeserializeSeed<'de> for Column {
    type Value = ColumnSeen;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<ColumnSeen, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Column {
    type Value = ColumnSeen;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a column value")
    }
    fn visit_unit<E>(self) -> Result<ColumnSeen, E> {
        Ok(ColumnSeen {
            null: true,
            // A null key is `Null`, as an absent one.
            key_hash: self.want_key.then(|| routing::key_hash(&Value::Null)),
        })
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<ColumnSeen, E> {
        match self.ty {
            DataType::Bool | DataType::Json => self.ok(|| Value::Bool(v)),
            _ => Err(unsure()),
        }
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ColumnSeen, E> {
        match self.ty {
            DataType::Int | DataType::Json => self.ok(|| Value::Int(v)),
            DataType::Float => self.ok(|| Value::Float(v as f64)),
            DataType::Timestamp => self.ok(|| Value::Timestamp(v)),
            _ => Err(unsure()),
        }
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ColumnSeen, E> {
        match (self.ty, i64::try_from(v)) {
            (DataType::Float, _) => self.ok(|| Value::Float(v as f64)),
            (DataType::Int | DataType::Json, Ok(i)) => self.ok(|| Value::Int(i)),
            (DataType::Timestamp, Ok(i)) => self.ok(|| Value::Timestamp(i)),
            // A JSON column's number above i64::MAX: the decoder's answer.
            _ => Err(unsure()),
        }
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<ColumnSeen, E> {
        let int_ok = v.fract() == 0.0 && v.abs() < 9.0e18;
        match self.ty {
            DataType::Int if int_ok => self.ok(|| Value::Int(v as i64)),
            DataType::Float | DataType::Json => self.ok(|| Value::Float(v)),
            _ => Err(unsure()),
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<ColumnSeen, E> {
        match self.ty {
            // As `routing::key_hash` of `Value::String`, without the copy.
            DataType::String | DataType::Json => Ok(ColumnSeen {
                null: false,
                key_hash: self.want_key.then(|| routing::fnv1a(v.as_bytes())),
            }),
            DataType::Timestamp => match matcher::value::parse_timestamp(v) {
                Some(ms) => self.ok(|| Value::Timestamp(ms)),
                None => Err(unsure()),
            },
            _ => Err(unsure()),
        }
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<ColumnSeen, A::Error> {
        if self.ty != DataType::Json || self.want_key {
            return Err(unsure());
        }
        while s.next_element_seed(Skip)?.is_some() {}
        Ok(ColumnSeen {
            null: false,
            key_hash: None,
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<ColumnSeen, A::Error> {
        if self.ty != DataType::Json || self.want_key {
            return Err(unsure());
        }
        while m.next_key_seed(Skip)?.is_some() {
            m.next_value_seed(Skip)?;
        }
        Ok(ColumnSeen {
            null: false,
            key_hash: None,
        })
    }
}

/// The lines of an NDJSON body: (index among non-blank lines, trimmed line). Blank
/// lines are skipped and not counted; `\r\n` endings are accepted.
pub fn ndjson_lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .map(|l| l.trim_ascii())
}

/// A request's events split by partition, ready to append.
pub struct Batches<'a> {
    /// Per partition, the records (as sent when the request had them as text).
    pub per_part: Vec<Vec<Cow<'a, [u8]>>>,
    /// `{"index": i, "error": "..."}` per rejected event.
    pub rejected: Vec<Json>,
    pub accepted: usize,
}

impl<'a> Batches<'a> {
    fn new(partitions: u32) -> Batches<'a> {
        Batches {
            per_part: vec![Vec::new(); partitions.max(1) as usize],
            rejected: Vec::new(),
            accepted: 0,
        }
    }

    fn reject(&mut self, index: usize, error: String) {
        self.rejected.push(json!({"index": index, "error": error}));
    }

    fn accept(&mut self, partition: u32, record: Cow<'a, [u8]>) {
        if let Some(p) = self.per_part.get_mut(partition as usize) {
            p.push(record);
            self.accepted += 1;
        }
    }
}

/// The full check through the decoder: the partition, or why the event is rejected.
pub fn decode_event(info: &StreamInfo, ev: &Json) -> Result<u32, String> {
    let row = info.decoder.decode(ev).map_err(|e| e.to_string())?;
    if let Some(col) = &info.event_time {
        if info.decoder.event_time(&row).is_none() {
            return Err(format!("the event-time column `{col}` is missing or null"));
        }
    }
    Ok(routing::partition_of(
        key_value(info, &row),
        info.partitions,
    ))
}

/// The key column's value of a decoded row (`Null` without a key).
pub fn key_value<'r>(info: &StreamInfo, row: &'r matcher::value::Row) -> &'r Value {
    const NULL: &Value = &Value::Null;
    match info
        .key
        .as_deref()
        .and_then(|k| info.decoder.column_index(k))
    {
        Some(i) => row.get(i),
        None => NULL,
    }
}

/// Splits parsed events (a JSON array or object body, or anything already parsed).
pub fn split_events(info: &StreamInfo, events: Vec<EventIn>) -> Batches<'static> {
    let mut b = Batches::new(info.partitions);
    for (i, ev) in events.into_iter().enumerate() {
        match ev.and_then(|(ev, raw)| {
            let p = decode_event(info, &ev)?;
            Ok((p, raw.unwrap_or_else(|| ev.to_string().into_bytes())))
        }) {
            Ok((p, raw)) => b.accept(p, Cow::Owned(raw)),
            Err(e) => b.reject(i, e),
        }
    }
    b
}

/// Splits an NDJSON body: each line is checked by the streaming pass, and only lines it
/// does not accept are parsed and decoded in full. Accepted lines are borrowed from the
/// body, as sent (trimmed).
pub fn split_ndjson<'a>(info: &StreamInfo, body: &'a [u8]) -> Batches<'a> {
    let mut b = Batches::new(info.partitions);
    for (i, line) in ndjson_lines(body).enumerate() {
        if let Some(c) = info.schema.check(line) {
            b.accept(
                partition_of_hash(c.key_hash, info.partitions),
                Cow::Borrowed(line),
            );
            continue;
        }
        let parsed = match std::str::from_utf8(line) {
            Err(e) => Err(format!("not UTF-8 (invalid byte at {})", e.valid_up_to())),
            Ok(t) => serde_json::from_str::<Json>(t).map_err(|e| format!("not valid JSON: {e}")),
        };
        match parsed.and_then(|ev| decode_event(info, &ev)) {
            Ok(p) => b.accept(p, Cow::Borrowed(line)),
            Err(e) => b.reject(i, e),
        }
    }
    b
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use matcher::value::RowDecoder;

    fn def(cols: &[(&str, DataType)], et: Option<&str>, key: Option<&str>) -> StreamDef {
        let (stmts, diags) = dsl::parse::parse_statements("CREATE STREAM s (a INT);");
        assert!(diags.is_empty());
        let mut cat = dsl::check::Catalog::new();
        cat.apply(&stmts).unwrap();
        let mut d = cat.get("s").unwrap().output.clone();
        d.columns = cols.iter().map(|(n, t)| (n.to_string(), *t)).collect();
        d.event_time = et.map(str::to_string);
        d.key = key.map(str::to_string);
        d
    }

    /// The decoder's verdict (what ingest did before the fast path).
    fn slow(d: &StreamDef, line: &str) -> Option<u64> {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        let dec = RowDecoder::new(d);
        let row = dec.decode(&v).ok()?;
        if d.event_time.is_some() && dec.event_time(&row).is_none() {
            return None;
        }
        let key = d.key.as_ref().and_then(|k| dec.column_index(k));
        Some(routing::key_hash(key.map_or(&Value::Null, |i| row.get(i))))
    }

    /// A stream with a column of every type, keyed by `id`, ordered by `ts`.
    fn every_type() -> StreamDef {
        use DataType::*;
        def(
            &[
                ("id", String),
                ("n", Int),
                ("f", Float),
                ("b", Bool),
                ("ts", Timestamp),
                ("j", Json),
            ],
            Some("ts"),
            Some("id"),
        )
    }

    #[test]
    fn never_accepts_what_the_decoder_rejects() {
        let d = every_type();
        let s = Schema::new(&d);
        let lines = [
            r#"{"id":"a","n":1,"f":2.5,"b":true,"ts":5,"j":{"x":[1,2]}}"#,
            r#"{"id":"a","ts":"2026-01-01T00:00:00Z"}"#,
            r#"{"id":"a","ts":"not a time"}"#,
            r#"{"id":"a","ts":1.5}"#,
            r#"{"id":"a","ts":null}"#,
            r#"{"id":"a"}"#,
            r#"{"id":"a","ts":5,"n":1.0}"#,
            r#"{"id":"a","ts":5,"n":1.5}"#,
            r#"{"id":"a","ts":5,"n":18446744073709551615}"#,
            r#"{"id":"a","ts":5,"n":9223372036854775807}"#,
            r#"{"id":"a","ts":5,"n":"1"}"#,
            r#"{"id":"a","ts":5,"f":1}"#,
            r#"{"id":"a","ts":5,"b":1}"#,
            r#"{"id":5,"ts":5}"#,
            r#"{"id":null,"ts":5}"#,
            r#"{"ts":5}"#,
            r#"{"ts":5,"other":{"deep":[[[1]]]},"x":"\u00e9"}"#,
            r#"{"id":"caf\u00e9","ts":5}"#,
            r#"{"i\u0064":"a","ts":5}"#,
            r#"{"id":"a","ts":5,"ts":null}"#,
            r#"{"id":"a","ts":null,"ts":5}"#,
            r#"{"id":"a","ts":5} x"#,
            r#"{"id":"a","ts":5"#,
            r#"[1,2]"#,
            r#"5"#,
            r#"{"id":"a","ts":5,"j":"text"}"#,
            r#"{"id":"a","ts":5,"x":1e400}"#,
        ];
        for l in lines {
            let fast = s.check(l.as_bytes()).map(|c| c.key_hash);
            let slow = slow(&d, l);
            if let Some(h) = fast {
                assert_eq!(Some(h), slow, "fast path accepted {l} differently");
            }
        }
        // The common case is accepted by the fast path.
        assert!(s.check(lines[0].as_bytes()).is_some());
        assert!(s.check(lines[1].as_bytes()).is_some());
        // Deep nesting beyond serde_json's limit is not accepted.
        let deep = format!(
            r#"{{"id":"a","ts":5,"x":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(s.check(deep.as_bytes()).is_none());
        assert!(slow(&d, &deep).is_none());
    }

    /// Differential: random events (names, types, nulls, duplicates, escapes) — the fast
    /// path, when it accepts, agrees with the decoder, and it accepts most valid events.
    #[test]
    fn random_events_agree_with_the_decoder() {
        let d = every_type();
        let s = Schema::new(&d);
        let mut x: u64 = 0x9e3779b97f4a7c15;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let names = ["id", "n", "f", "b", "ts", "j", "other", "i\\u0064"];
        let values = [
            "null",
            "1",
            "-7",
            "2.0",
            "2.5",
            "1e3",
            "18446744073709551615",
            "true",
            "\"a\"",
            "\"2026-01-01T00:00:00Z\"",
            "\"x\\\"y\"",
            "[1,{\"a\":2}]",
            "{}",
            "\"caf\\u00e9\"",
        ];
        let cases = if std::env::var("WEIR_LONG_TESTS").is_ok() {
            200_000
        } else {
            5_000
        };
        let (mut both, mut valid) = (0, 0);
        for _ in 0..cases {
            let n = rnd(6);
            let mut fields: Vec<std::string::String> = (0..n)
                .map(|_| {
                    let k = names[rnd(names.len() as u64) as usize];
                    let v = values[rnd(values.len() as u64) as usize];
                    format!("\"{k}\":{v}")
                })
                .collect();
            if rnd(2) == 0 {
                // Mostly valid events: an event time somewhere.
                let at = rnd(fields.len() as u64 + 1) as usize;
                fields.insert(at, "\"ts\":5".into());
            }
            let line = format!("{{{}}}", fields.join(","));
            let fast = s.check(line.as_bytes()).map(|c| c.key_hash);
            let slow = slow(&d, &line);
            if fast.is_some() {
                assert_eq!(fast, slow, "{line}");
                both += 1;
            }
            if slow.is_some() {
                valid += 1;
            }
        }
        assert!(valid > 100, "{valid}");
        assert!(
            both * 2 > valid,
            "fast path took {both} of {valid} valid events"
        );
    }

    /// The fast path places an event where the decoder's typed key does.
    #[test]
    fn key_hash_matches_the_decoded_key() {
        use DataType::*;
        for (ty, lines) in [
            (
                String,
                vec![
                    r#"{"k":"abc"}"#,
                    r#"{"k":"a\"b"}"#,
                    r#"{}"#,
                    r#"{"k":null}"#,
                ],
            ),
            (
                Int,
                vec![r#"{"k":12}"#, r#"{"k":-3}"#, r#"{"k":4.0}"#, r#"{"k":4}"#],
            ),
            (
                Float,
                vec![
                    r#"{"k":1.5}"#,
                    r#"{"k":1e3}"#,
                    r#"{"k":7}"#,
                    r#"{"k":9007199254740993}"#,
                ],
            ),
            (
                Timestamp,
                vec![r#"{"k":1000}"#, r#"{"k":"1970-01-01T00:00:01Z"}"#],
            ),
            (Json, vec![r#"{"k":true}"#, r#"{"k":"x"}"#, r#"{"k":2.0}"#]),
        ] {
            let d = def(&[("k", ty)], None, Some("k"));
            let s = Schema::new(&d);
            for l in lines {
                let want = slow(&d, l).map(|h| partition_of_hash(h, 7));
                let got = s
                    .check(l.as_bytes())
                    .map(|c| partition_of_hash(c.key_hash, 7));
                assert_eq!(got, want, "{l}");
                assert!(got.is_some(), "{l}");
            }
        }
        // An INT key sent as 4 or 4.0 is Int(4): one partition.
        let d = def(&[("k", Int)], None, Some("k"));
        let s = Schema::new(&d);
        assert_eq!(s.check(br#"{"k":4}"#), s.check(br#"{"k":4.0}"#));
    }
}
