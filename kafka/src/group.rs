//! A consumer-group member: the instance's share of the input partitions, with hooks the
//! server uses to drain + checkpoint on revocation and restore + resume on assignment.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata,
};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::reader::KafkaRecord;

/// What the server does when the group moves partitions. Both run on the thread that
/// calls [`GroupMember::poll`], inside the poll, before the move completes.
pub trait RebalanceHooks: Send + Sync + 'static {
    /// Partitions were assigned to this instance: `(topic, partition, the group's
    /// committed offset)`. Restore each one's state (from [`crate::KafkaCheckpointStore`])
    /// and return, per partition in order, the offset to resume from: `Some(o)` = the
    /// offset the restored checkpoint covers (records from there up to the committed
    /// offset are a replay: their outputs were already written and should be suppressed),
    /// `None` = the committed offset (earliest if none).
    fn on_assigned(&self, partitions: &[(String, u32, Option<u64>)]) -> Vec<Option<u64>>;

    /// Partitions are being taken away (rebalance, or [`GroupMember::close`]). Drain the
    /// work in flight for them, write their checkpoints, and return the offsets to commit
    /// (`(topic, partition, next offset to read)`); they are committed synchronously
    /// before the partitions are released.
    fn on_revoked(&self, partitions: &[(String, u32)]) -> Vec<(String, u32, u64)>;
}

/// Hooks that do nothing: resume from committed offsets, commit nothing on revocation.
pub struct NoHooks;

impl RebalanceHooks for NoHooks {
    fn on_assigned(&self, partitions: &[(String, u32, Option<u64>)]) -> Vec<Option<u64>> {
        vec![None; partitions.len()]
    }
    fn on_revoked(&self, _: &[(String, u32)]) -> Vec<(String, u32, u64)> {
        Vec::new()
    }
}

/// Consumer context running the hooks (internal).
#[doc(hidden)]
pub struct MemberContext<H> {
    hooks: H,
    timeout: Duration,
    rebalances: AtomicU64,
    assigned: Mutex<Vec<(String, u32)>>,
    last_error: Mutex<Option<String>>,
}

impl<H: RebalanceHooks> ClientContext for MemberContext<H> {}

fn list(tpl: &TopicPartitionList) -> Vec<(String, u32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition() as u32))
        .collect()
}

impl<H: RebalanceHooks> ConsumerContext for MemberContext<H> {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let parts = list(tpl);
                let committed = consumer.committed_offsets(tpl.clone(), self.timeout);
                let with_committed: Vec<(String, u32, Option<u64>)> = parts
                    .iter()
                    .map(|(t, p)| {
                        let c = committed.as_ref().ok().and_then(|c| {
                            match c.find_partition(t, *p as i32).map(|e| e.offset()) {
                                Some(Offset::Offset(o)) => Some(o as u64),
                                _ => None,
                            }
                        });
                        (t.clone(), *p, c)
                    })
                    .collect();
                if let Err(e) = &committed {
                    self.note_error(format!("reading committed offsets: {e}"));
                }
                let starts = self.hooks.on_assigned(&with_committed);
                for ((t, p), start) in parts.iter().zip(starts) {
                    if let Some(o) = start {
                        if let Some(mut e) = tpl.find_partition(t, *p as i32) {
                            let _ = e.set_offset(Offset::Offset(o as i64));
                        }
                    }
                }
                if let Err(e) = consumer.assign(tpl) {
                    self.note_error(format!("assign: {e}"));
                }
                *self.assigned.lock().unwrap_or_else(|p| p.into_inner()) = parts;
                self.rebalances.fetch_add(1, Ordering::Relaxed);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let parts = list(tpl);
                let commits = self.hooks.on_revoked(&parts);
                if !commits.is_empty() {
                    let mut c = TopicPartitionList::new();
                    for (t, p, o) in &commits {
                        let _ = c.add_partition_offset(t, *p as i32, Offset::Offset(*o as i64));
                    }
                    if let Err(e) = consumer.commit(&c, CommitMode::Sync) {
                        self.note_error(format!("commit on revocation: {e}"));
                    }
                }
                if let Err(e) = consumer.unassign() {
                    self.note_error(format!("unassign: {e}"));
                }
                self.assigned
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
            }
            other => {
                self.note_error(format!("rebalance error: {other:?}"));
                let _ = consumer.unassign();
                self.assigned
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clear();
            }
        }
    }
}

impl<H> MemberContext<H> {
    fn note_error(&self, e: String) {
        tracing::warn!(error = %e, "kafka consumer group");
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }
}

/// Consumer lag of one assigned partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Next offset this member will read (`None` before the first fetch).
    pub position: Option<u64>,
    /// The partition's high watermark (next offset to be written).
    pub high_watermark: u64,
    /// `high_watermark - position` (the whole retained partition before the first fetch).
    pub lag: u64,
}

/// One member of the consumer group `config.group`.
pub struct GroupMember<H: RebalanceHooks = NoHooks> {
    consumer: BaseConsumer<MemberContext<H>>,
    timeout: Duration,
}

impl<H: RebalanceHooks> GroupMember<H> {
    /// Joins the group and subscribes to `topics` (the join completes inside the first
    /// polls). Offsets are committed only explicitly ([`GroupMember::commit`], or the
    /// revocation hook's), never automatically; consumption is read_committed.
    pub fn join(config: &KafkaConfig, topics: &[&str], hooks: H) -> Result<GroupMember<H>> {
        config.validate()?;
        for t in topics {
            crate::config::validate_topic(t)?;
        }
        let session = config.session_timeout.as_millis().max(1000);
        let ctx = MemberContext {
            hooks,
            timeout: config.request_timeout,
            rebalances: AtomicU64::new(0),
            assigned: Mutex::new(Vec::new()),
            last_error: Mutex::new(None),
        };
        let consumer: BaseConsumer<MemberContext<H>> = config
            .base()
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("session.timeout.ms", session.to_string())
            .set("heartbeat.interval.ms", (session / 4).max(100).to_string())
            .set(
                "max.poll.interval.ms",
                (session * 3).max(60_000).to_string(),
            )
            .create_with_context(ctx)?;
        consumer.subscribe(topics)?;
        Ok(GroupMember {
            consumer,
            timeout: config.request_timeout,
        })
    }

    /// Replaces the subscription (e.g. after a `CREATE STREAM` adds an input topic);
    /// triggers a rebalance.
    pub fn subscribe(&self, topics: &[&str]) -> Result<()> {
        for t in topics {
            crate::config::validate_topic(t)?;
        }
        Ok(self.consumer.subscribe(topics)?)
    }

    /// Polls for the next record (running rebalance hooks when the group moves).
    pub fn poll(&self, timeout: Duration) -> Result<Option<KafkaRecord>> {
        match self.consumer.poll(timeout) {
            None => Ok(None),
            Some(Ok(m)) => Ok(Some(KafkaRecord::from_message(&m))),
            Some(Err(KafkaError::PartitionEOF(_))) => Ok(None),
            Some(Err(e)) => Err(Error::Kafka(e)),
        }
    }

    /// Up to `max` records: waits up to `timeout` for the first, then takes what is
    /// already fetched.
    pub fn poll_batch(&self, max: usize, timeout: Duration) -> Result<Vec<KafkaRecord>> {
        let mut out = Vec::new();
        if let Some(r) = self.poll(timeout)? {
            out.push(r);
            while out.len() < max {
                match self.poll(Duration::ZERO)? {
                    Some(r) => out.push(r),
                    None => break,
                }
            }
        }
        Ok(out)
    }

    /// Commits `(topic, partition, next offset to read)` synchronously.
    pub fn commit(&self, offsets: &[(&str, u32, u64)]) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (t, p, o) in offsets {
            tpl.add_partition_offset(t, *p as i32, Offset::Offset(*o as i64))?;
        }
        Ok(self.consumer.commit(&tpl, CommitMode::Sync)?)
    }

    /// The group's committed offsets of `partitions` (`None` = nothing committed).
    pub fn committed(&self, partitions: &[(&str, u32)]) -> Result<Vec<Option<u64>>> {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in partitions {
            tpl.add_partition(t, *p as i32);
        }
        let got = self.consumer.committed_offsets(tpl, self.timeout)?;
        Ok(partitions
            .iter()
            .map(
                |(t, p)| match got.find_partition(t, *p as i32).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => Some(o as u64),
                    _ => None,
                },
            )
            .collect())
    }

    /// Partitions currently assigned to this member.
    pub fn assignment(&self) -> Vec<(String, u32)> {
        self.consumer
            .context()
            .assigned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Number of assignments received so far (the rebalance count metric).
    pub fn rebalances(&self) -> u64 {
        self.consumer.context().rebalances.load(Ordering::Relaxed)
    }

    /// The last error seen in a rebalance (assign/commit/unassign), if any.
    pub fn last_rebalance_error(&self) -> Option<String> {
        self.consumer
            .context()
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The hooks.
    pub fn hooks(&self) -> &H {
        &self.consumer.context().hooks
    }

    /// Group metadata for [`crate::Producer::send_offsets`] (exactly-once).
    pub fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        self.consumer.group_metadata()
    }

    /// Stops fetching `partitions` (backpressure) until [`GroupMember::resume`].
    pub fn pause(&self, partitions: &[(&str, u32)]) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in partitions {
            tpl.add_partition(t, *p as i32);
        }
        Ok(self.consumer.pause(&tpl)?)
    }

    /// Resumes paused partitions.
    pub fn resume(&self, partitions: &[(&str, u32)]) -> Result<()> {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in partitions {
            tpl.add_partition(t, *p as i32);
        }
        Ok(self.consumer.resume(&tpl)?)
    }

    /// Consumer lag of every assigned partition (one watermark request each).
    pub fn lag(&self) -> Result<Vec<PartitionLag>> {
        let pos = self.consumer.position()?;
        let positions: HashMap<(String, u32), Option<u64>> = pos
            .elements()
            .iter()
            .map(|e| {
                let o = match e.offset() {
                    Offset::Offset(o) => Some(o as u64),
                    _ => None,
                };
                ((e.topic().to_string(), e.partition() as u32), o)
            })
            .collect();
        let mut out = Vec::new();
        for (t, p) in self.assignment() {
            let (lo, hi) = self.consumer.fetch_watermarks(&t, p as i32, self.timeout)?;
            let (lo, hi) = (lo.max(0) as u64, hi.max(0) as u64);
            let position = positions.get(&(t.clone(), p)).copied().flatten();
            // tansu's memory engine under-reports the high watermark (last batch's base
            // offset + 1); what was read is certainly below the end.
            let hi = hi.max(position.unwrap_or(0));
            let lag = hi.saturating_sub(position.unwrap_or(lo));
            out.push(PartitionLag {
                topic: t,
                partition: p,
                position,
                high_watermark: hi,
                lag,
            });
        }
        Ok(out)
    }

    /// Leaves the group cleanly: the revocation hook runs (drain, checkpoint, commit) and
    /// the partitions move to the other members at once.
    pub fn close(self) -> Result<()> {
        self.consumer.unsubscribe();
        // Serve the revocation callback.
        for _ in 0..20 {
            let _ = self.consumer.poll(Duration::from_millis(50));
            if self.assignment().is_empty() {
                break;
            }
        }
        Ok(())
    }
}
