//! One segment: a file of batches (`<base offset>.log`) and its sparse offset index
//! (`<base offset>.idx`, pairs of u32 relative offset + u32 byte position, rebuilt from
//! the segment whenever it is missing or inconsistent).

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use bytes::Bytes;

use crate::error::{Error, IoContext, Result};
use crate::format::{self, Record, BATCH_HEADER};

pub(crate) const NO_TS: i64 = i64::MIN;

pub(crate) fn segment_file_name(base: u64) -> String {
    format!("{base:020}.log")
}

pub(crate) fn index_file_name(base: u64) -> String {
    format!("{base:020}.idx")
}

/// Parses `<20 digits>.log`.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

pub(crate) struct Segment {
    pub base: u64,
    pub path: PathBuf,
    pub idx_path: PathBuf,
    pub file: File,
    /// Bytes of valid, fully written batches.
    pub size: AtomicU64,
    /// Offset after the last record in this segment.
    pub end: AtomicU64,
    pub first_ts: AtomicI64,
    pub max_ts: AtomicI64,
    /// Sparse index: (offset - base, byte position), ascending.
    index: RwLock<Vec<(u32, u32)>>,
    /// Position of the last index entry (0 = the implied entry at the start).
    last_index_pos: AtomicU64,
    idx_file: Mutex<Option<File>>,
}

/// Result of scanning a segment file for valid batches.
pub(crate) struct ScanOutcome {
    pub end_pos: u64,
    pub end_offset: u64,
    pub first_ts: i64,
    pub max_ts: i64,
    pub batches: u64,
    /// Where and why scanning stopped before the end of the file.
    pub bad: Option<(u64, String)>,
    pub index: Vec<(u32, u32)>,
    pub last_index_pos: u64,
    /// Where the scan started.
    pub index_start_pos: u64,
}

impl Segment {
    /// Creates a new, empty segment (the file must not exist).
    pub fn create(dir: &Path, base: u64) -> Result<Segment> {
        let path = dir.join(segment_file_name(base));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .at(&path)?;
        let idx_path = dir.join(index_file_name(base));
        let idx = File::create(&idx_path).at(&idx_path)?;
        Ok(Segment {
            base,
            path,
            idx_path,
            file,
            size: AtomicU64::new(0),
            end: AtomicU64::new(base),
            first_ts: AtomicI64::new(NO_TS),
            max_ts: AtomicI64::new(NO_TS),
            index: RwLock::new(Vec::new()),
            last_index_pos: AtomicU64::new(0),
            idx_file: Mutex::new(Some(idx)),
        })
    }

    /// Opens an existing segment file; its state is filled in by `recover`.
    pub fn open(dir: &Path, base: u64) -> Result<Segment> {
        let path = dir.join(segment_file_name(base));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .at(&path)?;
        Ok(Segment {
            base,
            path,
            idx_path: dir.join(index_file_name(base)),
            file,
            size: AtomicU64::new(0),
            end: AtomicU64::new(base),
            first_ts: AtomicI64::new(NO_TS),
            max_ts: AtomicI64::new(NO_TS),
            index: RwLock::new(Vec::new()),
            last_index_pos: AtomicU64::new(0),
            idx_file: Mutex::new(None),
        })
    }

    pub fn file_len(&self) -> Result<u64> {
        Ok(self.file.metadata().at(&self.path)?.len())
    }

    /// Scans batches from byte `start_pos` (which must be a batch boundary holding offset
    /// `start_offset`) to the end of the file, verifying every checksum.
    pub fn scan(
        &self,
        start_pos: u64,
        start_offset: u64,
        max_batch: u64,
        index_interval: u64,
        last_entry_pos: u64,
    ) -> Result<ScanOutcome> {
        let file_len = self.file_len()?;
        let mut f = BufReader::with_capacity(1 << 20, &self.file);
        f.seek(SeekFrom::Start(start_pos)).at(&self.path)?;
        let mut out = ScanOutcome {
            end_pos: start_pos,
            end_offset: start_offset,
            first_ts: NO_TS,
            max_ts: NO_TS,
            batches: 0,
            bad: None,
            index: Vec::new(),
            last_index_pos: 0,
            index_start_pos: start_pos,
        };
        let mut buf = vec![0u8; BATCH_HEADER];
        let mut last_entry = last_entry_pos;
        loop {
            let pos = out.end_pos;
            if pos == file_len {
                break;
            }
            let left = file_len - pos;
            if left < BATCH_HEADER as u64 {
                out.bad = Some((pos, format!("torn batch header ({left} trailing bytes)")));
                break;
            }
            buf.resize(BATCH_HEADER, 0);
            f.read_exact(&mut buf).at(&self.path)?;
            let hdr = match format::parse_header(&buf, max_batch) {
                Ok(h) => h,
                Err(e) => {
                    let reason = if buf.iter().all(|&b| b == 0) {
                        "zero-filled bytes where a batch header was expected".to_string()
                    } else {
                        e
                    };
                    out.bad = Some((pos, reason));
                    break;
                }
            };
            if hdr.base_offset != out.end_offset {
                out.bad = Some((
                    pos,
                    format!(
                        "batch starts at offset {} where {} was expected",
                        hdr.base_offset, out.end_offset
                    ),
                ));
                break;
            }
            if hdr.total_len() > left {
                out.bad = Some((
                    pos,
                    format!("torn batch: {} of {} bytes present", left, hdr.total_len()),
                ));
                break;
            }
            buf.resize(hdr.total_len() as usize, 0);
            f.read_exact(&mut buf[BATCH_HEADER..]).at(&self.path)?;
            if let Err(e) = format::verify_batch(&buf, &hdr, |_, _, _| {}) {
                out.bad = Some((pos, e));
                break;
            }
            if pos > 0 && pos - last_entry >= index_interval {
                out.index
                    .push(((hdr.base_offset - self.base) as u32, pos as u32));
                last_entry = pos;
            }
            if out.first_ts == NO_TS {
                out.first_ts = hdr.timestamp_ms;
            }
            out.max_ts = out.max_ts.max(hdr.timestamp_ms);
            out.batches += 1;
            out.end_pos = pos + hdr.total_len();
            out.end_offset = hdr.end_offset();
        }
        out.last_index_pos = last_entry;
        Ok(out)
    }

    /// Installs recovered state.
    pub fn set_recovered(
        &self,
        size: u64,
        end: u64,
        first_ts: i64,
        max_ts: i64,
        index: Vec<(u32, u32)>,
        last_index_pos: u64,
    ) {
        self.size.store(size, Ordering::Release);
        self.end.store(end, Ordering::Release);
        self.first_ts.store(first_ts, Ordering::Release);
        self.max_ts.store(max_ts, Ordering::Release);
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = index;
        self.last_index_pos.store(last_index_pos, Ordering::Release);
    }

    /// Loads the index file if it is consistent with a segment of `size` bytes.
    pub fn load_index(&self, size: u64) -> Option<Vec<(u32, u32)>> {
        let bytes = std::fs::read(&self.idx_path).ok()?;
        if bytes.len() % 8 != 0 {
            return None;
        }
        let mut out = Vec::with_capacity(bytes.len() / 8);
        let mut prev: Option<(u32, u32)> = None;
        for c in bytes.chunks_exact(8) {
            let rel = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            let pos = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
            if pos as u64 >= size || pos == 0 {
                return None;
            }
            if let Some((pr, pp)) = prev {
                if rel <= pr || pos <= pp {
                    return None;
                }
            }
            prev = Some((rel, pos));
            out.push((rel, pos));
        }
        Some(out)
    }

    /// Rewrites the index file from the in-memory index and keeps it open for appends.
    pub fn write_index_file(&self) -> Result<()> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let mut bytes = Vec::with_capacity(index.len() * 8);
        for (rel, pos) in index.iter() {
            bytes.extend_from_slice(&rel.to_le_bytes());
            bytes.extend_from_slice(&pos.to_le_bytes());
        }
        std::fs::write(&self.idx_path, &bytes).at(&self.idx_path)?;
        let f = OpenOptions::new()
            .append(true)
            .open(&self.idx_path)
            .at(&self.idx_path)?;
        *self.idx_file.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
        Ok(())
    }

    /// Writes the complete index of a sealed segment durably (temp file, fsync, rename;
    /// the caller fsyncs the directory), so older segments' indexes can be trusted at
    /// recovery.
    pub fn seal_index(&self) -> Result<()> {
        let bytes = {
            let index = self.index.read().unwrap_or_else(|e| e.into_inner());
            let mut bytes = Vec::with_capacity(index.len() * 8);
            for (rel, pos) in index.iter() {
                bytes.extend_from_slice(&rel.to_le_bytes());
                bytes.extend_from_slice(&pos.to_le_bytes());
            }
            bytes
        };
        self.close_index();
        let tmp = self.idx_path.with_extension("idx.tmp");
        {
            let mut f = File::create(&tmp).at(&tmp)?;
            f.write_all(&bytes).at(&tmp)?;
            f.sync_data().at(&tmp)?;
        }
        std::fs::rename(&tmp, &self.idx_path).at(&self.idx_path)
    }

    /// Closes the index file of a sealed segment.
    pub fn close_index(&self) {
        *self.idx_file.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Called by the single writer after a batch was written at `pos`.
    pub fn note_batch(
        &self,
        pos: u64,
        len: u64,
        base_offset: u64,
        end_offset: u64,
        ts: i64,
        index_interval: u64,
    ) {
        if pos > 0 && pos - self.last_index_pos.load(Ordering::Relaxed) >= index_interval {
            let entry = ((base_offset - self.base) as u32, pos as u32);
            self.index
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .push(entry);
            self.last_index_pos.store(pos, Ordering::Relaxed);
            let mut f = self.idx_file.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(file) = f.as_mut() {
                let mut b = [0u8; 8];
                b[..4].copy_from_slice(&entry.0.to_le_bytes());
                b[4..].copy_from_slice(&entry.1.to_le_bytes());
                // The index is advisory (rebuilt on recovery); a failed write drops it.
                if file.write_all(&b).is_err() {
                    *f = None;
                }
            }
        }
        if self.first_ts.load(Ordering::Relaxed) == NO_TS {
            self.first_ts.store(ts, Ordering::Release);
        }
        self.max_ts.fetch_max(ts, Ordering::AcqRel);
        self.end.store(end_offset, Ordering::Release);
        self.size.store(pos + len, Ordering::Release);
    }

    /// Byte position of the batch holding `offset`, or of an earlier batch.
    fn lookup(&self, offset: u64) -> u64 {
        let rel = offset.saturating_sub(self.base).min(u32::MAX as u64) as u32;
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        let i = index.partition_point(|&(r, _)| r <= rel);
        if i == 0 {
            0
        } else {
            index[i - 1].1 as u64
        }
    }

    /// Reads records from `from` (inside this segment) up to `visible_end` (exclusive),
    /// at most `max_records` records and about `max_bytes` payload bytes (at least one
    /// record when one is available). Every batch read is checksummed.
    pub fn read(
        &self,
        from: u64,
        visible_end: u64,
        max_records: usize,
        max_bytes: usize,
        max_batch: u64,
        out: &mut Vec<Record>,
    ) -> Result<()> {
        let size = self.size.load(Ordering::Acquire);
        let mut pos = self.lookup(from);
        let mut bytes_out = 0usize;
        // Size reads by the byte limit, or by the record limit at ~256 bytes a record.
        let want_bytes = (max_bytes as u64).min((max_records as u64).saturating_mul(256));
        let chunk = want_bytes.saturating_add(16 << 10).clamp(16 << 10, 4 << 20);
        while pos < size && out.len() < max_records && bytes_out < max_bytes {
            let want = chunk.min(size - pos) as usize;
            let mut buf = vec![0u8; want];
            self.file.read_exact_at(&mut buf, pos).at(&self.path)?;
            // Parse whole batches inside the chunk; grow for a batch bigger than it.
            let mut at = 0usize;
            let mut found: Vec<(u64, i64, std::ops::Range<usize>)> = Vec::new();
            let mut stop = false;
            loop {
                if buf.len() - at < BATCH_HEADER {
                    break;
                }
                let hdr = format::parse_header(&buf[at..at + BATCH_HEADER], max_batch)
                    .map_err(|reason| self.corrupt(pos + at as u64, reason))?;
                if hdr.base_offset >= visible_end {
                    stop = true;
                    break;
                }
                let total = hdr.total_len() as usize;
                if pos + (at + total) as u64 > size {
                    return Err(self.corrupt(
                        pos + at as u64,
                        "batch runs past the end of the segment".into(),
                    ));
                }
                if buf.len() - at < total {
                    if at == 0 {
                        // One batch larger than the chunk: read exactly it.
                        buf.resize(total, 0);
                        self.file
                            .read_exact_at(&mut buf[want..], pos + want as u64)
                            .at(&self.path)?;
                    } else {
                        break;
                    }
                }
                let b = &buf[at..at + total];
                format::verify_batch(b, &hdr, |o, t, r| {
                    if o >= from && o < visible_end {
                        found.push((o, t, r.start + at..r.end + at));
                    }
                })
                .map_err(|reason| self.corrupt(pos + at as u64, reason))?;
                at += total;
                if hdr.end_offset() >= visible_end {
                    stop = true;
                    break;
                }
                if found.len() >= max_records - out.len() {
                    break;
                }
            }
            let shared = Bytes::from(buf);
            for (o, t, r) in found {
                if out.len() >= max_records || (bytes_out >= max_bytes && !out.is_empty()) {
                    stop = true;
                    break;
                }
                bytes_out += r.len();
                out.push(Record {
                    offset: o,
                    timestamp_ms: t,
                    payload: shared.slice(r),
                });
            }
            if stop || at == 0 {
                break;
            }
            pos += at as u64;
        }
        Ok(())
    }

    fn corrupt(&self, position: u64, reason: String) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            position,
            reason,
        }
    }

    /// Cuts the file at `pos` and makes the cut durable.
    pub fn truncate(&self, pos: u64) -> Result<()> {
        self.file.set_len(pos).at(&self.path)?;
        self.file.sync_all().at(&self.path)
    }

    /// Deletes the segment file if it is still there, and its index.
    pub fn delete_files_if_present(&self) -> Result<()> {
        for p in [&self.path, &self.idx_path] {
            match std::fs::remove_file(p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).at(p),
            }
        }
        Ok(())
    }

    pub fn delete_files(&self) -> Result<()> {
        std::fs::remove_file(&self.path).at(&self.path)?;
        match std::fs::remove_file(&self.idx_path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).at(&self.idx_path),
        }
    }
}

/// fsyncs a directory so that file creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).at(dir)
}
