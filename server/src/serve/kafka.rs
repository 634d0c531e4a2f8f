//! Kafka mode (`weir serve --kafka`, `docs/kafka.md`): the consumer-group member that
//! hands worker partitions to this instance, and the Kafka metrics. (The statements
//! follower is in [`super::statements`], event appends in [`super::ingest`].)
//!
//! Ownership: the group is subscribed to the leases topic (`<prefix>leases`, one
//! partition per worker, never written). Owning lease partition `p` means running worker
//! `p`, which reads partition `p` of every stream topic. Stream topics can thus be added
//! without a rebalance, and one worker's streams always move together.

use super::log::stream_topic;
use super::state::{relaxed, Shared, LEASES_TOPIC};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_kafka::{GroupMember, KafkaLog, LogBackend, RebalanceHooks};
use weir_log::STATEMENTS_TOPIC;

struct Hooks {
    shared: Arc<Shared>,
    leases: String,
}

impl Hooks {
    fn lease_parts<'a>(&self, parts: impl Iterator<Item = (&'a String, u32)>) -> Vec<usize> {
        let n = self.shared.kafka.as_ref().map_or(0, |k| k.owned.len());
        parts
            .filter(|(t, p)| **t == self.leases && (*p as usize) < n)
            .map(|(_, p)| p as usize)
            .collect()
    }
}

/// Input offsets covered by worker `p`'s latest checkpoint, as Kafka topic names.
fn covered_offsets(shared: &Shared, p: usize) -> Vec<(String, u32, u64)> {
    let (Some(k), Some(klog)) = (&shared.kafka, shared.log.as_kafka()) else {
        return Vec::new();
    };
    let Some(c) = k.covered.get(p) else {
        return Vec::new();
    };
    let c = c.lock().unwrap_or_else(|e| e.into_inner());
    c.iter()
        .filter(|(t, _, _)| *t != STATEMENTS_TOPIC)
        .map(|(t, part, o)| (klog.kafka_topic(t), part, o))
        .collect()
}

impl RebalanceHooks for Hooks {
    fn on_assigned(&self, parts: &[(String, u32, Option<u64>)]) -> Vec<Option<u64>> {
        if let Some(k) = &self.shared.kafka {
            k.rebalances.fetch_add(1, Ordering::Relaxed);
            *k.last_assigned.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            let ps = self.lease_parts(parts.iter().map(|(t, p, _)| (t, *p)));
            tracing::info!(partitions = ?ps, "partitions assigned");
            for p in ps {
                k.owned[p].store(true, Ordering::SeqCst);
            }
        }
        self.shared.wake_workers();
        vec![None; parts.len()]
    }

    fn on_revoked(&self, parts: &[(String, u32)]) -> Vec<(String, u32, u64)> {
        let Some(k) = &self.shared.kafka else {
            return Vec::new();
        };
        let ps = self.lease_parts(parts.iter().map(|(t, p)| (t, *p)));
        tracing::info!(partitions = ?ps, "partitions revoked; checkpointing them");
        for &p in &ps {
            k.owned[p].store(false, Ordering::SeqCst);
        }
        self.shared.wake_workers();
        // Each worker checkpoints and stops (or has stopped at shutdown). The wait is
        // short (200 ms at most): a member that is slow to rejoin makes tansu start yet
        // another generation, and with a 1 s wait two members were seen handing the
        // partitions back and forth for over 30 s. A worker still releasing afterwards
        // stops reading at once and writes its checkpoint; the new owner then replays
        // at most what that checkpoint would have covered (at-least-once, same ids).
        let bound = self.shared.kafka.as_ref().map_or(Duration::ZERO, |k| {
            (k.config.session_timeout / 20).min(Duration::from_millis(200))
        });
        let deadline = Instant::now() + bound;
        let mut g = self
            .shared
            .progress_seq
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while ps.iter().any(|&p| k.active[p].load(Ordering::SeqCst)) {
            let now = Instant::now();
            if now >= deadline {
                tracing::info!("some workers are still releasing their partitions");
                break;
            }
            g = self
                .shared
                .progress_cv
                .wait_timeout(g, Duration::from_millis(20))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(g);
        ps.iter()
            .flat_map(|&p| covered_offsets(&self.shared, p))
            .collect()
    }
}

/// Joins the consumer group on its own thread: rebalance hooks hand partitions to the
/// workers; offsets covered by checkpoints are committed periodically (for lag tools);
/// on shutdown the member leaves after its workers checkpointed.
///
/// Orphaned partitions: every instance writes a small "alive" record to each lease
/// partition it owns every half session timeout. tansu 0.6 removes a member that stopped
/// heart-beating but keeps the old assignment (its JoinGroup/SyncGroup in the Formed
/// state return the stored one), so a killed instance's partitions would stay unowned.
/// When a lease partition this instance does not own has had no "alive" record for
/// two session timeouts, this member changes its subscription (adds or drops
/// `<prefix>leases.rejoin`), which makes any broker run a real rebalance over the live
/// members.
pub fn start_group(shared: Arc<Shared>) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let (Some(k), Some(klog)) = (&shared.kafka, shared.log.as_kafka()) else {
        anyhow::bail!("not in Kafka mode");
    };
    let cfg = k.config.clone();
    let leases = klog.kafka_topic(LEASES_TOPIC);
    let rejoin_logical = format!("{LEASES_TOPIC}.rejoin");
    klog.create_topic(&rejoin_logical, 1)?;
    let rejoin = klog.kafka_topic(&rejoin_logical);
    let hooks = Hooks {
        shared: shared.clone(),
        leases: leases.clone(),
    };
    let member = GroupMember::join(&cfg, &[&leases], hooks)?;
    let every = shared.settings.checkpoint_interval;
    let session = cfg.session_timeout;
    let me = cfg.client_id.clone();
    Ok(std::thread::Builder::new()
        .name("weir-group".into())
        .spawn(move || {
            let started = Instant::now();
            let mut last_commit = Instant::now();
            let mut last_alive: Option<Instant> = None;
            let mut last_check = Instant::now();
            let mut with_rejoin = false;
            let mut last_force: Option<Instant> = None;
            let mut seen_rebalances = 0u64;
            loop {
                if shared.shutdown.load(Ordering::SeqCst) {
                    if let Err(e) = member.close() {
                        tracing::warn!(error = %e, "leaving the consumer group");
                    }
                    return;
                }
                if let Err(e) = member.poll_batch(64, Duration::from_millis(100)) {
                    tracing::debug!(error = %e, "consumer group poll");
                }
                let Some(klog) = shared.log.as_kafka() else {
                    return;
                };
                let n = shared.kafka.as_ref().map_or(0, |k| k.owned.len()) as u32;
                let r = member.rebalances();
                if r != seen_rebalances {
                    // Announce new partitions at once.
                    seen_rebalances = r;
                    last_alive = None;
                }
                if last_alive.is_none_or(|t| t.elapsed() >= session / 2) {
                    last_alive = Some(Instant::now());
                    for p in (0..n).filter(|&p| shared.runs_partition(p)) {
                        if let Err(e) =
                            klog.append_keyed(LEASES_TOPIC, p, &[(b"alive", me.as_bytes())])
                        {
                            tracing::debug!(error = %e, "writing a lease record");
                        }
                    }
                }
                let recent = last_force.is_some_and(|t| t.elapsed() < session * 3);
                if last_check.elapsed() >= session / 2 && !recent {
                    last_check = Instant::now();
                    let stale = (0..n)
                        .filter(|&p| !shared.runs_partition(p))
                        .find(|&p| lease_is_stale(klog, p, session * 2, started));
                    if let Some(p) = stale {
                        with_rejoin = !with_rejoin;
                        let topics: Vec<&str> = if with_rejoin {
                            vec![&leases, &rejoin]
                        } else {
                            vec![&leases]
                        };
                        tracing::info!(
                            partition = p,
                            "a partition has had no live owner for two session timeouts; re-subscribing to force a rebalance"
                        );
                        if let Some(k) = &shared.kafka {
                            k.forced_rejoins.fetch_add(1, Ordering::Relaxed);
                        }
                        last_force = Some(Instant::now());
                        if let Err(e) = member.subscribe(&topics) {
                            tracing::warn!(error = %e, "re-subscribing");
                        }
                    }
                }
                if last_commit.elapsed() >= every {
                    last_commit = Instant::now();
                    let offs: Vec<(String, u32, u64)> = (0..n)
                        .filter(|&p| shared.runs_partition(p))
                        .flat_map(|p| covered_offsets(&shared, p as usize))
                        .collect();
                    let refs: Vec<(&str, u32, u64)> =
                        offs.iter().map(|(t, p, o)| (t.as_str(), *p, *o)).collect();
                    if !refs.is_empty() {
                        if let Err(e) = member.commit(&refs) {
                            tracing::debug!(error = %e, "committing checkpointed offsets");
                        }
                    }
                }
            }
        })?)
}

/// True when lease partition `p`'s newest "alive" record is older than `max_age` (or
/// there is none and this instance has been up that long).
fn lease_is_stale(klog: &KafkaLog, p: u32, max_age: Duration, started: Instant) -> bool {
    let Ok(end) = klog.end_offset(LEASES_TOPIC, p) else {
        return false;
    };
    if end == 0 {
        return started.elapsed() > max_age;
    }
    let Ok(recs) = klog.read_records(
        LEASES_TOPIC,
        p,
        end - 1,
        16,
        1 << 16,
        Duration::from_millis(500),
    ) else {
        return false;
    };
    let Some(last) = recs.iter().map(|r| r.timestamp_ms).max() else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    now - last > max_age.as_millis() as i64
}

/// The Kafka section of `/metrics` (empty on the embedded log).
pub fn metrics(s: &Shared) -> String {
    let (Some(k), Some(klog)) = (&s.kafka, s.log.as_kafka()) else {
        return String::new();
    };
    let mut t = String::new();
    let streams = s.current().streams(s.settings.partitions);
    let _ = writeln!(t, "# HELP weir_kafka_consumer_lag Records of an owned input partition not yet applied (high watermark minus next offset).\n# TYPE weir_kafka_consumer_lag gauge");
    let mut ages = String::new();
    for p in 0..k.owned.len() as u32 {
        if !k.owns(p) {
            continue;
        }
        let (applied, last) = s
            .progress
            .get(p as usize)
            .map(|g| {
                let g = g.lock().unwrap_or_else(|e| e.into_inner());
                (g.applied.clone(), g.last_checkpoint)
            })
            .unwrap_or_default();
        for (name, parts) in &streams {
            if p >= *parts {
                continue;
            }
            let topic = stream_topic(name);
            let kt = klog.kafka_topic(&topic);
            let end = s.log.end_offset(&topic, p).unwrap_or(0);
            let lag = end.saturating_sub(applied.get(&topic, p).unwrap_or(0));
            let _ = writeln!(
                t,
                "weir_kafka_consumer_lag{{topic=\"{kt}\",partition=\"{p}\"}} {lag}"
            );
            let _ = writeln!(
                ages,
                "weir_kafka_checkpoint_age_seconds{{topic=\"{kt}\",partition=\"{p}\"}} {:.3}",
                last.map_or(-1.0, |x| x.elapsed().as_secs_f64())
            );
        }
    }
    let _ = writeln!(t, "# HELP weir_kafka_checkpoint_age_seconds Seconds since the owned partition's last checkpoint (-1: none yet).\n# TYPE weir_kafka_checkpoint_age_seconds gauge");
    t.push_str(&ages);
    let owned = (0..k.owned.len() as u32).filter(|&p| k.owns(p)).count();
    let _ = writeln!(
        t,
        "# HELP weir_kafka_rebalances_total Partition assignments received from the consumer group.\n# TYPE weir_kafka_rebalances_total counter\nweir_kafka_rebalances_total {}",
        relaxed(&k.rebalances)
    );
    let _ = writeln!(
        t,
        "# HELP weir_kafka_forced_rejoins_total Rebalances weir forced because the broker kept a dead member's assignment.\n# TYPE weir_kafka_forced_rejoins_total counter\nweir_kafka_forced_rejoins_total {}",
        relaxed(&k.forced_rejoins)
    );
    let _ = writeln!(
        t,
        "# HELP weir_kafka_owned_partitions Worker partitions this instance runs.\n# TYPE weir_kafka_owned_partitions gauge\nweir_kafka_owned_partitions {owned}"
    );
    let _ = writeln!(
        t,
        "# HELP weir_kafka_rebalance_recovery_milliseconds From the last assignment to every owned partition running again.\n# TYPE weir_kafka_rebalance_recovery_milliseconds gauge\nweir_kafka_rebalance_recovery_milliseconds {}",
        relaxed(&k.last_recovery_ms)
    );
    t
}
