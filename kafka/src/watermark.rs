//! Event-time watermark across input partitions: the minimum over partitions, skipping
//! partitions idle for longer than a timeout (so one quiet partition does not stall every
//! window), and never going backwards.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Tracks per-partition event-time maxima (bounded by the number of assigned partitions).
#[derive(Debug)]
pub struct WatermarkTracker {
    idle_timeout: Duration,
    parts: HashMap<(String, u32), (i64, Instant)>,
    emitted: Option<i64>,
}

impl WatermarkTracker {
    /// A tracker treating partitions without events for `idle_timeout` as idle.
    pub fn new(idle_timeout: Duration) -> Self {
        WatermarkTracker {
            idle_timeout,
            parts: HashMap::new(),
            emitted: None,
        }
    }

    /// A partition was assigned (it holds the watermark back until it sees an event or
    /// turns idle).
    pub fn assign(&mut self, topic: &str, partition: u32, now: Instant) {
        self.parts
            .entry((topic.to_string(), partition))
            .or_insert((i64::MIN, now));
    }

    /// A partition was revoked.
    pub fn revoke(&mut self, topic: &str, partition: u32) {
        self.parts.remove(&(topic.to_string(), partition));
    }

    /// An event with time `ts_ms` was read from a partition.
    pub fn observe(&mut self, topic: &str, partition: u32, ts_ms: i64, now: Instant) {
        let e = self
            .parts
            .entry((topic.to_string(), partition))
            .or_insert((i64::MIN, now));
        e.0 = e.0.max(ts_ms);
        e.1 = now;
    }

    /// The watermark: min of the active partitions' maxima (all idle: max of all);
    /// `None` until some partition saw an event. Never decreases.
    pub fn watermark(&mut self, now: Instant) -> Option<i64> {
        let active = self
            .parts
            .values()
            .filter(|(_, seen)| now.duration_since(*seen) < self.idle_timeout)
            .map(|(ts, _)| *ts)
            .min();
        let w = match active {
            Some(w) => w,
            None => self
                .parts
                .values()
                .map(|(ts, _)| *ts)
                .max()
                .unwrap_or(i64::MIN),
        };
        if w == i64::MIN {
            return self.emitted;
        }
        let w = self.emitted.map_or(w, |e| e.max(w));
        self.emitted = Some(w);
        Some(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_over_partitions_with_idle_timeout() {
        let t0 = Instant::now();
        let mut w = WatermarkTracker::new(Duration::from_secs(5));
        w.assign("s", 0, t0);
        w.assign("s", 1, t0);
        assert_eq!(w.watermark(t0), None);
        w.observe("s", 0, 1000, t0);
        // Partition 1 is assigned, not idle yet, and has seen nothing: holds back.
        assert_eq!(w.watermark(t0), None);
        w.observe("s", 1, 400, t0);
        assert_eq!(w.watermark(t0), Some(400));
        let t1 = t0 + Duration::from_secs(3);
        w.observe("s", 0, 2000, t1);
        assert_eq!(w.watermark(t1), Some(400));
        // Partition 1 idle for > 5 s: ignored.
        let t2 = t0 + Duration::from_secs(6);
        assert_eq!(w.watermark(t2), Some(2000));
        // It wakes up behind: the watermark does not go back.
        w.observe("s", 1, 500, t2);
        assert_eq!(w.watermark(t2), Some(2000));
        w.revoke("s", 1);
        w.observe("s", 0, 3000, t2);
        assert_eq!(w.watermark(t2), Some(3000));
    }
}
