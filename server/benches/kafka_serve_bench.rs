//! Kafka → `weir serve --kafka` → Kafka, through a local tansu broker (memory engine):
//!
//! 1. the broker alone: produce N keyed events (batches of 1000, acknowledged) and read
//!    them back (one value-only reader per partition, in parallel: weir's shape);
//! 2. weir: N events already in the stream topic, one instance started on them, until it
//!    has applied all of them and written every output (a simple rule matching 1 %).
//!    Both consume rates are taken over the middle 80 % of the events (from 10 % to 90 %
//!    read), so start-up, group join and restore do not count; the whole-run rates are
//!    printed too;
//! 3. end-to-end latency: events produced at a steady rate, each matching, with its send
//!    time in the event; p50/p99 of (output read from the outputs topic − send time);
//! 4. rebalance recovery: a second instance joins (time until the group owns every
//!    partition again), then one is SIGKILLed (time until the survivor owns all).
//!
//! `cargo bench -p server --bench kafka_serve_bench` (needs scripts/install-tansu; prints
//! a skip otherwise). WEIR_KAFKA_BENCH_EVENTS sets N (default 1000000),
//! WEIR_KAFKA_BENCH_PARTS the stream partitions = weir workers = parallel readers (4).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use weir_kafka::{KafkaConfig, OutRecord, PartitionReader, Producer};

/// Partitions of the stream topic = weir's workers = the broker's parallel readers
/// (`WEIR_KAFKA_BENCH_PARTS`, default 4).
fn parts() -> u32 {
    static P: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *P.get_or_init(|| {
        std::env::var("WEIR_KAFKA_BENCH_PARTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&p| p > 0)
            .unwrap_or(4)
    })
}
const STATEMENTS: &str =
    "CREATE STREAM pay (card STRING, amount FLOAT, sent INT) WITH (key = 'card');
CREATE RULE big AS FROM pay PARTITION BY card PATTERN (b) DEFINE b AS amount > 990
  MEASURES b.sent AS sent;";

struct Weir {
    child: Child,
    base: String,
}

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn weir(bootstrap: &str) -> Weir {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = std::env::temp_dir().join(format!("weir-kbench-{port}"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weir"));
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(&data)
        .args([
            "--kafka",
            bootstrap,
            "--group",
            "bench",
            "--topic-prefix",
            "b.",
        ])
        .args([
            "--partitions",
            &parts().to_string(),
            "--kafka-session-ms",
            "4000",
        ])
        .args(["--max-lag", "100000000"])
        .stdout(Stdio::null());
    // WEIR_KAFKA_BENCH_LOG=DIR: weir's info log in DIR/weir-PORT.log (restore times).
    match std::env::var_os("WEIR_KAFKA_BENCH_LOG") {
        Some(d) => {
            let f =
                std::fs::File::create(PathBuf::from(d).join(format!("weir-{port}.log"))).unwrap();
            cmd.env("WEIR_LOG", "info").stderr(f)
        }
        None => cmd.env("WEIR_LOG", "error").stderr(Stdio::null()),
    };
    let child = cmd.spawn().unwrap();
    let w = Weir {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let t0 = Instant::now();
    while ureq::get(&format!("{}/readyz", w.base)).call().is_err() {
        assert!(t0.elapsed() < Duration::from_secs(60), "weir never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    w
}

fn metric(w: &Weir, name: &str) -> f64 {
    metrics(w)(name)
}

/// One scrape of /metrics; the closure sums the samples whose line starts with a name.
fn metrics(w: &Weir) -> impl Fn(&str) -> f64 {
    let text = ureq::get(&format!("{}/metrics", w.base))
        .call()
        .ok()
        .and_then(|r| r.into_string().ok())
        .unwrap_or_default();
    move |name: &str| {
        text.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// Events per second between the samples where the count first reached 10 % and 90 %
/// of `n` (a steady-state rate: start-up and the tail do not count).
fn middle_rate(samples: &[(Instant, u64)], n: u64) -> f64 {
    let at = |f: u64| samples.iter().find(|(_, c)| *c * 10 >= n * f).copied();
    match (at(1), at(9)) {
        (Some((t1, c1)), Some((t9, c9))) if t9 > t1 => {
            (c9 - c1) as f64 / t9.duration_since(t1).as_secs_f64()
        }
        _ => 0.0,
    }
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

fn produce(p: &Producer, events: &[(String, String)], batch: usize) {
    for chunk in events.chunks(batch) {
        let recs: Vec<OutRecord<'_>> = chunk
            .iter()
            .map(|(k, v)| OutRecord {
                key: Some(k.as_bytes()),
                value: v.as_bytes(),
                ..Default::default()
            })
            .collect();
        p.send("b.pay", &recs).unwrap();
    }
}

fn main() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka-broker");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(&script)
        .arg("start")
        .arg(dir.path())
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!(
            "kafka_serve_bench skipped: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    let bootstrap = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let broker_pid = std::fs::read_to_string(dir.path().join("pid"))
        .unwrap_or_default()
        .trim()
        .to_string();
    let _stop = BrokerGuard(script, dir.path().to_path_buf());
    run(&bootstrap, &broker_pid);
}

/// CPU seconds (user + system) used so far by process `pid` ("self" for this one), from
/// /proc (0 where unavailable). Assumes 100 clock ticks per second.
fn cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(rest) = stat.rsplit_once(") ").map(|x| x.1) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

/// Stops the broker, also when the run panics.
struct BrokerGuard(PathBuf, PathBuf);

impl Drop for BrokerGuard {
    fn drop(&mut self) {
        let _ = Command::new(&self.0).arg("stop").arg(&self.1).status();
    }
}

fn sigterm(w: &mut Weir) {
    let _ = Command::new("kill")
        .args(["-TERM", &w.child.id().to_string()])
        .status();
    let _ = w.child.wait();
}

fn run(bootstrap: &str, broker_pid: &str) {
    let bootstrap = bootstrap.to_string();
    {
        let n: usize = std::env::var("WEIR_KAFKA_BENCH_EVENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        let mut cfg = KafkaConfig::new(&bootstrap);
        cfg.replication = 1;
        cfg.request_timeout = Duration::from_secs(30);
        cfg.group = "bench-client".into();
        let events: Vec<(String, String)> = (0..n)
            .map(|i| {
                let card = format!("c{}", i % 1000);
                let v = format!(
                    r#"{{"card":"{card}","amount":{},"sent":0}}"#,
                    (i * 7919) % 1000
                );
                (card, v)
            })
            .collect();
        let matches = events
            .iter()
            .filter(|(_, v)| {
                let a: serde_json::Value = serde_json::from_str(v).unwrap();
                a["amount"].as_f64().unwrap() > 990.0
            })
            .count();

        // Statements first (they take effect at the topic's end), then stop weir.
        {
            let mut w = weir(&bootstrap);
            let r = ureq::post(&format!("{}/v1/statements", w.base)).send_string(STATEMENTS);
            assert!(r.is_ok(), "statements: {r:?}");
            // Leave the group cleanly, so the next instance does not wait for it.
            sigterm(&mut w);
        }
        let p = Producer::idempotent(&cfg).unwrap();

        // 1. The broker alone: produce, then read back by `parts()` value-only readers in
        // parallel (the shape of weir's workers: one reader per partition).
        let t = Instant::now();
        produce(&p, &events, 1000);
        let produce_s = t.elapsed().as_secs_f64();
        let count = std::sync::atomic::AtomicU64::new(0);
        let cpu0 = (cpu_secs(broker_pid), cpu_secs("self"));
        let t = Instant::now();
        let (got, samples) = std::thread::scope(|s| {
            let hs: Vec<_> = (0..parts())
                .map(|part| {
                    let (cfg, count) = (&cfg, &count);
                    s.spawn(move || {
                        let mut r = PartitionReader::new(cfg, "b.pay", part).unwrap();
                        let (mut next, mut got) = (0, 0);
                        let t0 = Instant::now();
                        loop {
                            let b = r
                                .read_values(next, 8192, 4 << 20, Duration::from_millis(300))
                                .unwrap();
                            match b.last() {
                                Some(l) => {
                                    next = l.offset + 1;
                                    got += b.len();
                                    count.fetch_add(
                                        b.len() as u64,
                                        std::sync::atomic::Ordering::Relaxed,
                                    );
                                }
                                None if r.at_end() => return got,
                                None => assert!(t0.elapsed() < Duration::from_secs(120)),
                            }
                        }
                    })
                })
                .collect();
            let sampler = s.spawn(|| {
                let mut v = Vec::new();
                loop {
                    let c = count.load(std::sync::atomic::Ordering::Relaxed);
                    v.push((Instant::now(), c));
                    if c >= n as u64 {
                        return v;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            });
            let got: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
            (got, sampler.join().unwrap())
        });
        let par_s = t.elapsed().as_secs_f64();
        let cpu_bare = (cpu_secs(broker_pid) - cpu0.0, cpu_secs("self") - cpu0.1);
        assert_eq!(got, n);
        let broker_mid = middle_rate(&samples, n as u64);
        println!(
            "broker alone: produce {:.0} events/s; consume ({} value-only readers in parallel) {:.0} events/s over the middle 80 %, {:.0} events/s whole run ({n} events)",
            n as f64 / produce_s,
            parts(),
            broker_mid,
            n as f64 / par_s
        );

        // 2. weir on N events already in the topic. The rate is taken from the engine's
        // event counter (sampled through /metrics), over the middle 80 % of the events,
        // so start-up, group join and restore do not count.
        let t = Instant::now();
        let broker_cpu0 = cpu_secs(broker_pid);
        let w = weir(&bootstrap);
        // WEIR_BENCH_PERF=FILE: profile weir during this phase (perf record).
        let perf = std::env::var("WEIR_BENCH_PERF").ok().map(|f| {
            Command::new("perf")
                .args(["record", "-F", "499", "-g", "-o", &f, "-p"])
                .arg(w.child.id().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        });
        let mut t_owned = None;
        let mut samples = Vec::new();
        loop {
            let m = metrics(&w);
            let applied = m("weir_engine_events_total{stream=\"pay\",outcome=\"accepted\"}");
            let outs = m("weir_outputs_written_total ");
            let lag = m("weir_kafka_consumer_lag{");
            let owned = m("weir_kafka_owned_partitions ");
            samples.push((Instant::now(), applied as u64));
            if owned == parts() as f64 && t_owned.is_none() {
                t_owned = Some(Instant::now());
            }
            if owned == parts() as f64 && lag == 0.0 && outs >= matches as f64 {
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(600),
                "weir did not finish"
            );
            // Every scrape costs weir and the broker a little (the lag metric asks the
            // broker for each partition's end): 10 a second.
            std::thread::sleep(Duration::from_millis(100));
        }
        let weir_s = t.elapsed().as_secs_f64();
        let cpu_weir = (
            cpu_secs(broker_pid) - broker_cpu0,
            cpu_secs(&w.child.id().to_string()),
        );
        if let Some(mut p) = perf {
            let _ = Command::new("kill")
                .args(["-INT", &p.id().to_string()])
                .status();
            let _ = p.wait();
        }
        let first = samples
            .iter()
            .find(|(_, c)| *c > 0)
            .map_or(t, |(at, _)| *at);
        let end = samples.last().map_or(t, |(at, _)| *at);
        let weir_mid = middle_rate(&samples, n as u64);
        let recovery_ms = metric(&w, "weir_kafka_rebalance_recovery_milliseconds ");
        println!(
            "weir (1 instance, {} partitions): {n} events → {matches} outputs; {weir_mid:.0} events/s over the middle 80 % ({:.0} % of the broker's consume rate); {:.0} events/s from the first applied event to the end; {:.0} events/s incl. start and group join ({weir_s:.2} s)",
            parts(),
            100.0 * weir_mid / broker_mid,
            n as f64 / end.duration_since(first).as_secs_f64().max(1e-3),
            n as f64 / weir_s
        );
        println!(
            "  CPU (2 cores): bare consume: broker {:.2} s + readers {:.2} s; weir run: broker {:.2} s + weir {:.2} s ({:.2} µs of weir CPU per event, incl. start-up)",
            cpu_bare.0,
            cpu_bare.1,
            cpu_weir.0,
            cpu_weir.1,
            cpu_weir.1 * 1e6 / n as f64
        );
        println!(
            "  start → all partitions owned {:.2} s, restore after the assignment {recovery_ms:.0} ms, first event applied {:.2} s after start",
            t_owned.map_or(0.0, |x| x.duration_since(t).as_secs_f64()),
            first.duration_since(t).as_secs_f64()
        );

        // 3. End-to-end latency at a steady rate.
        let rate = 2000usize;
        let secs = 5usize;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let cfg2 = cfg.clone();
        let reader = std::thread::spawn(move || {
            let mut r = PartitionReader::new(&cfg2, "b.outputs", 0).unwrap();
            let mut next = r.read_to_end(0).unwrap().last().map_or(0, |x| x.offset + 1);
            let mut lat = Vec::new();
            while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
                for rec in r
                    .read(next, 10_000, 8 << 20, Duration::from_millis(100))
                    .unwrap()
                {
                    next = rec.offset + 1;
                    let v: serde_json::Value =
                        serde_json::from_slice(rec.value.as_deref().unwrap_or(b"{}")).unwrap();
                    if let Some(sent) = v["fields"]["sent"].as_i64() {
                        if sent > 0 {
                            lat.push((now_us() - sent) as f64 / 1000.0);
                        }
                    }
                }
            }
            lat
        });
        std::thread::sleep(Duration::from_millis(500));
        for s in 0..secs {
            let t = Instant::now();
            for b in 0..10 {
                let batch: Vec<(String, String)> = (0..rate / 10)
                    .map(|i| {
                        let card = format!("l{}", (s * rate + b * rate / 10 + i) % 1000);
                        let v = format!(r#"{{"card":"{card}","amount":999,"sent":{}}}"#, now_us());
                        (card, v)
                    })
                    .collect();
                produce(&p, &batch, batch.len());
                let target = Duration::from_millis(100 * (b as u64 + 1));
                if let Some(d) = target.checked_sub(t.elapsed()) {
                    std::thread::sleep(d);
                }
            }
        }
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut lat = reader.join().unwrap();
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let q = |f: f64| lat[((lat.len() as f64 * f) as usize).min(lat.len() - 1)];
        println!(
            "latency at {rate} events/s for {secs} s: {} outputs, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            lat.len(),
            q(0.5),
            q(0.99),
            lat[lat.len() - 1]
        );

        // 4. Rebalance recovery: a second instance joins, then one is SIGKILLed.
        let t = Instant::now();
        let mut w2 = weir(&bootstrap);
        loop {
            let a = metric(&w, "weir_kafka_owned_partitions ");
            let b = metric(&w2, "weir_kafka_owned_partitions ");
            if a + b == parts() as f64 && a > 0.0 && b > 0.0 {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(120), "no rebalance");
            std::thread::sleep(Duration::from_millis(20));
        }
        println!(
            "a second instance joins: partitions split {:.2} s after its start",
            t.elapsed().as_secs_f64()
        );
        std::thread::sleep(Duration::from_secs(3));
        w2.child.kill().unwrap();
        w2.child.wait().unwrap();
        let t = Instant::now();
        while metric(&w, "weir_kafka_owned_partitions ") < parts() as f64 {
            assert!(t.elapsed() < Duration::from_secs(120), "no takeover");
            std::thread::sleep(Duration::from_millis(20));
        }
        println!(
            "SIGKILL of one of two: the survivor owns every partition {:.2} s later (session timeout 4 s)",
            t.elapsed().as_secs_f64()
        );
    }
}
