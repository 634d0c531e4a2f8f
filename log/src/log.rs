//! The log: topics of partitions in one directory, a background thread for interval
//! fsyncs and retention.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{FsyncPolicy, LogConfig, Retention};
use crate::error::{Error, IoContext, Result};
use crate::format::Record;
use crate::partition::{Partition, PartitionRecovery, PartitionStats};
use crate::position::Position;
use crate::segment::sync_dir;

/// Result of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the first record appended.
    pub first_offset: u64,
    /// Offset after the last record appended (`first_offset + records.len()`).
    pub end_offset: u64,
    /// True if the records are already durable under the fsync policy (always true
    /// for [`Log::append`]; for [`Log::append_nowait`] call [`Log::wait_durable`]).
    pub durable: bool,
}

/// Iterator returned by [`Log::iter`]; yields an error once and then ends if a read
/// fails (for example on corrupt data or an offset removed by retention).
pub struct LogIter {
    partition: Arc<Partition>,
    next: u64,
    buf: std::collections::VecDeque<Record>,
    done: bool,
}

impl Iterator for LogIter {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        if let Some(r) = self.buf.pop_front() {
            return Some(Ok(r));
        }
        if self.done {
            return None;
        }
        match self.partition.read(self.next, 1000, 1 << 20) {
            Ok(recs) if recs.is_empty() => {
                self.done = true;
                None
            }
            Ok(recs) => {
                self.next = recs.last().map_or(self.next, |r| r.offset + 1);
                self.buf.extend(recs);
                self.buf.pop_front().map(Ok)
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

struct Topic {
    partitions: Vec<Arc<Partition>>,
}

struct Inner {
    dir: PathBuf,
    cfg: Arc<LogConfig>,
    topics: RwLock<BTreeMap<String, Arc<Topic>>>,
    create_lock: Mutex<()>,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    recovery: Mutex<Vec<PartitionRecovery>>,
    _lock_file: File,
}

/// The embedded, partitioned, append-only log. Cheap to share behind an `Arc`; every
/// method takes `&self` and may be called from many threads.
///
/// ```
/// use weir_log::{Log, LogConfig};
/// let dir = tempfile::tempdir().unwrap();
/// let log = Log::open(dir.path(), LogConfig::default()).unwrap();
/// log.create_topic("clicks", 2).unwrap();
/// let a = log.append("clicks", 1, &[b"one", b"two"]).unwrap();
/// assert_eq!((a.first_offset, a.end_offset), (0, 2));
/// let recs = log.read("clicks", 1, 0, 100, 1 << 20).unwrap();
/// assert_eq!(&recs[1].payload[..], b"two");
/// ```
pub struct Log {
    inner: Arc<Inner>,
    background: Option<JoinHandle<()>>,
    /// Helper threads for [`Log::wait_durable_all`] (started at its first use; they
    /// end when the log is dropped).
    syncers: std::sync::OnceLock<Mutex<std::sync::mpsc::Sender<SyncJob>>>,
}

/// A partition to make durable up to an offset, and where to say it is done.
type SyncJob = (Arc<Partition>, u64, std::sync::mpsc::Sender<Result<()>>);

/// Helper threads that run the other partitions' fsyncs of a `wait_durable_all`.
const SYNC_HELPERS: usize = 3;

fn start_syncers() -> Mutex<std::sync::mpsc::Sender<SyncJob>> {
    let (tx, rx) = std::sync::mpsc::channel::<SyncJob>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..SYNC_HELPERS {
        let rx = rx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("weir-log-sync-{i}"))
            .spawn(move || loop {
                let job = match rx.lock() {
                    Ok(g) => g.recv(),
                    Err(_) => return,
                };
                let Ok((p, end, reply)) = job else { return };
                let _ = reply.send(p.wait_durable(end));
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start an fsync helper thread");
        }
    }
    Mutex::new(tx)
}

const ALWAYS_SAFETY_SYNC: Duration = Duration::from_secs(1);
/// How often the background thread looks for failed partitions to reopen.
const REOPEN_CHECK: Duration = Duration::from_millis(200);

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Topic and checkpoint names: 1–200 of `[A-Za-z0-9._-]`, not starting with `.`.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() || name.len() > 200 {
        return bad("must be 1 to 200 characters long");
    }
    if name.starts_with('.') {
        return bad("must not start with '.'");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return bad("only letters, digits, '_', '-' and '.' are allowed");
    }
    Ok(())
}

/// A topic's retention: its own, else the log's; the `statements` topic is never
/// trimmed (the catalog is rebuilt from it), whatever the log's default says.
fn topic_retention(name: &str, own: Option<Retention>, cfg: &LogConfig) -> Retention {
    if name == crate::STATEMENTS_TOPIC {
        return own.unwrap_or_default();
    }
    own.unwrap_or(cfg.retention)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).at(&tmp)?;
    f.write_all(bytes).at(&tmp)?;
    f.sync_all().at(&tmp)?;
    std::fs::rename(&tmp, path).at(path)?;
    sync_dir(dir)
}

fn topic_meta_text(partitions: u32, retention: Option<Retention>) -> String {
    let mut t = format!("weir-topic 1\npartitions {partitions}\n");
    if let Some(r) = retention {
        let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        t.push_str(&format!(
            "retention bytes={} age_ms={}\n",
            opt(r.max_bytes),
            opt(r.max_age.map(|d| d.as_millis() as u64))
        ));
    }
    t
}

/// Parses `topic.meta`: partition count and the topic's own retention (None = the
/// log's default).
fn read_topic_meta(path: &Path) -> Result<(u32, Option<Retention>)> {
    let text = std::fs::read_to_string(path).at(path)?;
    let bad = |what: &str| Error::Corrupt {
        path: path.to_path_buf(),
        position: 0,
        reason: format!("topic.meta: {what}"),
    };
    let mut lines = text.lines();
    if lines.next() != Some("weir-topic 1") {
        return Err(bad("expected 'weir-topic 1' on the first line"));
    }
    let partitions = lines
        .next()
        .and_then(|l| l.strip_prefix("partitions "))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .filter(|&n| n > 0)
        .ok_or_else(|| bad("expected 'partitions N' on the second line"))?;
    let mut retention = None;
    for line in lines {
        let Some(rest) = line.strip_prefix("retention ") else {
            continue;
        };
        let mut r = Retention::default();
        for kv in rest.split_whitespace() {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| bad("bad retention line"))?;
            let v = if v == "-" {
                None
            } else {
                Some(v.parse::<u64>().map_err(|_| bad("bad retention number"))?)
            };
            match k {
                "bytes" => r.max_bytes = v,
                "age_ms" => r.max_age = v.map(Duration::from_millis),
                _ => return Err(bad("unknown retention key")),
            }
        }
        retention = Some(r);
    }
    Ok((partitions, retention))
}

impl Log {
    /// Opens (creating if needed) the log in `dir`, recovering every partition: the tail
    /// of each is scanned, torn or corrupt data is cut (and reported by
    /// [`Log::recovery_report`] and a `tracing` warning), never served.
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Log> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        let topics_dir = dir.join("topics");
        if !topics_dir.exists() {
            std::fs::create_dir_all(&topics_dir).at(&topics_dir)?;
            sync_dir(&dir)?;
        }
        let lock_path = dir.join("LOCK");
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .at(&lock_path)?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::Locked(dir)),
            Err(std::fs::TryLockError::Error(e)) => return Err(e).at(&lock_path),
        }
        let cfg = Arc::new(config);
        let mut topics = BTreeMap::new();
        let mut recovery = Vec::new();
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&topics_dir).at(&topics_dir)? {
            let entry = entry.at(&topics_dir)?;
            if let Some(name) = entry.file_name().to_str() {
                if name.starts_with(".deleted-") {
                    let p = entry.path();
                    std::fs::remove_dir_all(&p).at(&p)?;
                } else if validate_name(name).is_ok() && entry.path().join("topic.meta").exists() {
                    names.push(name.to_string());
                }
            }
        }
        names.sort();
        for name in names {
            let tdir = topics_dir.join(&name);
            let (n, retention) = read_topic_meta(&tdir.join("topic.meta"))?;
            let retention = topic_retention(&name, retention, &cfg);
            let mut partitions = Vec::with_capacity(n as usize);
            for p in 0..n {
                let (part, report) =
                    Partition::open(&tdir.join(p.to_string()), &name, p, cfg.clone(), retention)?;
                partitions.push(Arc::new(part));
                recovery.push(report);
            }
            topics.insert(name, Arc::new(Topic { partitions }));
        }
        let inner = Arc::new(Inner {
            dir,
            cfg,
            topics: RwLock::new(topics),
            create_lock: Mutex::new(()),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            recovery: Mutex::new(recovery),
            _lock_file: lock_file,
        });
        // Always started: it applies retention (topics may have their own) and, for
        // `Interval` and `Always`, fsyncs in the background.
        let background = {
            let inner2 = inner.clone();
            Some(
                std::thread::Builder::new()
                    .name("weir-log-bg".into())
                    .spawn(move || background(inner2))
                    .map_err(|e| Error::Io {
                        path: PathBuf::from("<thread>"),
                        source: e,
                    })?,
            )
        };
        Ok(Log {
            inner,
            background,
            syncers: std::sync::OnceLock::new(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &LogConfig {
        &self.inner.cfg
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// What recovery did when the log was opened (and for topics created since: an
    /// empty report), one entry per partition.
    pub fn recovery_report(&self) -> Vec<PartitionRecovery> {
        self.inner
            .recovery
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Creates a topic with `partitions` partitions and the log's default retention;
    /// succeeds without change if it already exists with that many.
    pub fn create_topic(&self, name: &str, partitions: u32) -> Result<()> {
        self.create_topic_inner(name, partitions, None)
    }

    /// Like [`Log::create_topic`], with a retention of its own (stored with the topic).
    /// The `statements` topic must be kept whole: create it with
    /// `Retention::default()` (keep everything), since the catalog is rebuilt from it.
    pub fn create_topic_with_retention(
        &self,
        name: &str,
        partitions: u32,
        retention: Retention,
    ) -> Result<()> {
        self.create_topic_inner(name, partitions, Some(retention))
    }

    fn create_topic_inner(
        &self,
        name: &str,
        partitions: u32,
        retention: Option<Retention>,
    ) -> Result<()> {
        validate_name(name)?;
        if partitions == 0 || partitions > 4096 {
            return Err(Error::InvalidConfig(format!(
                "a topic needs 1 to 4096 partitions, got {partitions}"
            )));
        }
        let _g = self
            .inner
            .create_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(t) = self.topic_opt(name) {
            let existing = t.partitions.len() as u32;
            if existing != partitions {
                return Err(Error::TopicMismatch {
                    topic: name.to_string(),
                    existing,
                    requested: partitions,
                });
            }
            return Ok(());
        }
        let tdir = self.inner.dir.join("topics").join(name);
        std::fs::create_dir_all(&tdir).at(&tdir)?;
        let mut parts = Vec::with_capacity(partitions as usize);
        let mut reports = Vec::new();
        for p in 0..partitions {
            let (part, report) = Partition::open(
                &tdir.join(p.to_string()),
                name,
                p,
                self.inner.cfg.clone(),
                topic_retention(name, retention, &self.inner.cfg),
            )?;
            parts.push(Arc::new(part));
            reports.push(report);
        }
        sync_dir(&tdir)?;
        write_atomic(
            &tdir.join("topic.meta"),
            topic_meta_text(partitions, retention).as_bytes(),
        )?;
        sync_dir(&self.inner.dir.join("topics"))?;
        self.inner
            .topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), Arc::new(Topic { partitions: parts }));
        self.inner
            .recovery
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(reports);
        Ok(())
    }

    /// Deletes a topic and all its data (for example after `DROP STREAM`). Readers that
    /// are in the middle of a read finish it; later calls get `UnknownTopic`. Returns
    /// false if the topic did not exist.
    pub fn delete_topic(&self, name: &str) -> Result<bool> {
        validate_name(name)?;
        let _g = self
            .inner
            .create_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let removed = self
            .inner
            .topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if removed.is_none() {
            return Ok(false);
        }
        let topics_dir = self.inner.dir.join("topics");
        let tdir = topics_dir.join(name);
        // Rename first (atomic), so a crash never leaves a half-deleted topic that
        // would be opened again; `.deleted-*` directories are removed at open.
        let trash = topics_dir.join(format!(".deleted-{name}-{}", now_ms()));
        std::fs::rename(&tdir, &trash).at(&tdir)?;
        sync_dir(&topics_dir)?;
        std::fs::remove_dir_all(&trash).at(&trash)?;
        self.inner
            .recovery
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|r| r.topic != name);
        Ok(true)
    }

    /// Topics and their partition counts.
    pub fn topics(&self) -> Vec<(String, u32)> {
        self.inner
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(n, t)| (n.clone(), t.partitions.len() as u32))
            .collect()
    }

    /// Number of partitions of a topic.
    pub fn partitions(&self, topic: &str) -> Result<u32> {
        Ok(self.topic(topic)?.partitions.len() as u32)
    }

    fn topic_opt(&self, name: &str) -> Option<Arc<Topic>> {
        self.inner
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        self.topic_opt(name)
            .ok_or_else(|| Error::UnknownTopic(name.to_string()))
    }

    fn partition(&self, topic: &str, partition: u32) -> Result<Arc<Partition>> {
        let t = self.topic(topic)?;
        t.partitions
            .get(partition as usize)
            .cloned()
            .ok_or_else(|| Error::UnknownPartition {
                topic: topic.to_string(),
                partition,
                partitions: t.partitions.len() as u32,
            })
    }

    /// Appends `records` as one batch and returns once they are acknowledged under the
    /// fsync policy: after an fsync that covers them for `Always` (shared with
    /// concurrent appenders), after the write for `Interval` and `Never`. An empty
    /// slice appends nothing and returns the current end offset.
    pub fn append(&self, topic: &str, partition: u32, records: &[&[u8]]) -> Result<Appended> {
        let p = self.partition(topic, partition)?;
        let (first, end) = p.append(records, now_ms())?;
        if self.inner.cfg.fsync == FsyncPolicy::Always {
            p.wait_durable(end)?;
        }
        Ok(Appended {
            first_offset: first,
            end_offset: end,
            durable: true,
        })
    }

    /// Appends one batch to each of several partitions of a topic (one write request
    /// spread by key), then waits until all are acknowledged under the policy. Returns
    /// the results in input order. If one partition fails, batches already written to
    /// other partitions stay written (each partition's batch is atomic on its own).
    pub fn append_multi(&self, topic: &str, batches: &[(u32, &[&[u8]])]) -> Result<Vec<Appended>> {
        let mut out = Vec::with_capacity(batches.len());
        for (partition, records) in batches {
            out.push((*partition, self.append_nowait(topic, *partition, records)?));
        }
        if self.inner.cfg.fsync == FsyncPolicy::Always {
            for (partition, a) in &out {
                self.partition(topic, *partition)?
                    .wait_durable(a.end_offset)?;
            }
        }
        Ok(out
            .into_iter()
            .map(|(_, a)| Appended { durable: true, ..a })
            .collect())
    }

    /// Writes `records` as one batch and returns without waiting for fsync; `durable`
    /// tells whether they already are. Pair with [`Log::wait_durable`] (pipelining).
    /// Under `Always` with `Durable` visibility, readers see the records once someone
    /// waited for them (or the background safety fsync, every second, ran).
    pub fn append_nowait(
        &self,
        topic: &str,
        partition: u32,
        records: &[&[u8]],
    ) -> Result<Appended> {
        let p = self.partition(topic, partition)?;
        let (first, end) = p.append(records, now_ms())?;
        Ok(Appended {
            first_offset: first,
            end_offset: end,
            durable: self.inner.cfg.fsync != FsyncPolicy::Always || p.durable_end() >= end,
        })
    }

    /// Blocks until every offset below `end_offset` is acknowledged-durable under the
    /// policy (`Always`: fsynced, group-committed; otherwise: written).
    pub fn wait_durable(&self, topic: &str, partition: u32, end_offset: u64) -> Result<()> {
        let p = self.partition(topic, partition)?;
        if self.inner.cfg.fsync == FsyncPolicy::Always {
            p.wait_durable(end_offset.min(p.written_end()))
        } else {
            Ok(())
        }
    }

    /// Sets what readers of `topic` see, overriding the log's [`crate::Visibility`] for
    /// it (not stored: set it again after each open). `Written` suits a topic whose
    /// records can be re-derived from durable ones (the engine's outputs): readers see
    /// them without waiting for an fsync, and a power loss may take back ones already
    /// read.
    pub fn set_visibility(&self, topic: &str, visibility: crate::Visibility) -> Result<()> {
        for p in &self.topic(topic)?.partitions {
            p.set_visibility(visibility);
        }
        Ok(())
    }

    /// [`Log::wait_durable`] for several partitions at once: their fsyncs run at the same
    /// time (one thread each) instead of one after the other, so a write spread over
    /// partitions waits about one fsync, not one per partition. Returns the first error.
    pub fn wait_durable_all(&self, targets: &[(&str, u32, u64)]) -> Result<()> {
        if self.inner.cfg.fsync != FsyncPolicy::Always {
            return Ok(());
        }
        let mut parts = Vec::with_capacity(targets.len());
        for (topic, partition, end) in targets {
            let p = self.partition(topic, *partition)?;
            let end = (*end).min(p.written_end());
            if p.durable_end() < end {
                parts.push((p, end));
            }
        }
        let Some(((first, first_end), rest)) = parts.split_first() else {
            return Ok(());
        };
        // The other partitions go to the helper threads (or are done here when they
        // cannot take them); this thread does the first.
        let mut replies = Vec::new();
        let mut here = Vec::new();
        if !rest.is_empty() {
            let tx = self.syncers.get_or_init(start_syncers);
            let tx = tx.lock().unwrap_or_else(|e| e.into_inner());
            for (p, end) in rest {
                let (rtx, rrx) = std::sync::mpsc::channel();
                match tx.send((p.clone(), *end, rtx)) {
                    Ok(()) => replies.push((p, *end, rrx)),
                    Err(_) => here.push((p, *end)),
                }
            }
        }
        let mut r = first.wait_durable(*first_end);
        for (p, end) in here {
            let o = p.wait_durable(end);
            if r.is_ok() {
                r = o;
            }
        }
        for (p, end, rrx) in replies {
            // A helper that is gone (it cannot normally end while the log lives) drops
            // the reply sender: then wait here.
            let o = rrx.recv().unwrap_or_else(|_| p.wait_durable(end));
            if r.is_ok() {
                r = o;
            }
        }
        r
    }

    /// The durable watermark: every offset below it has been fsynced (for `Never`: written).
    pub fn durable_offset(&self, topic: &str, partition: u32) -> Result<u64> {
        Ok(self.partition(topic, partition)?.durable_end())
    }

    /// The next offset to be written.
    pub fn end_offset(&self, topic: &str, partition: u32) -> Result<u64> {
        Ok(self.partition(topic, partition)?.written_end())
    }

    /// The offset readers can currently read up to (exclusive); see [`crate::Visibility`].
    pub fn visible_offset(&self, topic: &str, partition: u32) -> Result<u64> {
        Ok(self.partition(topic, partition)?.visible_end())
    }

    /// The earliest retained offset.
    pub fn start_offset(&self, topic: &str, partition: u32) -> Result<u64> {
        Ok(self.partition(topic, partition)?.start_offset())
    }

    /// Reads records from `from_offset` on: at most `max_records`, and stopping once
    /// `max_bytes` of payload were collected (at least one record is returned when one
    /// is available). Returns an empty vector at the visible end; errors below the
    /// earliest retained offset ([`Error::OffsetTruncated`]) or past the end.
    pub fn read(
        &self,
        topic: &str,
        partition: u32,
        from_offset: u64,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>> {
        self.partition(topic, partition)?
            .read(from_offset, max_records, max_bytes)
    }

    /// Iterates over the records of a partition from `from_offset` to its visible end
    /// (as of each internal read), e.g. to rebuild the catalog from the `statements`
    /// topic at start-up. Reads in chunks of up to 1000 records / 1 MiB.
    pub fn iter(&self, topic: &str, partition: u32, from_offset: u64) -> Result<LogIter> {
        let p = self.partition(topic, partition)?;
        Ok(LogIter {
            partition: p,
            next: from_offset,
            buf: std::collections::VecDeque::new(),
            done: false,
        })
    }

    /// Blocks until the record at `offset` is readable or `timeout` passes; returns
    /// whether it is readable (for long-polling readers and partition workers).
    pub fn wait_for(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        timeout: Duration,
    ) -> Result<bool> {
        Ok(self
            .partition(topic, partition)?
            .wait_visible(offset, timeout))
    }

    /// The end offsets of every partition of `topic` now, as a [`Position`] (call it
    /// after an acknowledged append to get the write's position token).
    pub fn position(&self, topic: &str) -> Result<Position> {
        let t = self.topic(topic)?;
        let mut pos = Position::new();
        for p in &t.partitions {
            pos.set(topic, p.id, p.written_end());
        }
        Ok(pos)
    }

    /// fsyncs every partition that has unsynced data, whatever the policy.
    pub fn sync(&self) -> Result<()> {
        for p in self.all_partitions() {
            p.sync_now()?;
        }
        Ok(())
    }

    /// fsyncs everything and closes the log, reporting an fsync error that `Drop`
    /// could only log.
    pub fn close(self) -> Result<()> {
        self.sync()
    }

    /// Applies retention now (also done by the background thread); returns the number
    /// of segments deleted.
    pub fn apply_retention(&self) -> Result<usize> {
        apply_retention(&self.inner, now_ms())
    }

    /// Applies retention as if the time were `now_ms` (for tests of time retention).
    pub fn apply_retention_at(&self, now_ms: i64) -> Result<usize> {
        apply_retention(&self.inner, now_ms)
    }

    /// Counters and offsets of every partition (for metrics).
    pub fn stats(&self) -> Vec<PartitionStats> {
        self.all_partitions().iter().map(|p| p.stats()).collect()
    }

    /// Number of segment files of a partition.
    pub fn segment_count(&self, topic: &str, partition: u32) -> Result<usize> {
        Ok(self.partition(topic, partition)?.segment_count())
    }

    fn all_partitions(&self) -> Vec<Arc<Partition>> {
        all_partitions(&self.inner)
    }

    /// Partitions that refuse writes after an I/O error: (topic, partition, reason).
    /// Each is reopened without a restart once the disk works again (retried with
    /// backoff by appends and by the background thread; see `docs/durability.md`).
    pub fn failed_partitions(&self) -> Vec<(String, u32, String)> {
        self.all_partitions()
            .iter()
            .filter_map(|p| p.failed().map(|r| (p.topic.clone(), p.id, r)))
            .collect()
    }

    /// Tries to reopen every failed partition now; returns how many are still failed.
    pub fn reopen_failed(&self) -> usize {
        self.all_partitions()
            .iter()
            .filter(|p| p.failed().is_some() && !p.try_reopen())
            .count()
    }

    /// Test hook (fault injection): the next `writes` batch writes and the next `fsyncs`
    /// fsyncs of this partition fail with an I/O error, as a failing disk would.
    pub fn inject_failures(
        &self,
        topic: &str,
        partition: u32,
        writes: u64,
        fsyncs: u64,
    ) -> Result<()> {
        let p = self.partition(topic, partition)?;
        p.injected
            .writes
            .store(writes, std::sync::atomic::Ordering::Release);
        p.injected
            .fsyncs
            .store(fsyncs, std::sync::atomic::Ordering::Release);
        Ok(())
    }
}

fn all_partitions(inner: &Inner) -> Vec<Arc<Partition>> {
    inner
        .topics
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .flat_map(|t| t.partitions.iter().cloned())
        .collect()
}

fn apply_retention(inner: &Inner, now: i64) -> Result<usize> {
    let mut n = 0;
    for p in all_partitions(inner) {
        n += p.apply_retention(now)?;
    }
    Ok(n)
}

fn background(inner: Arc<Inner>) {
    // Under `Always` appends sync themselves; the background sync is a safety net for
    // records written with `append_nowait` that nobody waited for.
    let sync_every = match inner.cfg.fsync {
        FsyncPolicy::Interval(d) => Some(d),
        FsyncPolicy::Always => Some(ALWAYS_SAFETY_SYNC),
        FsyncPolicy::Never => None,
    };
    let mut next_sync = sync_every.map(|d| Instant::now() + d);
    let mut next_retention = Some(Instant::now() + inner.cfg.retention_check_interval);
    // Failed partitions are reopened from here too, so they recover (and readiness
    // returns) without waiting for a write.
    let mut next_reopen = Some(Instant::now() + REOPEN_CHECK);
    loop {
        let wake = [next_sync, next_retention, next_reopen]
            .into_iter()
            .flatten()
            .min();
        {
            let mut stop = inner.stop.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if *stop {
                    return;
                }
                let now = Instant::now();
                match wake {
                    Some(w) if w > now => {
                        stop = inner
                            .stop_cv
                            .wait_timeout(stop, w - now)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                    Some(_) => break,
                    None => {
                        stop = inner.stop_cv.wait(stop).unwrap_or_else(|e| e.into_inner());
                    }
                }
            }
        }
        let now = Instant::now();
        if let (Some(at), Some(every)) = (next_sync, sync_every) {
            if now >= at {
                for p in all_partitions(&inner) {
                    if p.durable_end() < p.written_end() {
                        if let Err(e) = p.sync_now() {
                            tracing::error!(topic = %p.topic, partition = p.id, error = %e, "interval fsync failed");
                        }
                    }
                }
                next_sync = Some(Instant::now() + every);
            }
        }
        if let Some(at) = next_reopen {
            if now >= at {
                for p in all_partitions(&inner) {
                    if p.failed().is_some() {
                        p.try_reopen_with_backoff();
                    }
                }
                next_reopen = Some(Instant::now() + REOPEN_CHECK);
            }
        }
        if let Some(at) = next_retention {
            if now >= at {
                if let Err(e) = apply_retention(&inner, now_ms()) {
                    tracing::error!(error = %e, "retention failed");
                }
                next_retention = Some(Instant::now() + inner.cfg.retention_check_interval);
            }
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        *self.inner.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.inner.stop_cv.notify_all();
        if let Some(h) = self.background.take() {
            let _ = h.join();
        }
        if self.inner.cfg.fsync != FsyncPolicy::Never {
            for p in all_partitions(&self.inner) {
                if p.durable_end() < p.written_end() {
                    if let Err(e) = p.sync_now() {
                        tracing::error!(topic = %p.topic, partition = p.id, error = %e, "final fsync failed");
                    }
                }
            }
        }
    }
}
