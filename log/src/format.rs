//! On-disk framing of batches and records (all integers little-endian).
//!
//! ```text
//! batch  := header(32) record*
//! header := magic u32 "WLB1" | body_len u32 | base_offset u64 | count u32
//!           | timestamp_ms i64 | crc u32   (crc32c of header[0..28] ++ body)
//! record := len u32 | crc u32 (crc32c of offset ++ timestamp ++ payload)
//!           | offset u64 | timestamp_ms i64 | payload[len]
//! ```
//!
//! A batch is valid only if its header and body checksums match, its records are
//! exactly `count` consecutive offsets starting at `base_offset` and fill `body_len`
//! exactly, and each record's own checksum matches. A torn batch therefore fails as a
//! whole.

use bytes::Bytes;

/// "WLB1" read as a little-endian u32.
pub(crate) const BATCH_MAGIC: u32 = u32::from_le_bytes(*b"WLB1");
/// Largest batch recovery and reads accept from disk: the largest `max_batch_bytes`
/// allowed, so lowering that setting never turns existing batches into "corrupt" ones.
pub(crate) const MAX_BATCH_ON_DISK: u64 = 1 << 30;
/// Size of the batch header.
pub const BATCH_HEADER: usize = 32;
/// Size of a record's frame before its payload.
pub const RECORD_HEADER: usize = 24;

/// One record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Offset in its partition (dense: 0, 1, 2, …).
    pub offset: u64,
    /// Append time, milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The bytes that were appended. Shares the buffer of the read that produced it
    /// (zero-copy); copy it out if it is kept for long.
    pub payload: Bytes,
}

/// Encoded size of a batch holding these payloads.
pub(crate) fn batch_size(records: &[&[u8]]) -> u64 {
    BATCH_HEADER as u64
        + records
            .iter()
            .map(|r| (RECORD_HEADER + r.len()) as u64)
            .sum::<u64>()
}

/// Encodes a batch into `buf` (cleared first).
pub(crate) fn encode_batch(
    buf: &mut Vec<u8>,
    base_offset: u64,
    timestamp_ms: i64,
    records: &[&[u8]],
) {
    buf.clear();
    buf.resize(BATCH_HEADER, 0);
    for (i, payload) in records.iter().enumerate() {
        let offset = base_offset + i as u64;
        let start = buf.len();
        buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        buf.extend_from_slice(&[0u8; 4]);
        buf.extend_from_slice(&offset.to_le_bytes());
        buf.extend_from_slice(&timestamp_ms.to_le_bytes());
        buf.extend_from_slice(payload);
        let crc = crc32c::crc32c(&buf[start + 8..]);
        buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
    let body_len = (buf.len() - BATCH_HEADER) as u32;
    buf[0..4].copy_from_slice(&BATCH_MAGIC.to_le_bytes());
    buf[4..8].copy_from_slice(&body_len.to_le_bytes());
    buf[8..16].copy_from_slice(&base_offset.to_le_bytes());
    buf[16..20].copy_from_slice(&(records.len() as u32).to_le_bytes());
    buf[20..28].copy_from_slice(&timestamp_ms.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&buf[0..28]), &buf[BATCH_HEADER..]);
    buf[28..32].copy_from_slice(&crc.to_le_bytes());
}

/// A parsed (not yet checksummed) batch header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchHeader {
    pub body_len: u32,
    pub base_offset: u64,
    pub count: u32,
    pub timestamp_ms: i64,
    pub crc: u32,
}

impl BatchHeader {
    pub fn total_len(&self) -> u64 {
        BATCH_HEADER as u64 + self.body_len as u64
    }
    pub fn end_offset(&self) -> u64 {
        self.base_offset + self.count as u64
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Parses and sanity-checks a batch header (`h` must be at least `BATCH_HEADER` long).
pub(crate) fn parse_header(h: &[u8], max_batch_bytes: u64) -> Result<BatchHeader, String> {
    if u32_at(h, 0) != BATCH_MAGIC {
        return Err("bad batch magic".into());
    }
    let hdr = BatchHeader {
        body_len: u32_at(h, 4),
        base_offset: u64_at(h, 8),
        count: u32_at(h, 16),
        timestamp_ms: u64_at(h, 20) as i64,
        crc: u32_at(h, 28),
    };
    if hdr.count == 0 {
        return Err("batch with zero records".into());
    }
    if hdr.total_len() > max_batch_bytes {
        return Err(format!("batch length {} over the limit", hdr.total_len()));
    }
    if (hdr.body_len as u64) < hdr.count as u64 * RECORD_HEADER as u64 {
        return Err("batch body too short for its record count".into());
    }
    Ok(hdr)
}

/// Verifies a whole batch (`b` = header + body, exactly `total_len` bytes) and calls
/// `each(offset, timestamp, payload_range)` for every record.
pub(crate) fn verify_batch(
    b: &[u8],
    hdr: &BatchHeader,
    mut each: impl FnMut(u64, i64, std::ops::Range<usize>),
) -> Result<(), String> {
    let crc = crc32c::crc32c_append(crc32c::crc32c(&b[0..28]), &b[BATCH_HEADER..]);
    if crc != hdr.crc {
        return Err("batch checksum mismatch".into());
    }
    let mut pos = BATCH_HEADER;
    for i in 0..hdr.count as u64 {
        if pos + RECORD_HEADER > b.len() {
            return Err("record header runs past the batch".into());
        }
        let len = u32_at(b, pos) as usize;
        let rcrc = u32_at(b, pos + 4);
        let offset = u64_at(b, pos + 8);
        let ts = u64_at(b, pos + 16) as i64;
        let end = pos + RECORD_HEADER + len;
        if end > b.len() {
            return Err("record payload runs past the batch".into());
        }
        if crc32c::crc32c(&b[pos + 8..end]) != rcrc {
            return Err(format!("record checksum mismatch at offset {offset}"));
        }
        if offset != hdr.base_offset + i {
            return Err(format!(
                "record offset {offset} where {} was expected",
                hdr.base_offset + i
            ));
        }
        each(offset, ts, pos + RECORD_HEADER..end);
        pos = end;
    }
    if pos != b.len() {
        return Err("batch body longer than its records".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_detects_flips() {
        let mut buf = Vec::new();
        let recs: [&[u8]; 3] = [b"a", b"", b"hello world"];
        encode_batch(&mut buf, 42, 7, &recs);
        assert_eq!(buf.len() as u64, batch_size(&recs));
        let hdr = parse_header(&buf, 1 << 20).unwrap();
        assert_eq!(hdr.base_offset, 42);
        assert_eq!(hdr.count, 3);
        let mut got = Vec::new();
        verify_batch(&buf, &hdr, |o, t, r| got.push((o, t, buf[r].to_vec()))).unwrap();
        assert_eq!(
            got,
            vec![
                (42, 7, b"a".to_vec()),
                (43, 7, vec![]),
                (44, 7, b"hello world".to_vec())
            ]
        );
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x10;
            let ok = parse_header(&bad, 1 << 20)
                .and_then(|h| {
                    if h.total_len() as usize != bad.len() {
                        return Err("len".into());
                    }
                    verify_batch(&bad, &h, |_, _, _| {})
                })
                .is_ok();
            assert!(!ok, "flip at byte {i} went undetected");
        }
    }
}
