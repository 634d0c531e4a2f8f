//! Partition-state checkpoints in a compacted Kafka topic (`<prefix>checkpoints`), so a
//! partition's new owner after a rebalance — on another machine — can restore its state.
//!
//! A checkpoint of `name` (e.g. `clicks-3`) with sequence `seq` is written as chunks of at
//! most 512 KiB, each a record keyed `name/seq/chunk` in the partition
//! `partition_for_key(name)`. After all chunks of `seq` are acknowledged, tombstones for the
//! previous sequence's chunks are written, so compaction keeps only complete, recent
//! checkpoints. A reader picks the highest sequence whose chunks are all present; a
//! checkpoint cut short by a crash is ignored.
//!
//! Chunk value: `WKC1`, seq (u64 LE), created_ms (i64 LE), chunk index (u32 LE), chunk
//! count (u32 LE), length of the covered position (u32 LE), the position
//! ([`weir_log::Position::to_bytes`]), then the chunk's bytes of the state.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use weir_log::{Checkpoint, Position};

use crate::admin::Admin;
use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::partitioner::partition_for_key;
use crate::producer::{OutRecord, Producer};
use crate::reader::PartitionReader;

const MAGIC: &[u8; 4] = b"WKC1";
const CHUNK: usize = 512 * 1024;

/// Checkpoints in Kafka; the counterpart of [`weir_log::CheckpointStore`].
pub struct KafkaCheckpointStore {
    config: KafkaConfig,
    topic: String,
    partitions: u32,
    producer: Producer,
    /// name → (latest seq, its chunk count, when written here).
    known: Mutex<HashMap<String, Known>>,
    /// Per checkpoints partition: what was read so far (scans resume where they ended).
    cache: Mutex<HashMap<u32, Arc<Mutex<PartCache>>>>,
}

/// One checkpoints partition as read so far: the latest value per key (tombstoned keys
/// removed, so its size is bounded by the live checkpoints), and where to continue.
struct PartCache {
    reader: PartitionReader,
    next: u64,
    latest: HashMap<Vec<u8>, Vec<u8>>,
}

/// (latest seq, its chunk count, when this instance wrote it).
type Known = (u64, u32, Option<Instant>);
/// seq → (created_ms, covered position bytes, chunks by index).
type Series = BTreeMap<u64, (i64, Vec<u8>, Vec<Option<Vec<u8>>>)>;

struct Chunk {
    seq: u64,
    created_ms: i64,
    index: u32,
    count: u32,
    covered: Vec<u8>,
    data: Vec<u8>,
}

fn encode(
    seq: u64,
    created_ms: i64,
    index: u32,
    count: u32,
    covered: &[u8],
    data: &[u8],
) -> Vec<u8> {
    let mut v = Vec::with_capacity(32 + covered.len() + data.len());
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&created_ms.to_le_bytes());
    v.extend_from_slice(&index.to_le_bytes());
    v.extend_from_slice(&count.to_le_bytes());
    v.extend_from_slice(&(covered.len() as u32).to_le_bytes());
    v.extend_from_slice(covered);
    v.extend_from_slice(data);
    v
}

fn decode(v: &[u8]) -> Option<Chunk> {
    let rd = |at: usize, n: usize| v.get(at..at + n);
    if rd(0, 4)? != MAGIC {
        return None;
    }
    let seq = u64::from_le_bytes(rd(4, 8)?.try_into().ok()?);
    let created_ms = i64::from_le_bytes(rd(12, 8)?.try_into().ok()?);
    let index = u32::from_le_bytes(rd(20, 4)?.try_into().ok()?);
    let count = u32::from_le_bytes(rd(24, 4)?.try_into().ok()?);
    let clen = u32::from_le_bytes(rd(28, 4)?.try_into().ok()?) as usize;
    let covered = rd(32, clen)?.to_vec();
    let data = v.get(32 + clen..)?.to_vec();
    if index >= count {
        return None;
    }
    Some(Chunk {
        seq,
        created_ms,
        index,
        count,
        covered,
        data,
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl KafkaCheckpointStore {
    /// Opens the store on `config.checkpoints_topic()` (created compacted if missing).
    pub fn open(config: &KafkaConfig) -> Result<KafkaCheckpointStore> {
        let topic = config.checkpoints_topic();
        let partitions =
            Admin::new(config)?.create_topic(&topic, config.default_partitions, true)?;
        Ok(KafkaCheckpointStore {
            config: config.clone(),
            topic,
            partitions,
            producer: Producer::idempotent(config)?,
            known: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn partition_of(&self, name: &str) -> u32 {
        partition_for_key(name.as_bytes(), self.partitions)
    }

    /// Every complete checkpoint of `name` in the topic, by sequence.
    fn scan(&self, name: &str) -> Result<Series> {
        let part = self.partition_of(name);
        let cache = {
            let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            match c.get(&part) {
                Some(x) => x.clone(),
                None => {
                    let x = Arc::new(Mutex::new(PartCache {
                        reader: PartitionReader::new(&self.config, &self.topic, part)?,
                        next: 0,
                        latest: HashMap::new(),
                    }));
                    c.insert(part, x.clone());
                    x
                }
            }
        };
        let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
        let from = cache.next;
        let recs = cache.reader.read_to_end(from);
        // Scans are occasional (restores, a first checkpoint): no fetching in between.
        if let Err(e) = cache.reader.stop() {
            tracing::debug!(error = %e, "stopping a checkpoints reader");
        }
        let recs = recs?;
        // key → latest value, as compaction would leave it (a tombstone deletes).
        for r in recs {
            cache.next = cache.next.max(r.offset + 1);
            let Some(k) = r.key else { continue };
            match r.value.filter(|v| !v.is_empty()) {
                Some(v) => {
                    cache.latest.insert(k, v);
                }
                None => {
                    cache.latest.remove(&k);
                }
            }
        }
        let prefix = format!("{name}/");
        let mut by_seq: Series = BTreeMap::new();
        for (k, v) in cache.latest.iter() {
            if !k.starts_with(prefix.as_bytes()) {
                continue;
            }
            // The key must be exactly name/seq/chunk (names may not contain '/').
            if k[prefix.len()..].iter().filter(|b| **b == b'/').count() != 1 {
                continue;
            }
            let Some(c) = decode(v) else {
                return Err(Error::Corrupt(format!(
                    "{} record {}",
                    self.topic,
                    String::from_utf8_lossy(k)
                )));
            };
            let e = by_seq.entry(c.seq).or_insert_with(|| {
                (
                    c.created_ms,
                    c.covered.clone(),
                    vec![None; c.count as usize],
                )
            });
            if e.2.len() == c.count as usize {
                e.2[c.index as usize] = Some(c.data);
            }
        }
        Ok(by_seq)
    }

    /// Writes a checkpoint of `name` covering `covered`; returns its sequence number.
    pub fn write_checkpoint(&self, name: &str, covered: &Position, data: &[u8]) -> Result<u64> {
        if name.is_empty() || name.contains('/') || name.len() > 200 {
            return Err(Error::Config(format!("invalid checkpoint name {name:?}")));
        }
        let prev = self.known_latest(name)?;
        let seq = prev.map_or(1, |(s, _)| s + 1);
        let cov = covered.to_bytes();
        let chunks: Vec<&[u8]> = if data.is_empty() {
            vec![&[][..]]
        } else {
            data.chunks(CHUNK).collect()
        };
        let count = chunks.len() as u32;
        let created = now_ms();
        let part = self.partition_of(name);
        let keys: Vec<String> = (0..count).map(|i| format!("{name}/{seq}/{i}")).collect();
        let values: Vec<Vec<u8>> = chunks
            .iter()
            .enumerate()
            .map(|(i, c)| encode(seq, created, i as u32, count, &cov, c))
            .collect();
        for (k, v) in keys.iter().zip(&values) {
            // One chunk per request keeps each request under the broker's size limit.
            self.producer.send(
                &self.topic,
                &[OutRecord {
                    partition: Some(part),
                    key: Some(k.as_bytes()),
                    value: v,
                    ..Default::default()
                }],
            )?;
        }
        if let Some((pseq, pcount)) = prev {
            let tomb: Vec<String> = (0..pcount).map(|i| format!("{name}/{pseq}/{i}")).collect();
            let recs: Vec<OutRecord<'_>> = tomb
                .iter()
                .map(|k| OutRecord {
                    partition: Some(part),
                    key: Some(k.as_bytes()),
                    tombstone: true,
                    ..Default::default()
                })
                .collect();
            self.producer.send(&self.topic, &recs)?;
        }
        let mut k = self.known.lock().unwrap_or_else(|p| p.into_inner());
        k.insert(name.to_string(), (seq, count, Some(Instant::now())));
        Ok(seq)
    }

    fn known_latest(&self, name: &str) -> Result<Option<(u64, u32)>> {
        if let Some((s, c, _)) = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            return Ok(Some((*s, *c)));
        }
        let all = self.scan(name)?;
        Ok(all
            .iter()
            .next_back()
            .map(|(s, (_, _, ch))| (*s, ch.len() as u32)))
    }

    /// The newest complete checkpoint of `name`, `None` if there is none.
    pub fn latest_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>> {
        let all = self.scan(name)?;
        for (seq, (created_ms, cov, chunks)) in all.into_iter().rev() {
            if chunks.iter().all(Option::is_some) {
                let covered = Position::from_bytes(&cov)?;
                let data: Vec<u8> = chunks.into_iter().flatten().flatten().collect();
                let mut k = self.known.lock().unwrap_or_else(|p| p.into_inner());
                let e = k.entry(name.to_string()).or_insert((seq, 0, None));
                if e.0 <= seq {
                    e.0 = seq;
                    e.1 = data.len().div_ceil(CHUNK).max(1) as u32;
                }
                return Ok(Some(Checkpoint {
                    seq,
                    created_ms,
                    covered,
                    data,
                }));
            }
        }
        Ok(None)
    }

    /// Seconds since this instance last wrote a checkpoint of `name` (the checkpoint-age
    /// metric); `None` if it has not written one.
    pub fn checkpoint_age(&self, name: &str) -> Option<std::time::Duration> {
        let k = self.known.lock().unwrap_or_else(|p| p.into_inner());
        k.get(name).and_then(|(_, _, t)| t.map(|t| t.elapsed()))
    }
}
