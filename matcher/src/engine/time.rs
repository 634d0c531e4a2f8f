//! Time passing on a quiet stream: an explicit, deterministic input.
//!
//! `weir serve` decides when a stream has been quiet for its `idle_timeout` and what its
//! watermark is then (the watermark at its last event + the wall-clock time since that
//! event arrived); it writes that watermark to the log and, when reading it back, hands it
//! to [`advance_idle`]. So the engine never reads a clock: the same log gives the same
//! outputs, on first run and on replay. `weir run` never calls it (end of input decides).

use super::process;
use super::program::{Program, StreamKind};
use super::state::State;
use crate::output::OutputRecord;

/// Moves the watermark of source stream `stream` forward to `wm` (it never goes back):
/// buffered rows at or below it are released, WITHIN deadlines, trailing absences,
/// greedy tails and windows it passed are decided. Events stamped behind it later are
/// late (the stream's `late` policy applies). Returns whether the watermark moved.
/// Derived streams and repartitioned copies (whose watermark comes from their sources)
/// are left alone.
pub(super) fn advance_idle(
    program: &Program,
    state: &mut State,
    stream: &str,
    wm: i64,
    out: &mut Vec<OutputRecord>,
) -> bool {
    let (Some(sp), Some(st)) = (program.streams.get(stream), state.streams.get(stream)) else {
        return false;
    };
    if sp.base.kind == StreamKind::Derived || sp.external_watermark() || wm <= st.watermark {
        return false;
    }
    process::move_watermark(program, state, stream, wm, out);
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::{Engine, EngineConfig};
    use crate::output::OutputRecord;
    use dsl::check::Catalog;
    use serde_json::json;

    const QUIET: &str = "
CREATE STREAM orders (id STRING, kind STRING, amount FLOAT, ts TIMESTAMP)
  WITH (event_time = 'ts', max_delay = '1 second', key = 'id');
CREATE RULE unpaid AS FROM orders PARTITION BY id
  PATTERN (created !paid) WITHIN 2 SECONDS
  DEFINE created AS kind = 'created', paid AS kind = 'paid'
  MEASURES created.amount AS amount;
CREATE RULE probes AS FROM orders PARTITION BY id
  PATTERN (s{2,} b) WITHIN 10 SECONDS
  DEFINE s AS amount < 5, b AS amount > 500
  MEASURES COUNT(s.*) AS n;
CREATE METRIC per_id AS SELECT id, COUNT(*) AS n FROM orders
  GROUP BY id WINDOW TUMBLING (SIZE 5 SECONDS);
";

    fn engine() -> Engine {
        let mut cat = Catalog::new();
        let d = cat.check_source(QUIET);
        assert!(d.iter().all(|d| !d.is_error()), "{d:?}");
        Engine::new(&cat, 0, &EngineConfig::default()).unwrap()
    }

    fn ev(id: &str, kind: &str, amount: f64, ts: i64) -> serde_json::Value {
        json!({"id": id, "kind": kind, "amount": amount, "ts": ts})
    }

    fn names(out: &[OutputRecord]) -> Vec<&str> {
        out.iter().map(|r| r.statement()).collect()
    }

    #[test]
    fn an_absence_fires_when_time_passes_without_an_event() {
        let mut e = engine();
        let mut out = Vec::new();
        e.ingest("orders", 0, &ev("o1", "created", 10.0, 1_000), 0, &mut out)
            .unwrap();
        assert!(out.iter().all(|r| r.statement() != "unpaid"));
        // Watermark 0 after the event (1 s delay): the deadline 3 000 is not passed yet.
        assert!(e.advance_idle("orders", 2_999, &mut out));
        assert!(out.iter().all(|r| r.statement() != "unpaid"));
        assert!(e.advance_idle("orders", 3_001, &mut out));
        let unpaid: Vec<_> = out.iter().filter(|r| r.statement() == "unpaid").collect();
        assert_eq!(unpaid.len(), 1, "{:?}", names(&out));
        // Never back.
        assert!(!e.advance_idle("orders", 100, &mut out));
        assert_eq!(e.watermark("orders"), Some(3_001));
    }

    #[test]
    fn a_tumbling_window_closes_and_later_events_behind_it_are_late() {
        let mut e = engine();
        let mut out = Vec::new();
        e.ingest("orders", 0, &ev("u1", "x", 1.0, 1_000), 0, &mut out)
            .unwrap();
        e.ingest("orders", 1, &ev("u1", "x", 1.0, 2_000), 0, &mut out)
            .unwrap();
        assert!(out.is_empty());
        e.advance_idle("orders", 5_001, &mut out);
        let m: Vec<_> = out.iter().filter(|r| r.statement() == "per_id").collect();
        assert_eq!(m.len(), 1, "{:?}", names(&out));
        // An event stamped behind the advanced watermark is late: dropped (late = 'drop').
        e.ingest("orders", 2, &ev("u1", "x", 1.0, 4_000), 0, &mut out)
            .unwrap();
        assert_eq!(e.counters("orders").unwrap().late_dropped, 1);
    }

    #[test]
    fn a_greedy_tail_is_released_at_its_deadline() {
        let mut e = engine();
        let mut out = Vec::new();
        for (i, (a, ts)) in [(1.0, 1_000), (1.0, 2_000), (900.0, 3_000)]
            .iter()
            .enumerate()
        {
            e.ingest("orders", i as u64, &ev("c", "p", *a, *ts), 0, &mut out)
                .unwrap();
        }
        assert!(out.iter().all(|r| r.statement() != "probes"));
        e.advance_idle("orders", 11_002, &mut out);
        assert_eq!(
            out.iter().filter(|r| r.statement() == "probes").count(),
            1,
            "{:?}",
            names(&out)
        );
    }

    /// Differential: advancing to at most the next event's time changes nothing but when
    /// results come out: after the end of input, the same records (same ids) as without.
    #[test]
    fn advances_that_no_event_falls_behind_change_nothing() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _round in 0..30 {
            let mut evs = Vec::new();
            let mut ts = 0i64;
            for _ in 0..60 {
                ts += rnd(1_500) as i64;
                let id = format!("k{}", rnd(3));
                let kind = ["created", "paid", "x"][rnd(3) as usize];
                let amount = [1.0, 2.0, 900.0][rnd(3) as usize];
                evs.push((ev(&id, kind, amount, ts), ts));
            }
            let (mut plain, mut ticked) = (engine(), engine());
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for (i, (e, ts)) in evs.iter().enumerate() {
                plain.ingest("orders", i as u64, e, 0, &mut a).unwrap();
                if rnd(2) == 0 {
                    // Somewhere between the current watermark and this event's time.
                    let lo = ticked.watermark("orders").unwrap_or(i64::MIN).max(0);
                    let wm = lo + rnd((ts - lo).max(0) as u64 + 1) as i64;
                    ticked.advance_idle("orders", wm, &mut b);
                }
                ticked.ingest("orders", i as u64, e, 0, &mut b).unwrap();
            }
            plain.finish(&mut a);
            ticked.finish(&mut b);
            let key = |r: &OutputRecord| serde_json::to_string(&r.to_json()).unwrap();
            let mut a: Vec<_> = a.iter().map(key).collect();
            let mut b: Vec<_> = b.iter().map(key).collect();
            a.sort();
            b.sort();
            assert_eq!(a, b);
            assert_eq!(ticked.counters("orders").unwrap().late_dropped, 0);
        }
    }
}
