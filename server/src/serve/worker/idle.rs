//! Time passing on quiet streams (`idle_timeout`, docs/language.md "Time on a quiet
//! stream").
//!
//! After every read of a source stream's partition, the worker checks how long the
//! partition has been quiet by its clock ([`crate::serve::clock::Clock`]). Past the
//! stream's `idle_timeout`, the partition's watermark should be the watermark at its last
//! event + the wall-clock time since that event was appended. The worker does not move it
//! directly: it appends a tick record carrying that watermark to the stream's partition,
//! and applies it ([`matcher::engine::Engine::advance_idle`]) when it reads it back, in
//! log order with the events. So a replay after a crash meets the same ticks at the same
//! offsets and derives the same outputs (same ids, de-duplicated as usual).
//!
//! Kafka mode does not write into stream topics (other producers and consumers own them):
//! there the advance is applied at once; a replay re-decides with its own clock, so an
//! event that arrived after an advance may be judged differently (late or not) after a
//! failover.
//!
//! A tick is `WT\x01` + the watermark (i64, little endian): 11 bytes that no JSON event
//! starts with.

use super::Worker;
use matcher::output::OutputRecord;
use std::time::Duration;

const TICK: &[u8; 3] = b"WT\x01";

/// A tick is written when the watermark would move by at least this much (results are
/// out within this plus one worker wake-up, 100 ms, of their decision time).
const TICK_STEP_MS: i64 = 200;

/// A tick record carrying watermark `wm`.
pub(super) fn encode_tick(wm: i64) -> Vec<u8> {
    let mut v = Vec::with_capacity(11);
    v.extend_from_slice(TICK);
    v.extend_from_slice(&wm.to_le_bytes());
    v
}

/// The watermark of a tick record; `None` for anything else.
pub(super) fn decode_tick(payload: &[u8]) -> Option<i64> {
    if payload.len() != 11 || &payload[..3] != TICK {
        return None;
    }
    Some(i64::from_le_bytes(payload[3..11].try_into().ok()?))
}

/// One source stream's quiet-time bookkeeping in this partition.
#[derive(Debug, Clone, Copy)]
pub(super) struct Quiet {
    /// When its last event was appended (the log's record time).
    last_event_ms: i64,
    /// Its watermark right after that event.
    wm_at_last: i64,
    /// The highest watermark written in a tick not read back yet.
    pending: i64,
}

impl Worker {
    /// After the events of `stream` up to one appended at `arrival_ms`: the quiet time
    /// counts from there.
    pub(super) fn note_event(&mut self, stream: &str, arrival_ms: i64) {
        let wm = self.engine.watermark(stream).unwrap_or(i64::MIN);
        let q = self.quiet.entry(stream.to_string()).or_insert(Quiet {
            last_event_ms: arrival_ms,
            wm_at_last: wm,
            pending: i64::MIN,
        });
        q.last_event_ms = arrival_ms;
        q.wm_at_last = wm;
    }

    /// A record of source stream `stream` appended at `at_ms`: when it is a tick, applies
    /// it (outputs to `out`) and returns true.
    pub(super) fn apply_tick(
        &mut self,
        stream: &str,
        payload: &[u8],
        at_ms: i64,
        out: &mut Vec<OutputRecord>,
    ) -> bool {
        let Some(wm) = decode_tick(payload) else {
            return false;
        };
        self.engine.advance_idle(stream, wm, out);
        // After a restart nothing is known of the last event: count from the tick (it
        // was written at the watermark the last event's time gave).
        self.quiet.entry(stream.to_string()).or_insert(Quiet {
            last_event_ms: at_ms,
            wm_at_last: wm,
            pending: i64::MIN,
        });
        true
    }

    /// How long a partition of `stream` may go without events before it stops holding
    /// back combined watermarks (`None`: never, `idle_timeout = '0'`).
    pub(super) fn idle_after(&self, stream: &str) -> Option<Duration> {
        match self.engine.idle_timeout_ms(stream) {
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms)),
            None => Some(Duration::from_millis(dsl::plan::DEFAULT_IDLE_TIMEOUT_MS)),
        }
    }

    /// After reading source stream `stream`'s partition (topic `topic`): when it has been
    /// quiet for its `idle_timeout`, moves its watermark along the clock — through a tick
    /// in the log (embedded mode) or at once (Kafka mode; outputs to `out`).
    pub(super) fn tick_if_quiet(&mut self, stream: &str, topic: &str, out: &mut Vec<OutputRecord>) {
        let idle = match self.engine.idle_timeout_ms(stream) {
            Some(ms) if ms > 0 => ms.min(i64::MAX as u64) as i64,
            _ => return,
        };
        let now = self.shared.settings.clock.now_ms();
        let cur = self.engine.watermark(stream).unwrap_or(i64::MIN);
        // Nothing known since this worker started (a checkpoint covered everything):
        // count the quiet time from now.
        let q = self.quiet.entry(stream.to_string()).or_insert(Quiet {
            last_event_ms: now,
            wm_at_last: cur,
            pending: i64::MIN,
        });
        let quiet_for = now.saturating_sub(q.last_event_ms);
        if q.wm_at_last == i64::MIN || quiet_for < idle {
            return;
        }
        let target = q.wm_at_last.saturating_add(quiet_for);
        if target.saturating_sub(cur.max(q.pending)) < TICK_STEP_MS {
            return;
        }
        if self.shared.log.as_embedded().is_none() {
            self.engine.advance_idle(stream, target, out);
            return;
        }
        let tick = encode_tick(target);
        match self
            .shared
            .log
            // Waits for the fsync (under `fsync = always` readers see only durable
            // records; the tick must be read back soon, not at the next safety fsync).
            .append(topic, self.partition, &[tick.as_slice()])
        {
            Ok(_) => {
                q.pending = target;
                self.shared.wake_workers();
            }
            Err(e) => {
                tracing::warn!(partition = self.partition, topic, error = %e, "cannot write an idle tick; retrying at the next step")
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_trip_and_are_not_events() {
        for wm in [i64::MIN, -1, 0, 1_765_000_000_000, i64::MAX] {
            assert_eq!(decode_tick(&encode_tick(wm)), Some(wm));
        }
        assert_eq!(decode_tick(b"{\"a\":1}"), None);
        assert_eq!(decode_tick(b""), None);
        assert_eq!(decode_tick(&encode_tick(5)[..10]), None);
        // A repartitioned copy or mark is not a tick either.
        assert_eq!(
            decode_tick(&crate::serve::repartition::encode_mark(0, 5, true)),
            None
        );
    }
}
