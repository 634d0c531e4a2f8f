//! Test support: a tansu broker per test, started with scripts/kafka-broker.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use weir_kafka::KafkaConfig;

pub fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka-broker")
}

fn tansu_available() -> bool {
    if std::env::var_os("WEIR_TANSU").is_some() {
        return true;
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let cache = std::env::var_os("WEIR_CACHE")
        .map(PathBuf::from)
        .unwrap_or(home.join(".cache/weir"));
    if cache
        .join("tansu-0.6.0-dynostore-libsql-weir1/bin/tansu")
        .exists()
    {
        return true;
    }
    Command::new("sh")
        .arg("-c")
        .arg("command -v tansu")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A running broker; stopped on drop.
pub struct Broker {
    pub dir: tempfile::TempDir,
    pub bootstrap: String,
    persistent: bool,
}

impl Broker {
    /// Starts a broker, or returns `None` (after a loud message) when no tansu binary is
    /// installed and WEIR_REQUIRE_KAFKA is not set.
    pub fn start(persistent: bool) -> Option<Broker> {
        if !tansu_available() {
            if std::env::var_os("WEIR_REQUIRE_KAFKA").is_some() {
                panic!("WEIR_REQUIRE_KAFKA is set but no tansu binary was found (scripts/install-tansu)");
            }
            eprintln!(
                "\n!!!!! SKIPPING Kafka test: no tansu broker binary. Run scripts/install-tansu \
                 (or set WEIR_TANSU); set WEIR_REQUIRE_KAFKA=1 to make this a failure. !!!!!\n"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut b = Broker {
            dir,
            bootstrap: String::new(),
            persistent,
        };
        b.bootstrap = b.run_start();
        Some(b)
    }

    fn run_start(&self) -> String {
        let mut c = Command::new(script());
        c.arg("start").arg(self.dir.path());
        if self.persistent {
            c.arg("--persistent");
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "kafka-broker start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    pub fn stop(&self) {
        let _ = Command::new(script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }

    /// Stops and starts again on the same port and data directory.
    pub fn restart(&mut self) {
        self.stop();
        let addr = self.run_start();
        assert_eq!(addr, self.bootstrap, "restart should reuse the port");
    }

    pub fn config(&self) -> KafkaConfig {
        let mut c = KafkaConfig::new(&self.bootstrap);
        c.request_timeout = Duration::from_secs(10);
        c.session_timeout = Duration::from_secs(6);
        c.replication = 1;
        c
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A failing test shows the broker's side (the whole log is kept in a file).
            let log = self.log();
            let keep = std::env::temp_dir().join(format!("weir-broker-{}.log", std::process::id()));
            let _ = std::fs::write(&keep, &log);
            eprintln!("--- broker log (whole log in {}) ---", keep.display());
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        self.stop();
    }
}
