#![allow(clippy::unwrap_used)]
#![allow(dead_code)]
use std::path::{Path, PathBuf};

use weir_log::{FsyncPolicy, LogConfig};

pub fn small_config() -> LogConfig {
    LogConfig {
        fsync: FsyncPolicy::Never,
        segment_bytes: 4096,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

/// Payload of record `i`: varied length, content derived from `i`.
pub fn payload(i: u64) -> Vec<u8> {
    let len = (i * 7 % 90) as usize + 1;
    let mut v = format!("rec-{i}-").into_bytes();
    v.extend((0..len).map(|k| b'a' + ((i as usize + k) % 26) as u8));
    v
}

pub fn segment_files(dir: &Path, topic: &str, partition: u32) -> Vec<PathBuf> {
    let d = dir.join("topics").join(topic).join(partition.to_string());
    let mut v: Vec<PathBuf> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

pub fn index_files(dir: &Path, topic: &str, partition: u32) -> Vec<PathBuf> {
    let d = dir.join("topics").join(topic).join(partition.to_string());
    let mut v: Vec<PathBuf> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "idx"))
        .collect();
    v.sort();
    v
}
