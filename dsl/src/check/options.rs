//! `WITH (...)` options of streams and metrics.

use super::names::{did_you_mean, list};
use crate::ast::{DataType, Literal, Span, WithOption};
use crate::error::Diagnostic;
use crate::plan::{LatePolicy, MetricOptions, StreamDef};
use std::collections::HashMap;

/// Parse a duration written as a string inside WITH: `'5 seconds'`, `'500 ms'`, `'2h'`,
/// `'1 day'`. Units: ms / millisecond(s), s / sec / second(s), m / min / minute(s),
/// h / hour(s), d / day(s). A bare `'0'` is zero.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(format!(
            "`{text}` is not a duration; write a number and a unit, like '5 seconds'"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{num}` is too large for a duration"))?;
    let unit = unit.trim().to_ascii_lowercase();
    let factor: u64 = match unit.as_str() {
        "" if n == 0 => 1,
        "ms" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        "" => {
            return Err(format!(
                "`{text}` has no unit; write it like '{n} seconds' or '{n} ms'"
            ))
        }
        other => {
            return Err(format!(
                "unknown time unit `{other}`; use milliseconds, seconds, minutes, hours or days"
            ))
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("`{text}` is too long a duration"))
}

pub(crate) const STREAM_OPTIONS: &[&str] = &[
    "event_time",
    "max_delay",
    "idle_timeout",
    "late",
    "key",
    "kafka_topic",
    "partitions",
    "format",
];

pub(crate) const METRIC_OPTIONS: &[&str] = &[
    "hll_precision",
    "bloom_fpp",
    "percentile_error",
    "retention",
    "max_groups",
    "bloom_capacity",
    "percentile_max_bins",
    "topk_capacity",
];

/// Where an option's value was written: the option's span ends with its value.
fn value_span(o: &WithOption) -> Span {
    let len = match &o.value {
        Literal::String(v) => v.len() + 2 + v.matches('\'').count(),
        Literal::Int(i) => i.to_string().len(),
        Literal::Bool(b) => b.to_string().len(),
        _ => return o.span,
    };
    if len > o.span.end.saturating_sub(o.span.start) {
        return o.span;
    }
    Span::new(o.span.end - len, o.span.end)
}

fn lit_kind(l: &Literal) -> &'static str {
    match l {
        Literal::Null => "NULL",
        Literal::Bool(_) => "a boolean",
        Literal::Int(_) => "a whole number",
        Literal::Float(_) => "a number",
        Literal::String(_) => "a string",
    }
}

/// Reject duplicate and unknown keys; returns the options by lowercase key.
fn index<'a>(
    opts: &'a [WithOption],
    known: &[&str],
    what: &str,
    diags: &mut Vec<Diagnostic>,
) -> HashMap<String, &'a WithOption> {
    let mut seen: HashMap<String, &WithOption> = HashMap::new();
    for o in opts {
        let k = o.key.name.to_ascii_lowercase();
        if let Some(first) = seen.get(&k) {
            diags.push(
                Diagnostic::error(o.key.span, format!("option `{k}` is given twice"))
                    .with_note(first.key.span, "first given here"),
            );
            continue;
        }
        if !known.contains(&k.as_str()) {
            let mut msg = format!("unknown option `{}` for {what}", o.key.name);
            if let Some(m) = did_you_mean(&k, known.iter().copied()) {
                msg.push_str(&format!("; did you mean `{m}`?"));
            }
            msg.push_str(&format!("; known options: {}", list(known)));
            diags.push(Diagnostic::error(o.key.span, msg));
            continue;
        }
        seen.insert(k, o);
    }
    seen
}

fn string_opt<'a>(o: &'a WithOption, diags: &mut Vec<Diagnostic>) -> Option<&'a str> {
    match &o.value {
        Literal::String(s) => Some(s),
        other => {
            diags.push(Diagnostic::error(
                value_span(o),
                format!(
                    "option `{}` takes a string, found {}",
                    o.key.name,
                    lit_kind(other)
                ),
            ));
            None
        }
    }
}

fn int_opt(o: &WithOption, diags: &mut Vec<Diagnostic>) -> Option<i64> {
    match &o.value {
        Literal::Int(i) => Some(*i),
        // Accept '4' too: WITH values are often quoted out of habit.
        Literal::String(s) if s.trim().parse::<i64>().is_ok() => s.trim().parse().ok(),
        other => {
            diags.push(Diagnostic::error(
                value_span(o),
                format!(
                    "option `{}` takes a whole number, found {}",
                    o.key.name,
                    lit_kind(other)
                ),
            ));
            None
        }
    }
}

fn float_opt(o: &WithOption, diags: &mut Vec<Diagnostic>) -> Option<f64> {
    match &o.value {
        Literal::Int(i) => Some(*i as f64),
        Literal::Float(f) => Some(*f),
        Literal::String(s) if s.trim().parse::<f64>().is_ok() => s.trim().parse().ok(),
        other => {
            diags.push(Diagnostic::error(
                value_span(o),
                format!(
                    "option `{}` takes a number, found {}",
                    o.key.name,
                    lit_kind(other)
                ),
            ));
            None
        }
    }
}

fn duration_opt(o: &WithOption, diags: &mut Vec<Diagnostic>) -> Option<u64> {
    let s = string_opt(o, diags)?;
    match parse_duration(s) {
        Ok(ms) => Some(ms),
        Err(e) => {
            diags.push(Diagnostic::error(
                value_span(o),
                format!("option `{}`: {e}", o.key.name),
            ));
            None
        }
    }
}

/// Apply a stream's options to `def` (whose columns are already set).
pub(crate) fn stream_options(
    def: &mut StreamDef,
    opts: &[WithOption],
    diags: &mut Vec<Diagnostic>,
) {
    let m = index(opts, STREAM_OPTIONS, "a stream", diags);
    let schemaless = def.columns.is_empty();
    let column_names: Vec<String> = def.columns.iter().map(|(c, _)| c.clone()).collect();
    let names: Vec<&str> = column_names.iter().map(String::as_str).collect();
    let unknown_column = |col: &str, o: &WithOption, diags: &mut Vec<Diagnostic>| {
        let mut msg = format!(
            "option `{}` names `{col}`, which is not a column of `{}`",
            o.key.name, def.name
        );
        if let Some(s) = did_you_mean(col, names.iter().copied()) {
            msg.push_str(&format!("; did you mean `{s}`?"));
        } else {
            msg.push_str(&format!("; columns: {}", list(&names)));
        }
        diags.push(Diagnostic::error(value_span(o), msg));
    };
    if let Some(o) = m.get("event_time") {
        if let Some(col) = string_opt(o, diags) {
            match def.column_type(col) {
                Some(DataType::Timestamp) => def.event_time = Some(col.to_string()),
                Some(t) => diags.push(Diagnostic::error(
                    value_span(o),
                    format!(
                        "event_time column `{col}` is {}; it must be declared TIMESTAMP",
                        super::expr::type_name(Some(t))
                    ),
                )),
                None if schemaless => diags.push(Diagnostic::error(
                    value_span(o),
                    format!("event_time names `{col}`; declare it as a column: `{col} TIMESTAMP`"),
                )),
                None => unknown_column(col, o, diags),
            }
        }
    }
    if let Some(o) = m.get("max_delay") {
        if let Some(ms) = duration_opt(o, diags) {
            def.max_delay_ms = ms;
            if def.event_time.is_none() && !m.contains_key("event_time") {
                diags.push(Diagnostic::warning(
                    value_span(o),
                    "max_delay has no effect without event_time (ingestion time never runs late)",
                ));
            }
        }
    }
    if let Some(o) = m.get("idle_timeout") {
        // '0' (no unit needed) turns idle advance off.
        let off = matches!(&o.value, Literal::String(s) if s.trim() == "0")
            || matches!(o.value, Literal::Int(0));
        if off {
            def.idle_timeout_ms = 0;
        } else if let Some(ms) = duration_opt(o, diags) {
            def.idle_timeout_ms = ms;
        }
    }
    if let Some(o) = m.get("late") {
        if let Some(s) = string_opt(o, diags) {
            match s.to_ascii_lowercase().as_str() {
                "drop" => def.late = LatePolicy::Drop,
                "emit" => def.late = LatePolicy::Emit,
                _ => diags.push(Diagnostic::error(
                    value_span(o),
                    format!("option `late` is 'drop' or 'emit', found '{s}'"),
                )),
            }
        }
    }
    if let Some(o) = m.get("key") {
        if let Some(col) = string_opt(o, diags) {
            if !schemaless && def.column_type(col).is_none() {
                unknown_column(col, o, diags);
            } else {
                def.key = Some(col.to_string());
            }
        }
    }
    if let Some(o) = m.get("kafka_topic") {
        if let Some(t) = string_opt(o, diags) {
            let valid = !t.is_empty()
                && t.len() <= 249
                && t != "."
                && t != ".."
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
            if valid {
                def.kafka_topic = Some(t.to_string());
            } else {
                diags.push(Diagnostic::error(
                    value_span(o),
                    format!("`{t}` is not a valid Kafka topic name (1-249 characters of a-z A-Z 0-9 . _ -)"),
                ));
            }
        }
    }
    if let Some(o) = m.get("partitions") {
        if let Some(n) = int_opt(o, diags) {
            if (1..=10_000).contains(&n) {
                def.partitions = Some(n as u32);
            } else {
                diags.push(Diagnostic::error(
                    value_span(o),
                    format!("partitions must be between 1 and 10000, found {n}"),
                ));
            }
        }
    }
    if let Some(o) = m.get("format") {
        if let Some(f) = string_opt(o, diags) {
            if !f.eq_ignore_ascii_case("json") {
                diags.push(Diagnostic::error(
                    value_span(o),
                    format!("format '{f}' is not supported; events are JSON (format = 'json')"),
                ));
            }
        }
    }
}

/// Options of a search: none yet.
pub(crate) fn search_options(opts: &[WithOption], diags: &mut Vec<Diagnostic>) {
    for o in opts {
        diags.push(Diagnostic::error(
            o.key.span,
            format!(
                "unknown option `{}`: searches take no WITH options",
                o.key.name
            ),
        ));
    }
}

/// Read a metric's options.
pub(crate) fn metric_options(opts: &[WithOption], diags: &mut Vec<Diagnostic>) -> MetricOptions {
    let m = index(opts, METRIC_OPTIONS, "a metric", diags);
    let mut out = MetricOptions::default();
    if let Some(o) = m.get("hll_precision") {
        if let Some(p) = int_opt(o, diags) {
            if (4..=18).contains(&p) {
                out.hll_precision = Some(p as u8);
            } else {
                diags.push(Diagnostic::error(
                    value_span(o),
                    format!("hll_precision must be between 4 and 18, found {p}"),
                ));
            }
        }
    }
    for key in ["bloom_fpp", "percentile_error"] {
        if let Some(o) = m.get(key) {
            if let Some(f) = float_opt(o, diags) {
                // The quantile sketch needs α ≥ 0.0001 (beyond that its bucket count
                // explodes); a Bloom filter takes any rate in (0, 1).
                let min = if key == "bloom_fpp" { 0.0 } else { 0.0001 };
                if f > min && f < 1.0 || (key != "bloom_fpp" && f == min) {
                    if key == "bloom_fpp" {
                        out.bloom_fpp = Some(f);
                    } else {
                        out.percentile_error = Some(f);
                    }
                } else {
                    diags.push(Diagnostic::error(
                        value_span(o),
                        if key == "bloom_fpp" {
                            format!("{key} must be strictly between 0 and 1, like 0.01; found {f}")
                        } else {
                            format!(
                                "{key} must be at least 0.0001 and below 1, like 0.01; found {f}"
                            )
                        },
                    ));
                }
            }
        }
    }
    if let Some(o) = m.get("retention") {
        if let Some(ms) = duration_opt(o, diags) {
            out.retention_ms = Some(ms);
        }
    }
    for key in ["bloom_capacity", "percentile_max_bins", "topk_capacity"] {
        if let Some(o) = m.get(key) {
            if let Some(n) = int_opt(o, diags) {
                if n >= 1 {
                    let n = n as u64;
                    match key {
                        "bloom_capacity" => out.bloom_capacity = Some(n),
                        "percentile_max_bins" => out.percentile_max_bins = Some(n),
                        _ => out.topk_capacity = Some(n),
                    }
                } else {
                    diags.push(Diagnostic::error(
                        value_span(o),
                        format!("{key} must be at least 1, found {n}"),
                    ));
                }
            }
        }
    }
    if let Some(o) = m.get("max_groups") {
        if let Some(n) = int_opt(o, diags) {
            if n >= 1 {
                out.max_groups = Some(n as u64);
            } else {
                diags.push(Diagnostic::error(
                    value_span(o),
                    format!("max_groups must be at least 1, found {n}"),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5 seconds"), Ok(5_000));
        assert_eq!(parse_duration("1 second"), Ok(1_000));
        assert_eq!(parse_duration("500 ms"), Ok(500));
        assert_eq!(parse_duration("2h"), Ok(7_200_000));
        assert_eq!(parse_duration(" 1 DAY "), Ok(86_400_000));
        assert_eq!(parse_duration("0"), Ok(0));
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
        assert!(parse_duration("five seconds").is_err());
        assert!(parse_duration("5 fortnights")
            .unwrap_err()
            .contains("unknown time unit"));
        assert!(parse_duration("99999999999999999999 days").is_err());
    }
}
