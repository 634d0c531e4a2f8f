//! Values and rows: what an event looks like once decoded against its stream.
//!
//! An event is a JSON object. [`RowDecoder`] turns it into a [`Row`]: the declared columns
//! of the [`StreamDef`] in declaration order (type-checked and coerced), plus the undeclared
//! fields kept as JSON so that expressions can still read them (`payload.user.id`).
//!
//! Coercion rules (a declared column with any other JSON type is rejected with a
//! [`DecodeError`] naming the column):
//!
//! | column type | accepted JSON |
//! | --- | --- |
//! | `STRING` | string |
//! | `INT` | integer number (a float with no fractional part is accepted) |
//! | `FLOAT` | any number |
//! | `BOOL` | `true` / `false` |
//! | `TIMESTAMP` | RFC 3339 string (`2026-01-01T00:00:00.250Z`, offsets allowed) or integer epoch milliseconds |
//! | `JSON` | anything |
//!
//! A missing field or JSON `null` is [`Value::Null`] for every type.

use dsl::ast::DataType;
use dsl::plan::StreamDef;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;

/// One SQL value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    /// Milliseconds since the Unix epoch (UTC).
    Timestamp(i64),
    /// A JSON array or object (JSON scalars are always converted to the other variants).
    /// Boxed, so that a `Value` is 32 bytes rather than 72 (rows are vectors of values).
    Json(Box<serde_json::Value>),
}

impl Value {
    /// Converts a JSON value: scalars become the matching variant, `null` is `Null`,
    /// arrays and objects stay `Json`.
    pub fn from_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    Value::Int(i)
                } else {
                    Value::Float(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            serde_json::Value::String(s) => Value::String(s.clone()),
            other => Value::Json(Box::new(other.clone())),
        }
    }

    /// JSON rendering used in output records (timestamps as RFC 3339 UTC strings;
    /// non-finite floats as `null`).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Timestamp(ms) => serde_json::Value::String(format_timestamp(*ms)),
            Value::Json(j) => (**j).clone(),
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Numeric view (Int, Float; Timestamp as its milliseconds).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Timestamp(t) => Some(*t as f64),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Name of the type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Bool(_) => "BOOL",
            Value::Int(_) => "INT",
            Value::Float(_) => "FLOAT",
            Value::String(_) => "STRING",
            Value::Timestamp(_) => "TIMESTAMP",
            Value::Json(_) => "JSON",
        }
    }

    /// SQL comparison: `None` when either side is NULL or the types cannot be compared.
    /// INT and FLOAT compare numerically; a TIMESTAMP compares with another TIMESTAMP, with
    /// an INT (epoch milliseconds) or with an RFC 3339 string.
    pub fn sql_cmp(&self, other: &Value) -> Option<Ordering> {
        use Value::*;
        match (self, other) {
            (Null, _) | (_, Null) => None,
            (Int(a), Int(b)) => Some(a.cmp(b)),
            (Int(a), Float(b)) => (*a as f64).partial_cmp(b),
            (Float(a), Int(b)) => a.partial_cmp(&(*b as f64)),
            (Float(a), Float(b)) => a.partial_cmp(b),
            (String(a), String(b)) => Some(a.as_str().cmp(b.as_str())),
            (Bool(a), Bool(b)) => Some(a.cmp(b)),
            (Timestamp(a), Timestamp(b)) => Some(a.cmp(b)),
            (Timestamp(a), Int(b)) => Some(a.cmp(b)),
            (Int(a), Timestamp(b)) => Some(a.cmp(b)),
            (Timestamp(a), String(s)) => parse_timestamp(s).map(|b| a.cmp(&b)),
            (String(s), Timestamp(b)) => parse_timestamp(s).map(|a| a.cmp(b)),
            (Json(a), Json(b)) => {
                if a == b {
                    Some(Ordering::Equal)
                } else {
                    None
                }
            }
            _ => None,
        }
    }

    /// SQL equality (`None` = NULL).
    pub fn sql_eq(&self, other: &Value) -> Option<bool> {
        match (self, other) {
            (Value::Json(a), Value::Json(b)) => Some(a == b),
            _ => self.sql_cmp(other).map(|o| o == Ordering::Equal),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::String(s) => write!(f, "{s}"),
            Value::Timestamp(t) => f.write_str(&format_timestamp(*t)),
            Value::Json(j) => write!(f, "{j}"),
        }
    }
}

/// A decoded event: declared columns in declaration order, plus undeclared fields.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Row {
    pub values: Vec<Value>,
    /// Undeclared top-level fields of the event, kept as JSON.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Row {
    /// Declared column `i` (NULL when out of range).
    pub fn get(&self, i: usize) -> &Value {
        static NULL: Value = Value::Null;
        self.values.get(i).unwrap_or(&NULL)
    }

    /// Reads an undeclared field and a nested path below it (missing → NULL).
    pub fn extra_path(&self, name: &str, rest: &[String]) -> Value {
        match self.extra.get(name) {
            Some(j) => json_path(j, rest),
            None => Value::Null,
        }
    }
}

/// Follows `rest` (object keys; array indexes as decimal strings) into a JSON value.
pub fn json_path(mut j: &serde_json::Value, rest: &[String]) -> Value {
    for k in rest {
        j = match j {
            serde_json::Value::Object(m) => match m.get(k) {
                Some(v) => v,
                None => return Value::Null,
            },
            serde_json::Value::Array(a) => match k.parse::<usize>().ok().and_then(|i| a.get(i)) {
                Some(v) => v,
                None => return Value::Null,
            },
            _ => return Value::Null,
        };
    }
    Value::from_json(j)
}

/// Why an event could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// The offending column, when the problem is one column.
    pub column: Option<String>,
    pub message: String,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(c) => write!(f, "column `{c}`: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes JSON events into [`Row`]s for one stream. Build once per stream.
#[derive(Debug, Clone)]
pub struct RowDecoder {
    columns: Vec<(String, DataType)>,
    index: HashMap<String, usize>,
    event_time: Option<usize>,
}

impl RowDecoder {
    pub fn new(stream: &StreamDef) -> RowDecoder {
        let index: HashMap<String, usize> = stream
            .columns
            .iter()
            .enumerate()
            .map(|(i, (n, _))| (n.clone(), i))
            .collect();
        let event_time = stream
            .event_time
            .as_ref()
            .and_then(|c| index.get(c).copied());
        RowDecoder {
            columns: stream.columns.clone(),
            index,
            event_time,
        }
    }

    /// Parses one NDJSON line and decodes it.
    ///
    /// Fast path: the text is parsed straight into the [`Row`] (serde_json's own parser,
    /// visiting the declared columns without building a `serde_json::Value` for the whole
    /// event). Anything unusual — bad JSON, a wrong type, a duplicate key, a top level that
    /// is not an object — falls back to [`RowDecoder::decode_str_reference`], so results
    /// and error messages are exactly those of the reference path.
    pub fn decode_str(&self, line: &str) -> Result<Row, DecodeError> {
        match self.decode_str_fast(line) {
            Some(row) => Ok(row),
            None => self.decode_str_reference(line),
        }
    }

    /// [`RowDecoder::decode_str`] on bytes: invalid UTF-8 is an error naming the first
    /// bad byte (1-based column).
    pub fn decode_bytes(&self, line: &[u8]) -> Result<Row, DecodeError> {
        match std::str::from_utf8(line) {
            Ok(s) => self.decode_str(s),
            Err(e) => Err(DecodeError {
                column: None,
                message: format!("not UTF-8 (invalid byte at column {})", e.valid_up_to() + 1),
            }),
        }
    }

    /// The reference decoder: parses the line into a `serde_json::Value`, then
    /// [`RowDecoder::decode`]s it. Slower; kept as the fallback and as the reference the
    /// fast path is tested against.
    pub fn decode_str_reference(&self, line: &str) -> Result<Row, DecodeError> {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| DecodeError {
            column: None,
            message: format!("not valid JSON: {e}"),
        })?;
        self.decode(&v)
    }

    /// The fast path of [`RowDecoder::decode_str`] alone; `None` = the line needs the
    /// reference path (public for the differential tests).
    #[doc(hidden)]
    pub fn decode_str_fast(&self, line: &str) -> Option<Row> {
        if self.columns.len() > 128 {
            return None;
        }
        let mut de = serde_json::Deserializer::from_str(line);
        let row = serde::de::DeserializeSeed::deserialize(RowSeed(self), &mut de).ok()?;
        de.end().ok()?;
        Some(row)
    }

    /// Index of the column named `key`, trying `guess` first (events usually list their
    /// fields in the same order as the stream declares them).
    #[inline]
    fn lookup(&self, key: &str, guess: usize) -> Option<usize> {
        match self.columns.get(guess) {
            Some((n, _)) if n == key => Some(guess),
            _ => self.index.get(key).copied(),
        }
    }

    /// Decodes one event (must be a JSON object).
    pub fn decode(&self, event: &serde_json::Value) -> Result<Row, DecodeError> {
        let obj = event.as_object().ok_or_else(|| DecodeError {
            column: None,
            message: format!("an event must be a JSON object, got {}", json_kind(event)),
        })?;
        let mut values = Vec::with_capacity(self.columns.len());
        for (name, ty) in &self.columns {
            let v = match obj.get(name) {
                None | Some(serde_json::Value::Null) => Value::Null,
                Some(j) => coerce(j, *ty).map_err(|message| DecodeError {
                    column: Some(name.clone()),
                    message,
                })?,
            };
            values.push(v);
        }
        let mut extra = serde_json::Map::new();
        if obj.len() > values.iter().filter(|v| !v.is_null()).count() {
            for (k, v) in obj {
                if !self.index.contains_key(k) {
                    extra.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(Row { values, extra })
    }

    /// True when the stream has an `event_time` column.
    pub fn has_event_time(&self) -> bool {
        self.event_time.is_some()
    }

    /// The event time of a decoded row (the `event_time` column), if the stream has one
    /// and the row carries it.
    pub fn event_time(&self, row: &Row) -> Option<i64> {
        match row.get(self.event_time?) {
            Value::Timestamp(t) => Some(*t),
            Value::Int(t) => Some(*t),
            _ => None,
        }
    }

    /// Index of a declared column.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
}

// ─────────────────────── fast path: text straight into a Row ───────────────────────
//
// Every visitor below either produces exactly what `decode(&serde_json::from_str(..))`
// would, or fails; a failure sends the line to the reference path, which then produces
// the result or the error message. So the fast path never needs its own messages.

/// Error used only to abandon the fast path.
fn bail<E: serde::de::Error>() -> E {
    E::custom("fast path declined")
}

struct RowSeed<'d>(&'d RowDecoder);

impl<'de> serde::de::DeserializeSeed<'de> for RowSeed<'_> {
    type Value = Row;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Row, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for RowSeed<'_> {
    type Value = Row;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Row, A::Error> {
        let dec = self.0;
        let mut values = vec![Value::Null; dec.columns.len()];
        let mut extra = serde_json::Map::new();
        let mut seen: u128 = 0;
        let mut guess = 0;
        while let Some(key) = map.next_key_seed(KeySeed(dec, guess))? {
            match key {
                Key::Column(i) => {
                    let bit = 1u128 << i;
                    if seen & bit != 0 {
                        return Err(bail());
                    }
                    seen |= bit;
                    values[i] = map.next_value_seed(ColumnSeed(dec.columns[i].1))?;
                    guess = i + 1;
                }
                Key::Extra(name) => {
                    let v: serde_json::Value = map.next_value()?;
                    if extra.insert(name, v).is_some() {
                        return Err(bail());
                    }
                }
            }
        }
        Ok(Row { values, extra })
    }
}

enum Key {
    Column(usize),
    Extra(String),
}

/// Resolves an object key to a declared column (no allocation) or an undeclared name.
struct KeySeed<'d>(&'d RowDecoder, usize);

impl<'de> serde::de::DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> serde::de::Visitor<'de> for KeySeed<'_> {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, k: &str) -> Result<Key, E> {
        Ok(match self.0.lookup(k, self.1) {
            Some(i) => Key::Column(i),
            None => Key::Extra(k.to_string()),
        })
    }
}

/// One declared column's value, coerced as [`coerce`] does (JSON `null` is NULL).
struct ColumnSeed(DataType);

impl<'de> serde::de::DeserializeSeed<'de> for ColumnSeed {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.0 == DataType::Json {
            let j = <serde_json::Value as Deserialize>::deserialize(d)?;
            return Ok(match j {
                serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                    Value::Json(Box::new(j))
                }
                other => Value::from_json(&other),
            });
        }
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ColumnSeed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a {:?} value", self.0)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Value, E> {
        match self.0 {
            DataType::Bool => Ok(Value::Bool(b)),
            _ => Err(bail()),
        }
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Value, E> {
        match self.0 {
            DataType::String => Ok(Value::String(s.to_string())),
            DataType::Timestamp => parse_timestamp(s).map(Value::Timestamp).ok_or_else(bail),
            _ => Err(bail()),
        }
    }

    fn visit_i64<E: serde::de::Error>(self, i: i64) -> Result<Value, E> {
        match self.0 {
            DataType::Int => Ok(Value::Int(i)),
            DataType::Float => Ok(Value::Float(i as f64)),
            DataType::Timestamp => Ok(Value::Timestamp(i)),
            _ => Err(bail()),
        }
    }

    fn visit_u64<E: serde::de::Error>(self, u: u64) -> Result<Value, E> {
        match (self.0, i64::try_from(u)) {
            (DataType::Float, _) => Ok(Value::Float(u as f64)),
            (_, Ok(i)) => self.visit_i64(i),
            // Above i64::MAX: an INT or TIMESTAMP column rejects it (reference path).
            _ => Err(bail()),
        }
    }

    fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<Value, E> {
        match self.0 {
            DataType::Float => Ok(Value::Float(f)),
            DataType::Int if f.fract() == 0.0 && f.abs() < 9.0e18 => Ok(Value::Int(f as i64)),
            _ => Err(bail()),
        }
    }
}

fn json_kind(j: &serde_json::Value) -> &'static str {
    match j {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Coerces a JSON value to a declared column type.
pub fn coerce(j: &serde_json::Value, ty: DataType) -> Result<Value, String> {
    let bad = |want: &str| format!("expected {want}, got {} {}", json_kind(j), short(j));
    match ty {
        DataType::Json => Ok(match j {
            serde_json::Value::Array(_) | serde_json::Value::Object(_) => {
                Value::Json(Box::new(j.clone()))
            }
            other => Value::from_json(other),
        }),
        DataType::String => j
            .as_str()
            .map(|s| Value::String(s.to_string()))
            .ok_or_else(|| bad("STRING")),
        DataType::Bool => j.as_bool().map(Value::Bool).ok_or_else(|| bad("BOOL")),
        DataType::Int => {
            if let Some(i) = j.as_i64() {
                Ok(Value::Int(i))
            } else if let Some(f) = j.as_f64() {
                if f.fract() == 0.0 && f.abs() < 9.0e18 {
                    Ok(Value::Int(f as i64))
                } else {
                    Err(bad("INT"))
                }
            } else {
                Err(bad("INT"))
            }
        }
        DataType::Float => j.as_f64().map(Value::Float).ok_or_else(|| bad("FLOAT")),
        DataType::Timestamp => match j {
            serde_json::Value::String(s) => parse_timestamp(s).map(Value::Timestamp).ok_or_else(
                || {
                    format!(
                        "expected TIMESTAMP (RFC 3339 like 2026-01-01T00:00:00Z, or epoch milliseconds), got \"{s}\""
                    )
                },
            ),
            serde_json::Value::Number(n) => n
                .as_i64()
                .map(Value::Timestamp)
                .ok_or_else(|| bad("TIMESTAMP (integer epoch milliseconds)")),
            _ => Err(bad("TIMESTAMP")),
        },
    }
}

fn short(j: &serde_json::Value) -> String {
    let s = j.to_string();
    if s.len() > 40 {
        let mut end = 40;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s
    }
}

// ───────────────────────────── timestamps ─────────────────────────────

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses an RFC 3339 timestamp (`YYYY-MM-DDTHH:MM:SS[.fff][Z|±HH:MM]`; a space may replace
/// `T`; no offset means UTC) into epoch milliseconds. Digits beyond milliseconds are
/// truncated.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        part.iter().try_fold(0i64, |n, c| {
            c.is_ascii_digit().then(|| n * 10 + (c - b'0') as i64)
        })
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                ms = ms * 10 + (b[i] - b'0') as i64;
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..3 {
            ms *= 10;
        }
    }
    let offset_min = match b.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(c @ (b'+' | b'-')) if b.len() == i + 6 && b[i + 3] == b':' => {
            let v = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
            if *c == b'-' {
                -v
            } else {
                v
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86400 + h * 3600 + mi * 60 + se - offset_min * 60;
    Some(secs * 1000 + ms)
}

/// Formats epoch milliseconds as `YYYY-MM-DDTHH:MM:SS.sssZ`.
pub fn format_timestamp(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use dsl::plan::LatePolicy;
    use serde_json::json;

    fn stream() -> StreamDef {
        StreamDef {
            name: "s".into(),
            columns: vec![
                ("id".into(), DataType::String),
                ("n".into(), DataType::Int),
                ("x".into(), DataType::Float),
                ("ts".into(), DataType::Timestamp),
            ],
            event_time: Some("ts".into()),
            max_delay_ms: 0,
            idle_timeout_ms: dsl::plan::DEFAULT_IDLE_TIMEOUT_MS,
            late: LatePolicy::Drop,
            key: None,
            kafka_topic: None,
            partitions: None,
        }
    }

    #[test]
    fn timestamps_round_trip() {
        for ms in [0i64, 1, 999, 86_400_000, 1_767_225_600_250, -1, -86_400_001] {
            assert_eq!(parse_timestamp(&format_timestamp(ms)), Some(ms), "{ms}");
        }
        assert_eq!(
            parse_timestamp("2026-01-01T00:00:00Z"),
            Some(1_767_225_600_000)
        );
        assert_eq!(
            parse_timestamp("2026-01-01T01:00:00.5+01:00"),
            Some(1_767_225_600_500)
        );
        assert_eq!(
            parse_timestamp("2026-01-01 00:00:00"),
            Some(1_767_225_600_000)
        );
        assert_eq!(parse_timestamp("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
    }

    #[test]
    fn decodes_and_coerces() {
        let d = RowDecoder::new(&stream());
        let r = d
            .decode(&json!({"id": "a", "n": 3.0, "x": 2, "ts": 1000, "more": {"k": [1, 2]}}))
            .unwrap();
        assert_eq!(r.values[0], Value::String("a".into()));
        assert_eq!(r.values[1], Value::Int(3));
        assert_eq!(r.values[2], Value::Float(2.0));
        assert_eq!(r.values[3], Value::Timestamp(1000));
        assert_eq!(d.event_time(&r), Some(1000));
        assert_eq!(
            r.extra_path("more", &["k".into(), "1".into()]),
            Value::Int(2)
        );
        assert_eq!(r.extra_path("nope", &[]), Value::Null);
        let r = d.decode(&json!({"id": null})).unwrap();
        assert!(r.values.iter().all(Value::is_null));
    }

    #[test]
    fn wrong_types_are_clear_errors() {
        let d = RowDecoder::new(&stream());
        let e = d.decode(&json!({"n": "three"})).unwrap_err();
        assert_eq!(e.column.as_deref(), Some("n"));
        assert!(e.to_string().contains("expected INT"), "{e}");
        let e = d.decode(&json!({"n": 2.5})).unwrap_err();
        assert!(e.to_string().contains("expected INT"), "{e}");
        let e = d.decode(&json!({"ts": "noon"})).unwrap_err();
        assert!(e.to_string().contains("TIMESTAMP"), "{e}");
        let e = d.decode(&json!([1])).unwrap_err();
        assert!(e.to_string().contains("JSON object"), "{e}");
        assert!(d.decode_str("{").is_err());
    }

    #[test]
    fn sql_comparisons() {
        assert_eq!(
            Value::Int(1).sql_cmp(&Value::Float(1.5)),
            Some(Ordering::Less)
        );
        assert_eq!(Value::Null.sql_eq(&Value::Null), None);
        assert_eq!(Value::String("a".into()).sql_eq(&Value::Int(1)), None);
        assert_eq!(
            Value::Timestamp(1_767_225_600_000)
                .sql_eq(&Value::String("2026-01-01T00:00:00Z".into())),
            Some(true)
        );
    }
}
