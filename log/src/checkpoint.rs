//! Checkpoints: a worker's serialized state plus the input offsets it covers.
//!
//! Files: `<dir>/<name>/<seq, 20 digits>.ckpt`, each
//!
//! ```text
//! magic "WCKP" | version u16 = 1 | reserved u16 | seq u64 | created_ms i64
//! | covered_len u32 | data_len u64 | covered (Position binary form) | data
//! | crc32c u32 of everything before it
//! ```
//!
//! Writing is atomic: a temp file is written and fsynced, renamed into place, and the
//! directory fsynced; the last `keep` checkpoints are kept. Reading returns the newest
//! checkpoint that passes every check and skips (with a warning) corrupt ones.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::error::{IoContext, Result};
use crate::log::{now_ms, validate_name};
use crate::position::Position;
use crate::segment::sync_dir;

const MAGIC: &[u8; 4] = b"WCKP";
const VERSION: u16 = 1;
const HEADER: usize = 4 + 2 + 2 + 8 + 8 + 4 + 8;

/// A checkpoint read back by [`CheckpointStore::latest_checkpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Sequence number (1, 2, 3, … per name).
    pub seq: u64,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: i64,
    /// The input offsets the state covers (replay starts at these offsets).
    pub covered: Position,
    /// The serialized state.
    pub data: Vec<u8>,
}

/// A directory of named checkpoint series.
pub struct CheckpointStore {
    dir: PathBuf,
    keep: usize,
    write_lock: Mutex<()>,
}

fn file_name(seq: u64) -> String {
    format!("{seq:020}.ckpt")
}

fn parse_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".ckpt")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

fn decode(bytes: &[u8]) -> std::result::Result<Checkpoint, String> {
    if bytes.len() < HEADER + 4 {
        return Err("file shorter than a checkpoint header".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err("checksum mismatch".into());
    }
    if &body[0..4] != MAGIC {
        return Err("bad magic".into());
    }
    let version = u16::from_le_bytes([body[4], body[5]]);
    if version != VERSION {
        return Err(format!("unsupported checkpoint version {version}"));
    }
    let u64_at = |at: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&body[at..at + 8]);
        u64::from_le_bytes(a)
    };
    let seq = u64_at(8);
    let created_ms = u64_at(16) as i64;
    let covered_len = u32::from_le_bytes([body[24], body[25], body[26], body[27]]) as u64;
    let data_len = u64_at(28);
    if HEADER as u64 + covered_len + data_len != body.len() as u64 {
        return Err("lengths do not match the file size".into());
    }
    let c_end = HEADER + covered_len as usize;
    let covered = Position::from_bytes(&body[HEADER..c_end]).map_err(|e| e.to_string())?;
    Ok(Checkpoint {
        seq,
        created_ms,
        covered,
        data: body[c_end..].to_vec(),
    })
}

impl CheckpointStore {
    /// Opens (creating) a checkpoint directory keeping the last `keep` (≥ 1) per name.
    pub fn open(dir: impl Into<PathBuf>, keep: usize) -> Result<CheckpointStore> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).at(&dir)?;
        Ok(CheckpointStore {
            dir,
            keep: keep.max(1),
            write_lock: Mutex::new(()),
        })
    }

    /// Sequence numbers of the checkpoint files of `name`, ascending.
    pub fn list(&self, name: &str) -> Result<Vec<u64>> {
        validate_name(name)?;
        let d = self.dir.join(name);
        let mut seqs = Vec::new();
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(seqs),
            Err(e) => return Err(e).at(&d),
        };
        for entry in rd {
            let entry = entry.at(&d)?;
            if let Some(seq) = entry.file_name().to_str().and_then(parse_name) {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// Writes a checkpoint atomically and returns its sequence number; older ones beyond
    /// the last `keep` are deleted.
    pub fn write_checkpoint(&self, name: &str, covered: &Position, data: &[u8]) -> Result<u64> {
        let _g = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let seqs = self.list(name)?;
        let seq = seqs.last().map_or(1, |s| s + 1);
        let d = self.dir.join(name);
        std::fs::create_dir_all(&d).at(&d)?;
        let cov = covered.to_bytes();
        let mut buf = Vec::with_capacity(HEADER + cov.len() + data.len() + 4);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&VERSION.to_le_bytes());
        buf.extend_from_slice(&0u16.to_le_bytes());
        buf.extend_from_slice(&seq.to_le_bytes());
        buf.extend_from_slice(&now_ms().to_le_bytes());
        buf.extend_from_slice(&(cov.len() as u32).to_le_bytes());
        buf.extend_from_slice(&(data.len() as u64).to_le_bytes());
        buf.extend_from_slice(&cov);
        buf.extend_from_slice(data);
        let crc = crc32c::crc32c(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        let tmp = d.join(format!(".{seq:020}.tmp"));
        let final_path = d.join(file_name(seq));
        {
            let mut f = File::create(&tmp).at(&tmp)?;
            f.write_all(&buf).at(&tmp)?;
            f.sync_all().at(&tmp)?;
        }
        std::fs::rename(&tmp, &final_path).at(&final_path)?;
        sync_dir(&d)?;
        // Retention of checkpoints, and cleanup of temp files left by crashes.
        let mut all = seqs;
        all.push(seq);
        if all.len() > self.keep {
            for old in &all[..all.len() - self.keep] {
                let p = d.join(file_name(*old));
                std::fs::remove_file(&p).at(&p)?;
            }
        }
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                let n = e.file_name();
                if n.to_str()
                    .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"))
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        sync_dir(&d)?;
        Ok(seq)
    }

    /// The newest checkpoint of `name` that passes every check, skipping corrupt ones;
    /// `None` if there is none.
    pub fn latest_checkpoint(&self, name: &str) -> Result<Option<Checkpoint>> {
        let d = self.dir.join(name);
        for seq in self.list(name)?.into_iter().rev() {
            let p = d.join(file_name(seq));
            let bytes = std::fs::read(&p).at(&p)?;
            match decode(&bytes) {
                Ok(c) if c.seq == seq => return Ok(Some(c)),
                Ok(c) => tracing::warn!(
                    path = %p.display(),
                    "checkpoint names seq {} inside; skipping", c.seq
                ),
                Err(reason) => {
                    tracing::warn!(path = %p.display(), %reason, "skipping corrupt checkpoint")
                }
            }
        }
        Ok(None)
    }

    /// The directory of the store.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(o: u64) -> Position {
        let mut p = Position::new();
        p.set("clicks", 0, o);
        p
    }

    #[test]
    fn keeps_last_k_and_skips_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = CheckpointStore::open(dir.path(), 3).unwrap();
        assert_eq!(store.latest_checkpoint("w0").unwrap(), None);
        for i in 1..=5u64 {
            let seq = store
                .write_checkpoint("w0", &pos(i * 10), format!("state {i}").as_bytes())
                .unwrap();
            assert_eq!(seq, i);
        }
        assert_eq!(store.list("w0").unwrap(), vec![3, 4, 5]);
        let c = store.latest_checkpoint("w0").unwrap().unwrap();
        assert_eq!((c.seq, c.data.as_slice()), (5, &b"state 5"[..]));
        assert_eq!(c.covered, pos(50));
        // Corrupt the newest: flip a byte of the data.
        let p5 = dir.path().join("w0").join(file_name(5));
        let mut b = std::fs::read(&p5).unwrap();
        let n = b.len();
        b[n - 6] ^= 1;
        std::fs::write(&p5, &b).unwrap();
        let c = store.latest_checkpoint("w0").unwrap().unwrap();
        assert_eq!((c.seq, c.covered), (4, pos(40)));
        // Truncate the next one.
        let p4 = dir.path().join("w0").join(file_name(4));
        let b = std::fs::read(&p4).unwrap();
        std::fs::write(&p4, &b[..b.len() / 2]).unwrap();
        assert_eq!(store.latest_checkpoint("w0").unwrap().unwrap().seq, 3);
        // A leftover temp file is ignored and later cleaned up.
        std::fs::write(
            dir.path().join("w0").join(".00000000000000000009.tmp"),
            b"x",
        )
        .unwrap();
        assert_eq!(store.latest_checkpoint("w0").unwrap().unwrap().seq, 3);
        assert_eq!(store.write_checkpoint("w0", &pos(60), b"s6").unwrap(), 6);
        assert!(!dir
            .path()
            .join("w0")
            .join(".00000000000000000009.tmp")
            .exists());
        assert!(store.write_checkpoint("../x", &pos(1), b"").is_err());
    }
}
