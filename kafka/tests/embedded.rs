//! The embedded log behind the same `LogBackend` trait (no broker needed).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use weir_kafka::LogBackend;
use weir_log::{Log, LogConfig};

#[test]
fn embedded_log_through_the_trait() {
    let dir = tempfile::tempdir().unwrap();
    let log: Box<dyn LogBackend> = Box::new(Log::open(dir.path(), LogConfig::default()).unwrap());
    log.create_topic("clicks", 2).unwrap();
    assert_eq!(log.partitions("clicks").unwrap(), 2);
    let a = log.append("clicks", 1, &[b"a", b"b"]).unwrap();
    assert_eq!((a.first_offset, a.end_offset), (0, 2));
    let k = log.append_keyed("clicks", 1, &[(b"key", b"c")]).unwrap();
    assert_eq!((k.first_offset, k.end_offset), (2, 3));
    let recs = log.read("clicks", 1, 1, 10, 1 << 20).unwrap();
    let vals: Vec<&[u8]> = recs.iter().map(|r| &r.payload[..]).collect();
    assert_eq!(vals, vec![&b"b"[..], &b"c"[..]]);
    assert_eq!(log.end_offset("clicks", 1).unwrap(), 3);
    assert_eq!(log.start_offset("clicks", 1).unwrap(), 0);
    assert!(log
        .wait_for("clicks", 1, 2, Duration::from_millis(10))
        .unwrap());
    assert!(!log
        .wait_for("clicks", 1, 3, Duration::from_millis(10))
        .unwrap());
    let pos = log.position("clicks").unwrap();
    assert_eq!(pos.get("clicks", 0), Some(0));
    assert_eq!(pos.get("clicks", 1), Some(3));
    assert!(log.append("clicks", 5, &[b"x"]).is_err());
    assert!(log.partitions("nope").is_err());
}
