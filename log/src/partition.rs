//! One partition: an ordered list of segments, a single writer, group commit, recovery
//! and retention.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use crate::config::{FsyncPolicy, LogConfig, Retention, Verify, Visibility};
use crate::error::{Error, IoContext, Result};
use crate::format::{self, Record};
use crate::segment::{parse_segment_name, sync_dir, Segment, NO_TS};

/// What recovery found and cut in one partition when the log was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRecovery {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
    /// Segments kept.
    pub segments: usize,
    /// Earliest retained offset.
    pub start_offset: u64,
    /// Next offset to be written (every offset below it is intact).
    pub end_offset: u64,
    /// Bytes scanned and checksummed.
    pub bytes_verified: u64,
    /// Cuts made because of torn or corrupt data (empty after a clean shutdown).
    pub cuts: Vec<Cut>,
    /// Bytes of cut data (and of whole segments dropped after a cut) kept in the
    /// partition's `quarantine/` folder instead of being thrown away.
    pub quarantined_bytes: u64,
}

/// One cut made by recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// The segment file that was truncated.
    pub segment: PathBuf,
    /// Byte position of the cut (the first bad byte).
    pub position: u64,
    /// Bytes removed from that segment.
    pub bytes_removed: u64,
    /// What was wrong at that position.
    pub reason: String,
    /// Later segment files deleted because they followed the cut (moved to the
    /// quarantine folder when that worked).
    pub deleted_segments: Vec<PathBuf>,
    /// Where the cut bytes and the dropped segments were kept (`quarantine/` in the
    /// partition's folder); empty when nothing could be kept (a warning says why).
    pub quarantined: Vec<PathBuf>,
}

/// The folder, inside a partition's folder, that keeps what recovery cut.
pub const QUARANTINE_DIR: &str = "quarantine";

/// A file name in the quarantine folder not used yet: `<stem>.<n>.cut`.
fn quarantine_path(dir: &Path, stem: &str) -> Result<PathBuf> {
    let q = dir.join(QUARANTINE_DIR);
    std::fs::create_dir_all(&q).at(&q)?;
    let mut n = 0u32;
    loop {
        let p = q.join(format!("{stem}.{n}.cut"));
        if !p.exists() {
            return Ok(p);
        }
        n += 1;
    }
}

/// Copies bytes `from..` of `seg` into the quarantine folder (fsynced) and returns the
/// file written.
fn quarantine_tail(dir: &Path, seg: &Segment, from: u64) -> Result<PathBuf> {
    use std::io::{Seek, SeekFrom};
    let name = crate::segment::segment_file_name(seg.base);
    let path = quarantine_path(dir, &format!("{name}.at-{from}"))?;
    let mut src = std::fs::File::open(&seg.path).at(&seg.path)?;
    src.seek(SeekFrom::Start(from)).at(&seg.path)?;
    let mut out = std::fs::File::create(&path).at(&path)?;
    std::io::copy(&mut src, &mut out).at(&path)?;
    out.sync_all().at(&path)?;
    sync_dir(&dir.join(QUARANTINE_DIR))?;
    Ok(path)
}

/// Moves a whole segment file into the quarantine folder (its index is deleted).
fn quarantine_segment(dir: &Path, seg: &Segment) -> Result<PathBuf> {
    let name = crate::segment::segment_file_name(seg.base);
    let path = quarantine_path(dir, &name)?;
    std::fs::rename(&seg.path, &path).at(&seg.path)?;
    sync_dir(&dir.join(QUARANTINE_DIR))?;
    seg.delete_files_if_present()?;
    Ok(path)
}

/// Drops a segment that follows a cut: moved to quarantine, or deleted when that fails.
fn drop_segment(
    dir: &Path,
    topic: &str,
    id: u32,
    seg: &Segment,
    report: &mut PartitionRecovery,
) -> Result<()> {
    let bytes = seg.file_len().unwrap_or(0);
    match quarantine_segment(dir, seg) {
        Ok(p) => {
            report.quarantined_bytes += bytes;
            if let Some(c) = report.cuts.last_mut() {
                c.quarantined.push(p);
            }
            Ok(())
        }
        Err(e) => {
            tracing::warn!(topic, partition = id, segment = %seg.path.display(), error = %e,
                "log recovery: cannot keep a dropped segment in quarantine; deleting it");
            seg.delete_files()
        }
    }
}

struct Writer {
    active: Arc<Segment>,
    buf: Vec<u8>,
    failed: Option<String>,
    /// While failed: when the next reopen may be tried, and the delay after that one.
    retry_at: Option<std::time::Instant>,
    retry_delay: Duration,
}

/// First and longest delay between two reopen attempts of a failed partition.
const REOPEN_FIRST_DELAY: Duration = Duration::from_millis(50);
const REOPEN_MAX_DELAY: Duration = Duration::from_secs(2);

/// Failures injected by tests ([`crate::Log::inject_failures`]): the next `writes`
/// batch writes and the next `fsyncs` fsyncs of the partition fail with an I/O error.
#[derive(Default)]
pub(crate) struct Injected {
    pub writes: AtomicU64,
    pub fsyncs: AtomicU64,
}

fn take_one(n: &AtomicU64) -> bool {
    n.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1))
        .is_ok()
}

fn injected_error() -> std::io::Error {
    std::io::Error::other("injected I/O error (test hook)")
}

struct SyncState {
    syncing: bool,
}

pub(crate) struct Partition {
    pub topic: String,
    pub id: u32,
    dir: PathBuf,
    cfg: Arc<LogConfig>,
    retention: Retention,
    writer: Mutex<Writer>,
    segments: RwLock<Vec<Arc<Segment>>>,
    written_end: AtomicU64,
    durable_end: AtomicU64,
    sync: Mutex<SyncState>,
    sync_cv: Condvar,
    visible_lock: Mutex<()>,
    visible_cv: Condvar,
    /// Readers of this partition see written records, whatever `cfg.visibility` says
    /// (set per topic with [`crate::Log::set_visibility`]).
    see_written: AtomicBool,
    batches: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    fsyncs: AtomicU64,
    pub(crate) injected: Injected,
}

/// Counters and offsets of one partition (for metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionStats {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
    /// Earliest retained offset.
    pub start_offset: u64,
    /// Next offset to be written.
    pub end_offset: u64,
    /// Every offset below this is durable under the policy.
    pub durable_offset: u64,
    /// Number of segment files.
    pub segments: usize,
    /// Bytes in segment files.
    pub bytes_on_disk: u64,
    /// Batches appended since open.
    pub appended_batches: u64,
    /// Records appended since open.
    pub appended_records: u64,
    /// Encoded bytes appended since open.
    pub appended_bytes: u64,
    /// fsync calls since open (group commit makes this smaller than `appended_batches`).
    pub fsyncs: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Partition {
    /// Opens (recovering) or creates the partition stored in `dir`.
    pub fn open(
        dir: &Path,
        topic: &str,
        id: u32,
        cfg: Arc<LogConfig>,
        retention: Retention,
    ) -> Result<(Partition, PartitionRecovery)> {
        std::fs::create_dir_all(dir).at(dir)?;
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir).at(dir)? {
            let entry = entry.at(dir)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(base) = parse_segment_name(name) {
                bases.push(base);
            } else if name.ends_with(".idx.tmp") {
                // Left by a crash while sealing an index; the index is rebuilt if needed.
                let p = entry.path();
                std::fs::remove_file(&p).at(&p)?;
            }
        }
        bases.sort_unstable();
        let mut report = PartitionRecovery {
            topic: topic.to_string(),
            partition: id,
            segments: 0,
            start_offset: 0,
            end_offset: 0,
            bytes_verified: 0,
            cuts: Vec::new(),
            quarantined_bytes: 0,
        };
        let mut segments: Vec<Arc<Segment>> = Vec::new();
        let mut cut_rest = false;
        let n = bases.len();
        for (i, &base) in bases.iter().enumerate() {
            let seg_path = dir.join(crate::segment::segment_file_name(base));
            if cut_rest {
                let seg = Segment::open(dir, base)?;
                if let Some(c) = report.cuts.last_mut() {
                    c.deleted_segments.push(seg_path);
                }
                drop_segment(dir, topic, id, &seg, &mut report)?;
                continue;
            }
            let seg = Segment::open(dir, base)?;
            let file_len = seg.file_len()?;
            if let Some(prev) = segments.last() {
                let prev_end = prev.end.load(Ordering::Acquire);
                if base != prev_end {
                    // A hole or an overlap between segments: keep the log dense by
                    // dropping this segment and everything after it.
                    let reason = format!(
                        "segment starts at offset {base} but the previous one ends at {prev_end}"
                    );
                    report.cuts.push(Cut {
                        segment: prev.path.clone(),
                        position: prev.size.load(Ordering::Acquire),
                        bytes_removed: 0,
                        reason,
                        deleted_segments: vec![seg_path],
                        quarantined: Vec::new(),
                    });
                    drop_segment(dir, topic, id, &seg, &mut report)?;
                    cut_rest = true;
                    continue;
                }
            }
            let is_last = i + 1 == n;
            let full = is_last || cfg.verify == Verify::All;
            let (scan, mut index, rebuilt) = match (full, seg.load_index(file_len)) {
                (false, Some(idx)) => {
                    let (last_off, last_pos) = match idx.last() {
                        Some(&(rel, pos)) => (base + rel as u64, pos as u64),
                        None => (base, 0),
                    };
                    let s = seg.scan(
                        last_pos,
                        last_off,
                        format::MAX_BATCH_ON_DISK,
                        cfg.index_interval_bytes,
                        last_pos,
                    )?;
                    if s.bad.is_none() {
                        (s, idx, false)
                    } else {
                        // Maybe the index is stale rather than the data bad: decide
                        // with a full scan.
                        let s = seg.scan(
                            0,
                            base,
                            format::MAX_BATCH_ON_DISK,
                            cfg.index_interval_bytes,
                            0,
                        )?;
                        (s, Vec::new(), true)
                    }
                }
                _ => {
                    let s = seg.scan(
                        0,
                        base,
                        format::MAX_BATCH_ON_DISK,
                        cfg.index_interval_bytes,
                        0,
                    )?;
                    (s, Vec::new(), true)
                }
            };
            index.extend_from_slice(&scan.index);
            report.bytes_verified += scan.end_pos - scan.index_start_pos;
            if let Some((pos, reason)) = &scan.bad {
                let removed = file_len - pos;
                // Keep the cut bytes: one flipped byte mid-segment cuts everything after
                // it, and an operator may want it back.
                let mut quarantined = Vec::new();
                if removed > 0 {
                    match quarantine_tail(dir, &seg, *pos) {
                        Ok(p) => {
                            report.quarantined_bytes += removed;
                            quarantined.push(p);
                        }
                        Err(e) => tracing::warn!(
                            topic, partition = id, segment = %seg.path.display(), error = %e,
                            "log recovery: cannot keep the cut bytes in quarantine; they are lost"
                        ),
                    }
                }
                tracing::warn!(
                    topic,
                    partition = id,
                    segment = %seg.path.display(),
                    position = pos,
                    bytes_removed = removed,
                    kept_end_offset = scan.end_offset,
                    reason = %reason,
                    quarantined = ?quarantined,
                    "log recovery: cutting torn or corrupt data (the cut bytes are kept in quarantine)"
                );
                seg.truncate(*pos)?;
                index.retain(|&(_, p)| (p as u64) < *pos);
                report.cuts.push(Cut {
                    segment: seg.path.clone(),
                    position: *pos,
                    bytes_removed: removed,
                    reason: reason.clone(),
                    deleted_segments: Vec::new(),
                    quarantined,
                });
                cut_rest = !is_last;
            }
            let last_index_pos = index.last().map(|&(_, p)| p as u64).unwrap_or(0);
            seg.set_recovered(
                scan.end_pos,
                scan.end_offset,
                scan.first_ts,
                scan.max_ts,
                index,
                last_index_pos,
            );
            if rebuilt || is_last || scan.bad.is_some() || !scan.index.is_empty() {
                seg.write_index_file()?;
            }
            segments.push(Arc::new(seg));
        }
        if let Some(c) = report.cuts.last() {
            if !c.deleted_segments.is_empty() {
                tracing::warn!(
                    topic,
                    partition = id,
                    deleted = ?c.deleted_segments,
                    "log recovery: deleted segments that followed a cut"
                );
            }
        }
        if segments.is_empty() {
            let seg = Segment::create(dir, 0)?;
            sync_dir(dir)?;
            segments.push(Arc::new(seg));
        }
        // Make what recovery kept durable, so the durable watermark starts at the end.
        if cfg.fsync != FsyncPolicy::Never {
            if let Some(last) = segments.last() {
                last.file.sync_all().at(&last.path)?;
            }
            if !report.cuts.is_empty() {
                sync_dir(dir)?;
            }
        }
        let active = segments
            .last()
            .cloned()
            .ok_or_else(|| Error::InvalidConfig("internal: partition without a segment".into()))?;
        let end = active.end.load(Ordering::Acquire);
        report.segments = segments.len();
        report.start_offset = segments[0].base;
        report.end_offset = end;
        let p = Partition {
            topic: topic.to_string(),
            id,
            dir: dir.to_path_buf(),
            cfg,
            retention,
            writer: Mutex::new(Writer {
                active,
                buf: Vec::new(),
                failed: None,
                retry_at: None,
                retry_delay: REOPEN_FIRST_DELAY,
            }),
            segments: RwLock::new(segments),
            written_end: AtomicU64::new(end),
            durable_end: AtomicU64::new(end),
            sync: Mutex::new(SyncState { syncing: false }),
            sync_cv: Condvar::new(),
            visible_lock: Mutex::new(()),
            visible_cv: Condvar::new(),
            see_written: AtomicBool::new(false),
            batches: AtomicU64::new(0),
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            injected: Injected::default(),
        };
        Ok((p, report))
    }

    fn failed_err(&self, reason: &str) -> Error {
        Error::PartitionFailed {
            topic: self.topic.clone(),
            partition: self.id,
            reason: reason.to_string(),
        }
    }

    /// Marks the partition failed (appends and fsyncs refused until a reopen works).
    fn fail(&self, w: &mut Writer, reason: String) {
        if w.failed.is_none() {
            w.retry_delay = REOPEN_FIRST_DELAY;
            w.retry_at = Some(std::time::Instant::now() + REOPEN_FIRST_DELAY);
        }
        w.failed = Some(reason);
    }

    /// Why the partition refuses writes, if it does.
    pub fn failed(&self) -> Option<String> {
        lock(&self.writer).failed.clone()
    }

    /// Tries to reopen a failed partition now (backoff ignored); true when it works.
    pub fn try_reopen(&self) -> bool {
        let mut w = lock(&self.writer);
        if w.failed.is_some() {
            w.retry_at = None;
        }
        self.reopen_locked(&mut w);
        w.failed.is_none()
    }

    /// Tries to reopen a failed partition if its backoff delay has passed.
    pub fn try_reopen_with_backoff(&self) {
        let mut w = lock(&self.writer);
        self.reopen_locked(&mut w);
    }

    /// A failed partition recovers without a restart once the disk does (issue 19,
    /// item 2). Tried at most once per backoff delay (50 ms doubling to 2 s), from
    /// appends, fsyncs and the log's background thread:
    ///
    /// 1. the active segment is cut back to its last complete batch (a failed write may
    ///    have left part of a batch);
    /// 2. its batches are read back and checked (CRC): if the kernel dropped pages after
    ///    a failed fsync, what it returns now is not what was written, and the partition
    ///    stays failed (only a restart's recovery can sort that out);
    /// 3. the segment's bytes are written again (so they are dirty in the page cache
    ///    whatever a failed fsync did to them) and fsynced; a stray next segment file
    ///    left by a failed roll is removed.
    ///
    /// Then everything written is durable, and appends go on where they stopped.
    fn reopen_locked(&self, w: &mut Writer) {
        let Some(reason) = w.failed.clone() else {
            return;
        };
        let now = std::time::Instant::now();
        if w.retry_at.is_some_and(|t| now < t) {
            return;
        }
        match self.reopen_active(&w.active) {
            Ok(()) => {
                tracing::warn!(topic = %self.topic, partition = self.id, earlier_failure = %reason,
                    "log partition reopened after a write failure; appends resume");
                w.failed = None;
                w.retry_at = None;
                w.retry_delay = REOPEN_FIRST_DELAY;
                let end = w.active.end.load(Ordering::Acquire);
                self.written_end.store(end, Ordering::Release);
                self.durable_end.fetch_max(end, Ordering::AcqRel);
                self.notify_visible();
            }
            Err(e) => {
                tracing::debug!(topic = %self.topic, partition = self.id, error = %e, "log partition reopen failed; will retry");
                w.retry_delay = (w.retry_delay * 2).min(REOPEN_MAX_DELAY);
                w.retry_at = Some(now + w.retry_delay);
            }
        }
    }

    fn reopen_active(&self, seg: &Segment) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let size = seg.size.load(Ordering::Acquire);
        if take_one(&self.injected.writes) {
            return Err(Error::Io {
                path: seg.path.clone(),
                source: injected_error(),
            });
        }
        seg.file.set_len(size).at(&seg.path)?;
        let scan = seg.scan(
            0,
            seg.base,
            format::MAX_BATCH_ON_DISK,
            self.cfg.index_interval_bytes,
            0,
        )?;
        if scan.bad.is_some() || scan.end_pos != size {
            return Err(Error::PartitionFailed {
                topic: self.topic.clone(),
                partition: self.id,
                reason: format!(
                    "{} no longer reads back as written ({}); restart to recover",
                    seg.path.display(),
                    scan.bad.map(|b| b.1).unwrap_or_default()
                ),
            });
        }
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = 0u64;
        while pos < size {
            let n = ((size - pos) as usize).min(buf.len());
            seg.file.read_exact_at(&mut buf[..n], pos).at(&seg.path)?;
            seg.file.write_all_at(&buf[..n], pos).at(&seg.path)?;
            pos += n as u64;
        }
        if take_one(&self.injected.fsyncs) {
            return Err(Error::Io {
                path: seg.path.clone(),
                source: injected_error(),
            });
        }
        seg.file.sync_data().at(&seg.path)?;
        // A roll that failed after creating the next segment's file leaves it behind.
        let next = self.dir.join(crate::segment::segment_file_name(
            seg.end.load(Ordering::Acquire),
        ));
        if next != seg.path && next.exists() {
            std::fs::remove_file(&next).at(&next)?;
            let idx = self.dir.join(crate::segment::index_file_name(
                seg.end.load(Ordering::Acquire),
            ));
            let _ = std::fs::remove_file(idx);
        }
        sync_dir(&self.dir)?;
        Ok(())
    }

    pub fn written_end(&self) -> u64 {
        self.written_end.load(Ordering::Acquire)
    }

    pub fn durable_end(&self) -> u64 {
        self.durable_end.load(Ordering::Acquire)
    }

    pub fn visible_end(&self) -> u64 {
        match self.visibility() {
            Visibility::Durable => self.durable_end(),
            Visibility::Written => self.written_end(),
        }
    }

    /// The visibility in force: the log's, unless overridden for this partition.
    pub fn visibility(&self) -> Visibility {
        if self.see_written.load(Ordering::Acquire) {
            Visibility::Written
        } else {
            self.cfg.visibility
        }
    }

    pub fn set_visibility(&self, v: Visibility) {
        self.see_written
            .store(v == Visibility::Written, Ordering::Release);
        self.notify_visible();
    }

    pub fn start_offset(&self) -> u64 {
        self.segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .first()
            .map(|s| s.base)
            .unwrap_or(0)
    }

    fn notify_visible(&self) {
        let _g = lock(&self.visible_lock);
        self.visible_cv.notify_all();
    }

    /// Writes one batch; returns (first offset, end offset). Does not wait for fsync.
    pub fn append(&self, records: &[&[u8]], now_ms: i64) -> Result<(u64, u64)> {
        let size = format::batch_size(records);
        if size > self.cfg.max_batch_bytes {
            return Err(Error::BatchTooLarge {
                bytes: size,
                limit: self.cfg.max_batch_bytes,
            });
        }
        let mut w = lock(&self.writer);
        self.reopen_locked(&mut w);
        if let Some(reason) = &w.failed {
            return Err(self.failed_err(reason));
        }
        if records.is_empty() {
            let end = w.active.end.load(Ordering::Acquire);
            return Ok((end, end));
        }
        let active_size = w.active.size.load(Ordering::Acquire);
        let too_old = match self.cfg.segment_max_age {
            Some(age) => {
                let first = w.active.first_ts.load(Ordering::Acquire);
                first != NO_TS && now_ms.saturating_sub(first) > age.as_millis() as i64
            }
            None => false,
        };
        if active_size > 0 && (active_size + size > self.cfg.segment_bytes || too_old) {
            if let Err(e) = self.roll(&mut w) {
                self.fail(&mut w, e.to_string());
                return Err(e);
            }
        }
        let first = w.active.end.load(Ordering::Acquire);
        let end = first + records.len() as u64;
        let Writer { active, buf, .. } = &mut *w;
        format::encode_batch(buf, first, now_ms, records);
        let pos = active.size.load(Ordering::Acquire);
        use std::os::unix::fs::FileExt;
        let written = if take_one(&self.injected.writes) {
            Err(injected_error())
        } else {
            active.file.write_all_at(buf, pos)
        };
        if let Err(e) = written {
            // Remove whatever part of the batch reached the file; if even that fails,
            // refuse further appends until a reopen succeeds (see `reopen_locked`).
            let reason = format!("write to {} failed: {e}", active.path.display());
            if active.file.set_len(pos).is_err() {
                self.fail(&mut w, reason);
            }
            return Err(Error::Io {
                path: w.active.path.clone(),
                source: e,
            });
        }
        active.note_batch(
            pos,
            buf.len() as u64,
            first,
            end,
            now_ms,
            self.cfg.index_interval_bytes,
        );
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        self.bytes.fetch_add(buf.len() as u64, Ordering::Relaxed);
        if buf.capacity() > (4 << 20) {
            *buf = Vec::new();
        }
        self.written_end.store(end, Ordering::Release);
        if self.cfg.fsync == FsyncPolicy::Never {
            self.durable_end.store(end, Ordering::Release);
        }
        drop(w);
        if self.cfg.fsync == FsyncPolicy::Never || self.visibility() == Visibility::Written {
            self.notify_visible();
        }
        Ok((first, end))
    }

    /// Seals the active segment (fsynced unless the policy is `Never`) and starts a new one.
    fn roll(&self, w: &mut Writer) -> Result<()> {
        let old = w.active.clone();
        let old_end = old.end.load(Ordering::Acquire);
        if self.cfg.fsync != FsyncPolicy::Never {
            self.fsyncs.fetch_add(1, Ordering::Relaxed);
            old.file.sync_data().at(&old.path)?;
            old.seal_index()?;
        } else {
            old.close_index();
        }
        let seg = Arc::new(Segment::create(&self.dir, old_end)?);
        if self.cfg.fsync != FsyncPolicy::Never {
            sync_dir(&self.dir)?;
        }
        self.segments
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(seg.clone());
        w.active = seg;
        if self.cfg.fsync != FsyncPolicy::Never {
            self.durable_end.fetch_max(old_end, Ordering::AcqRel);
            if self.cfg.visibility == Visibility::Durable {
                self.notify_visible();
            }
        }
        Ok(())
    }

    /// Blocks until every offset below `target` is durable, sharing fsyncs with other
    /// waiters (group commit): while one thread runs an fsync the others queue up, and
    /// the next fsync covers all of their batches at once.
    pub fn wait_durable(&self, target: u64) -> Result<()> {
        let mut st = lock(&self.sync);
        loop {
            if self.durable_end() >= target {
                return Ok(());
            }
            if !st.syncing {
                st.syncing = true;
                drop(st);
                let r = self.sync_once();
                st = lock(&self.sync);
                st.syncing = false;
                self.sync_cv.notify_all();
                r?;
            } else {
                st = self.sync_cv.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    /// One fsync of the active segment, advancing the durable watermark to what had been
    /// written before it started.
    fn sync_once(&self) -> Result<()> {
        let (seg, end) = {
            let mut w = lock(&self.writer);
            self.reopen_locked(&mut w);
            if let Some(reason) = &w.failed {
                return Err(self.failed_err(reason));
            }
            (w.active.clone(), self.written_end())
        };
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        let synced = if take_one(&self.injected.fsyncs) {
            Err(injected_error())
        } else {
            seg.file.sync_data()
        };
        if let Err(e) = synced {
            // After a failed fsync the kernel may have dropped the dirty pages: retrying
            // the fsync could report success for data that is not on disk. The partition
            // stops; a reopen (`reopen_locked`) rewrites and re-syncs the active segment.
            let reason = format!("fsync of {} failed: {e}", seg.path.display());
            tracing::error!(topic = %self.topic, partition = self.id, %reason, "log fsync failed");
            self.fail(&mut lock(&self.writer), reason);
            return Err(Error::Io {
                path: seg.path.clone(),
                source: e,
            });
        }
        self.durable_end.fetch_max(end, Ordering::AcqRel);
        if self.cfg.visibility == Visibility::Durable {
            self.notify_visible();
        }
        Ok(())
    }

    /// fsyncs now if anything written is not yet durable (any policy).
    pub fn sync_now(&self) -> Result<()> {
        if self.cfg.fsync == FsyncPolicy::Never {
            // `durable_end` already equals `written_end`; still push data to disk
            // (segments are not synced when rolled under this policy).
            let segs = self
                .segments
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            for seg in segs {
                seg.file.sync_data().at(&seg.path)?;
                self.fsyncs.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(());
        }
        self.wait_durable(self.written_end())
    }

    /// Blocks until a record at `offset` is visible or `timeout` passes; true if visible.
    pub fn wait_visible(&self, offset: u64, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut g = lock(&self.visible_lock);
        loop {
            if self.visible_end() > offset {
                return true;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            g = self
                .visible_cv
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    pub fn read(&self, from: u64, max_records: usize, max_bytes: usize) -> Result<Vec<Record>> {
        let visible = self.visible_end();
        let written = self.written_end();
        let mut out: Vec<Record> = Vec::new();
        let mut from = from;
        if from > written {
            return Err(Error::OffsetBeyondEnd {
                topic: self.topic.clone(),
                partition: self.id,
                requested: from,
                end: written,
            });
        }
        let max_records = max_records.max(1);
        while from < visible && out.len() < max_records {
            let seg = {
                let segs = self.segments.read().unwrap_or_else(|e| e.into_inner());
                let start = segs.first().map(|s| s.base).unwrap_or(0);
                if from < start {
                    return Err(Error::OffsetTruncated {
                        topic: self.topic.clone(),
                        partition: self.id,
                        requested: from,
                        earliest: start,
                    });
                }
                let i = segs.partition_point(|s| s.base <= from);
                match i.checked_sub(1).and_then(|i| segs.get(i)) {
                    Some(s) => s.clone(),
                    None => break,
                }
            };
            let before = out.len();
            let bytes_so_far: usize = out.iter().map(|r| r.payload.len()).sum();
            if bytes_so_far >= max_bytes && !out.is_empty() {
                break;
            }
            seg.read(
                from,
                visible,
                max_records,
                max_bytes - bytes_so_far,
                format::MAX_BATCH_ON_DISK,
                &mut out,
            )?;
            if out.len() > before {
                from = out[out.len() - 1].offset + 1;
                if out.len() >= max_records {
                    break;
                }
            }
            let seg_end = seg.end.load(Ordering::Acquire);
            if from < seg_end {
                // Stopped inside the segment: a limit was reached.
                break;
            }
            from = from.max(seg_end);
        }
        Ok(out)
    }

    /// Deletes old segments outside the retention bounds; returns how many were deleted.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize> {
        let r = self.retention;
        if r.max_bytes.is_none() && r.max_age.is_none() {
            return Ok(0);
        }
        let removed: Vec<Arc<Segment>> = {
            let mut segs = self.segments.write().unwrap_or_else(|e| e.into_inner());
            let mut total: u64 = segs.iter().map(|s| s.size.load(Ordering::Acquire)).sum();
            let mut n = 0;
            while n + 1 < segs.len() {
                let s = &segs[n];
                let size = s.size.load(Ordering::Acquire);
                let by_size = r.max_bytes.is_some_and(|max| total - size >= max);
                let by_age = r.max_age.is_some_and(|age| {
                    let ts = s.max_ts.load(Ordering::Acquire);
                    ts == NO_TS || now_ms.saturating_sub(ts) > age.as_millis() as i64
                });
                if !(by_size || by_age) {
                    break;
                }
                total -= size;
                n += 1;
            }
            segs.drain(..n).collect()
        };
        for s in &removed {
            tracing::info!(
                topic = %self.topic,
                partition = self.id,
                segment = %s.path.display(),
                "retention: deleting segment"
            );
            s.delete_files()?;
        }
        if !removed.is_empty() && self.cfg.fsync != FsyncPolicy::Never {
            sync_dir(&self.dir)?;
        }
        Ok(removed.len())
    }

    pub fn stats(&self) -> PartitionStats {
        let segs = self.segments.read().unwrap_or_else(|e| e.into_inner());
        PartitionStats {
            topic: self.topic.clone(),
            partition: self.id,
            start_offset: segs.first().map(|s| s.base).unwrap_or(0),
            end_offset: self.written_end(),
            durable_offset: self.durable_end(),
            segments: segs.len(),
            bytes_on_disk: segs.iter().map(|s| s.size.load(Ordering::Acquire)).sum(),
            appended_batches: self.batches.load(Ordering::Relaxed),
            appended_records: self.records.load(Ordering::Relaxed),
            appended_bytes: self.bytes.load(Ordering::Relaxed),
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
        }
    }

    pub fn segment_count(&self) -> usize {
        self.segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}
