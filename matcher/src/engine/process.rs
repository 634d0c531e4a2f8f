//! Running rows: one event through everything that reads its stream, outputs fed back to
//! the statements that read them `FROM`, watermarks, and the end of input.

use super::program::{Program, StreamProgram};
use super::state::{State, StreamState};
use super::IngestError;
use crate::cep::MatchOutput;
use crate::metric::Outcome;
use crate::output::OutputRecord;
use crate::value::{DecodeError, Row, RowDecoder};
use dsl::plan::LatePolicy;
use serde_json::{Map, Value as Json};
use std::collections::VecDeque;

/// The program and the state of one stream, side by side.
struct Stream<'a> {
    name: &'a str,
    sp: &'a StreamProgram,
    st: &'a mut StreamState,
}

fn unknown(program: &Program, stream: &str) -> IngestError {
    IngestError::UnknownStream {
        stream: stream.to_string(),
        known: program.source_names.clone(),
    }
}

/// The program and state of a stream events can be written to.
fn writable<'a>(
    program: &'a Program,
    state: &'a mut State,
    stream: &'a str,
) -> Result<Stream<'a>, IngestError> {
    match (program.streams.get(stream), state.streams.get_mut(stream)) {
        (Some(sp), Some(st)) if sp.base.kind != super::program::StreamKind::Derived => Ok(Stream {
            name: stream,
            sp,
            st,
        }),
        _ => Err(unknown(program, stream)),
    }
}

/// Decodes an event of source stream `stream` with `decode`, counting a rejection.
pub(super) fn decode_with(
    program: &Program,
    state: &mut State,
    stream: &str,
    decode: impl FnOnce(&RowDecoder) -> Result<Row, DecodeError>,
) -> Result<Row, IngestError> {
    let s = writable(program, state, stream)?;
    decode(&s.sp.base.decoder).map_err(|e| {
        s.st.counters.rejected += 1;
        IngestError::Decode(e.to_string())
    })
}

/// One decoded event of a source stream, as [`super::Engine::ingest_row`] takes it.
pub(crate) struct Event<'a> {
    pub stream: &'a str,
    pub offset: u64,
    pub row: Row,
    /// Read from the row already (`None`: read it here).
    pub event_time: Option<i64>,
    /// The event time of a stream without an `event_time` column.
    pub ingest_time_ms: i64,
}

/// Where a row is: its partition, event time and offset (in its stream).
#[derive(Clone, Copy)]
pub(crate) struct At {
    pub partition: u32,
    pub ts: i64,
    pub offset: u64,
    /// Older than the stream's watermark (`late = 'emit'`).
    pub late: bool,
}

/// Feeds one decoded row of a source stream.
pub(super) fn ingest_row(
    program: &Program,
    state: &mut State,
    ev: Event<'_>,
    out: &mut Vec<OutputRecord>,
) -> Result<(), IngestError> {
    let Event {
        stream,
        offset,
        row,
        event_time,
        ingest_time_ms,
    } = ev;
    let partition = state.partition;
    let s = writable(program, state, stream)?;
    let ts = match &s.sp.base.def.event_time {
        Some(col) => match event_time.or_else(|| s.sp.base.decoder.event_time(&row)) {
            Some(t) => t,
            None => {
                s.st.counters.rejected += 1;
                return Err(IngestError::MissingEventTime {
                    column: col.clone(),
                });
            }
        },
        None => ingest_time_ms,
    };
    let mut queue = Vec::new();
    let at = At {
        partition,
        ts,
        offset,
        late: false,
    };
    process(program, s, row, at, out, &mut queue);
    drain(program, state, queue, out);
    Ok(())
}

/// Feeds the records produced for derived streams to their readers (breadth first).
fn drain(
    program: &Program,
    state: &mut State,
    queue: Vec<OutputRecord>,
    out: &mut Vec<OutputRecord>,
) {
    let partition = state.partition;
    let mut queue = VecDeque::from(queue);
    while let Some(rec) = queue.pop_front() {
        let name = rec.statement();
        let (Some(sp), Some(st)) = (program.streams.get(name), state.streams.get_mut(name)) else {
            continue;
        };
        if !sp.has_readers() {
            continue;
        }
        let (fields, ts) = match &rec {
            OutputRecord::Rule { fields, ts_ms, .. }
            | OutputRecord::Search { fields, ts_ms, .. } => (fields.clone(), *ts_ms),
            OutputRecord::Metric {
                group,
                values,
                end_ms,
                ..
            } => {
                let mut f = group.clone();
                f.extend(values.clone());
                (f, *end_ms)
            }
        };
        let mut obj = fields;
        obj.insert("ts".into(), Json::from(ts));
        let Ok(row) = sp.base.decoder.decode(&Json::Object(obj)) else {
            st.counters.rejected += 1;
            continue;
        };
        let offset = st.next_derived_offset;
        st.next_derived_offset += 1;
        let mut more = Vec::new();
        let s = Stream { name, sp, st };
        let at = At {
            partition,
            ts,
            offset,
            late: false,
        };
        process(program, s, row, at, out, &mut more);
        queue.extend(more);
    }
}

/// Runs one decoded row through everything reading its stream; records that other
/// statements read go to `derived` too.
fn process(
    program: &Program,
    s: Stream<'_>,
    row: Row,
    at: At,
    out: &mut Vec<OutputRecord>,
    derived: &mut Vec<OutputRecord>,
) {
    let Stream { name, sp, st } = s;
    let ts = at.ts;
    let def = &sp.base.def;
    let late = ts < st.watermark;
    let at = At { late, ..at };
    if late {
        match def.late {
            LatePolicy::Drop => {
                st.counters.late_dropped += 1;
                return;
            }
            LatePolicy::Emit => st.counters.late_processed += 1,
        }
    }
    st.counters.accepted += 1;
    st.max_ts = Some(st.max_ts.map_or(ts, |m| m.max(ts)));
    let external = sp.external_watermark();
    if !external {
        let wm = st
            .max_ts
            .unwrap_or(i64::MIN)
            .saturating_sub(def.max_delay_ms.min(i64::MAX as u64) as i64);
        st.watermark = st.watermark.max(wm);
    }
    // With an outside watermark the rule state never moves its own.
    let cep_delay = if external { u64::MAX } else { def.max_delay_ms };

    let mut produced = Vec::new();
    // Searches first: they answer on arrival.
    if let Some(searches) = &sp.searches {
        searches.run(def, name, &row, at, &mut st.search_scratch, &mut produced);
    }
    for ((plan, _), state) in sp.metrics.iter().zip(st.metrics.iter_mut()) {
        match plan.add(state, &row, ts) {
            Outcome::Late => st.counters.metric_late += 1,
            Outcome::GroupDropped => st.counters.metric_group_dropped += 1,
            Outcome::Rejected => st.counters.metric_rejected += 1,
            Outcome::Applied | Outcome::Filtered => {}
        }
    }
    if let (Some(set), Some(state)) = (&sp.cep, st.cep.as_mut()) {
        let mut matches = Vec::new();
        state.process_with(set, row, ts, at.offset, cep_delay, def.late, &mut matches);
        produced.extend(matches.into_iter().map(rule_record));
    }
    let wm = st.watermark;
    for ((plan, _), state) in sp.metrics.iter().zip(st.metrics.iter_mut()) {
        plan.advance_watermark(state, wm, &mut produced);
    }
    feed_and_emit(program, produced, out, derived);
}

/// Records go to `out`; those some statement reads go to `derived` too.
fn feed_and_emit(
    program: &Program,
    produced: Vec<OutputRecord>,
    out: &mut Vec<OutputRecord>,
    derived: &mut Vec<OutputRecord>,
) {
    derived.extend(
        produced
            .iter()
            .filter(|r| program.is_read(r.statement()))
            .cloned(),
    );
    out.extend(produced);
}

/// Moves the watermark of a stream whose watermark comes from outside forward.
pub(super) fn advance_watermark(
    program: &Program,
    state: &mut State,
    stream: &str,
    wm: i64,
    out: &mut Vec<OutputRecord>,
) {
    if program
        .streams
        .get(stream)
        .is_some_and(|sp| sp.external_watermark())
    {
        move_watermark(program, state, stream, wm, out)
    }
}

/// Moves a stream's watermark forward to `wm` and decides what it passed.
pub(super) fn move_watermark(
    program: &Program,
    state: &mut State,
    stream: &str,
    wm: i64,
    out: &mut Vec<OutputRecord>,
) {
    let (Some(sp), Some(st)) = (program.streams.get(stream), state.streams.get_mut(stream)) else {
        return;
    };
    if wm <= st.watermark {
        return;
    }
    st.watermark = wm;
    let mut produced = Vec::new();
    if let (Some(set), Some(cs)) = (&sp.cep, st.cep.as_mut()) {
        let mut matches = Vec::new();
        cs.advance_watermark(set, wm, &mut matches);
        produced.extend(matches.into_iter().map(rule_record));
    }
    for ((plan, _), ms) in sp.metrics.iter().zip(st.metrics.iter_mut()) {
        plan.advance_watermark(ms, wm, &mut produced);
    }
    let mut feed = Vec::new();
    feed_and_emit(program, produced, out, &mut feed);
    drain(program, state, feed, out);
}

/// End of input: every stream's watermark moves to the end.
pub(super) fn finish(program: &Program, state: &mut State, out: &mut Vec<OutputRecord>) {
    // Catalog order: a derived stream comes after everything it reads, so its input is
    // complete (upstream finished and drained into it) when its turn comes.
    for name in &program.order {
        let (Some(sp), Some(st)) = (program.streams.get(name), state.streams.get_mut(name)) else {
            continue;
        };
        let mut produced = Vec::new();
        if let (Some(set), Some(cs)) = (&sp.cep, st.cep.as_mut()) {
            let mut m: Vec<MatchOutput> = Vec::new();
            cs.finish(set, &mut m);
            // Pending matches are decided together at the end; emit them in event-time
            // order (then log order), independent of how per-key state is hashed.
            m.sort_by_key(|o| (o.ts, o.first_offset, o.last_offset));
            produced.extend(m.into_iter().map(rule_record));
        }
        for ((plan, _), ms) in sp.metrics.iter().zip(st.metrics.iter_mut()) {
            plan.finish(ms, &mut produced);
        }
        let mut feed = Vec::new();
        feed_and_emit(program, produced, out, &mut feed);
        drain(program, state, feed, out);
    }
}

fn rule_record(m: MatchOutput) -> OutputRecord {
    let mut fields = Map::new();
    for (k, v) in &m.fields {
        fields.insert(k.to_string(), v.to_json());
    }
    OutputRecord::Rule {
        rule: m.rule.to_string(),
        id: m.id,
        ts_ms: m.ts,
        fields,
        late: m.late,
    }
}
