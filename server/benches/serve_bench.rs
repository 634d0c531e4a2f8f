//! `weir serve` benchmark (loopback only, bounded loops):
//! 1. HTTP NDJSON ingest events/s (fsync always) with the example rules loaded;
//! 2. latency from POST of an event to its match on a WebSocket at a steady rate;
//! 3. recovery time per GB of log (no checkpoint: full replay).
//!
//! Run: `cargo bench -p server --bench serve_bench` (env: BENCH_SECS, BENCH_RATE,
//! BENCH_RECOVERY_EVENTS). `BENCH_ONLY=repartition` (not in the default run) compares a
//! rule grouped by the stream's key with the same rule grouped by another column
//! (BENCH_REPART_EVENTS, BENCH_RUNS).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BENCH_RULES: &str = "
CREATE STREAM ticks (id STRING, v FLOAT, sent INT, ts TIMESTAMP)
  WITH (event_time = 'ts', max_delay = '0 seconds', key = 'id');
CREATE RULE spike AS FROM ticks PARTITION BY id
  PATTERN (big) DEFINE big AS v > 100
  MEASURES big.sent AS sent;
";

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

struct Server {
    child: Child,
    base: String,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &Path, args: &[&str]) -> (Server, Duration) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let t0 = Instant::now();
    // WEIR_BIN: another build of the binary (to compare two builds in one run).
    let bin = std::env::var("WEIR_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_weir").to_string());
    let child = Command::new(bin)
        .args(["serve", "--listen", &listen, "--data"])
        .arg(data)
        .args(args)
        .env("WEIR_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let s = Server {
        child,
        base: format!("http://{listen}"),
        port,
    };
    loop {
        if let Ok(r) = ureq::get(&format!("{}/readyz", s.base)).call() {
            if r.status() == 200 {
                return (s, t0.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn payments_batch(start: u64, n: u64) -> String {
    let mut s = String::with_capacity(n as usize * 140);
    for i in start..start + n {
        let e = json!({"card_id": format!("card{}", i % 5000), "account_id": format!("a{}", i % 900),
            "merchant": "m", "amount": if i % 13 == 0 { 700.0 } else { 1.0 + (i % 40) as f64 },
            "currency": "EUR", "country": if i % 2 == 0 { "FR" } else { "DE" }, "ts": i as i64 * 10});
        s.push_str(&e.to_string());
        s.push('\n');
    }
    s
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Sum of a Prometheus metric's samples whose line starts with `prefix`.
fn prom_sum(base: &str, prefix: &str) -> u64 {
    let t = ureq::get(&format!("{base}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    t.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

fn ingest_throughput(secs: u64) {
    let d = dir("ingest");
    let rules = root().join("rules");
    // The workers apply the example rules far slower than ingest appends (see
    // bench/README.md); a large lag bound lets this measure the append path.
    let max_lag = env_u64("BENCH_MAX_LAG", 100_000_000).to_string();
    let (s, _) = start(
        &d,
        &[
            "--rules",
            rules.to_str().unwrap(),
            "--partitions",
            "2",
            "--fsync",
            "always",
            "--max-lag",
            &max_lag,
        ],
    );
    let url = format!("{}/v1/streams/payments/events", s.base);
    let total = Arc::new(AtomicU64::new(0));
    let throttled = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let batch = 5000;
    let clients = env_u64("BENCH_CLIENTS", 4);
    let t0 = Instant::now();
    let hs: Vec<_> = (0..clients)
        .map(|t| {
            let (url, total, stop, throttled) =
                (url.clone(), total.clone(), stop.clone(), throttled.clone());
            std::thread::spawn(move || {
                // Bodies are made up front so the client's JSON work does not compete
                // with the server for the 2 cores.
                let bodies: Vec<String> = (0..8)
                    .map(|k| payments_batch(t * 1_000_000_000 + k * batch, batch))
                    .collect();
                let mut k = 0;
                // One kept-alive connection per client.
                let agent = ureq::Agent::new();
                while !stop.load(Ordering::Relaxed) {
                    let body = &bodies[k % bodies.len()];
                    k += 1;
                    match agent
                        .post(&url)
                        .set("Content-Type", "application/x-ndjson")
                        .send_string(body)
                    {
                        Ok(r) => {
                            let v: Value = r.into_json().unwrap();
                            total.fetch_add(v["accepted"].as_u64().unwrap(), Ordering::Relaxed);
                        }
                        Err(ureq::Error::Status(429, r)) => {
                            assert!(r.header("retry-after").is_some());
                            throttled.fetch_add(1, Ordering::Relaxed);
                            std::thread::sleep(Duration::from_millis(50))
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    let el = t0.elapsed().as_secs_f64();
    let n = total.load(Ordering::Relaxed);
    let lag = prom_sum(&s.base, "weir_partition_lag_events{stream=\"payments\"");
    println!("ingest: {n} events in {el:.2} s = {:.0} events/s acknowledged (NDJSON, {batch}/request, {clients} clients, fsync always, 2 partitions, example rules, max-lag {max_lag}); {} requests throttled (429)", n as f64 / el, throttled.load(Ordering::Relaxed));
    let outcome = |o: &str| {
        prom_sum(
            &s.base,
            &format!("weir_engine_events_total{{stream=\"payments\",outcome=\"{o}\"}}"),
        )
    };
    println!(
        "ingest: workers applied {} events in the same time = {:.0} events/s (lag at the end {lag}); engine outcomes: accepted {}, late_dropped {} (the bodies repeat, so repeated event times are late)",
        n.saturating_sub(lag),
        n.saturating_sub(lag) as f64 / el,
        outcome("accepted"),
        outcome("late_dropped")
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// p50 / p99 / max of 200 fdatasyncs of a 4 KiB append in `d` (ms): the floor the
/// POST → match latency sits on under `--fsync always`, at this moment on this disk.
fn fsync_probe(d: &Path) -> (f64, f64, f64) {
    use std::io::Write;
    let path = d.join("fsync-probe");
    let mut f = std::fs::File::create(&path).unwrap();
    let mut t = Vec::new();
    for _ in 0..200 {
        f.write_all(&[7u8; 4096]).unwrap();
        let t0 = Instant::now();
        f.sync_data().unwrap();
        t.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = std::fs::remove_file(&path);
    t.sort_by(|a, b| a.total_cmp(b));
    (t[100], t[198], t[199])
}

fn latency(secs: u64, rate: u64) {
    let d = dir("latency");
    let (f50, f99, fmax) = fsync_probe(&d);
    println!(
        "latency: fsync probe before the run: p50 {f50:.2} ms, p99 {f99:.2} ms, max {fmax:.2} ms"
    );
    // BENCH_FSYNC: the fsync policy (default `always`; `never` shows what fsync costs).
    let fsync = std::env::var("BENCH_FSYNC").unwrap_or_else(|_| "always".into());
    // BENCH_CHECKPOINT_SECS: the checkpoint interval (default 2 s, so checkpoints happen
    // during the run as they would in steady state).
    let ckpt = std::env::var("BENCH_CHECKPOINT_SECS").unwrap_or_else(|_| "2".into());
    let rules = d.join("bench.weir");
    std::fs::write(&rules, BENCH_RULES).unwrap();
    let (s, _) = start(
        &d,
        &[
            "--rules",
            rules.to_str().unwrap(),
            "--partitions",
            "2",
            "--fsync",
            &fsync,
            "--checkpoint-secs",
            &ckpt,
        ],
    );
    let (mut ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{}/v1/ws", s.port)).unwrap();
    ws.send(tungstenite::Message::Text(
        json!({"type": "subscribe", "names": ["spike"], "cursor": 0})
            .to_string()
            .into(),
    ))
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    // 4 senders, each posting every 4 ms: rate/250 events per request.
    let senders = 4u64;
    let period = Duration::from_millis(4);
    let per_req = (rate * period.as_millis() as u64 / 1000 / senders).max(1);
    let url = format!("{}/v1/streams/ticks/events", s.base);
    let hs: Vec<_> = (0..senders)
        .map(|t| {
            let (url, stop, sent) = (url.clone(), stop.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut next = Instant::now();
                let mut i = 0u64;
                // One kept-alive connection per sender.
                let agent = ureq::Agent::new();
                while !stop.load(Ordering::Relaxed) {
                    let mut body = String::new();
                    let ts = now_us() as i64 / 1000;
                    for k in 0..per_req {
                        // One "big" event per request (its match is timed).
                        let v = if k == 0 { 500.0 } else { 1.0 };
                        let e = json!({"id": format!("k{t}-{}", i % 64), "v": v, "sent": now_us(), "ts": ts});
                        body.push_str(&e.to_string());
                        body.push('\n');
                        i += 1;
                    }
                    agent.post(&url).set("Content-Type", "application/x-ndjson").send_string(&body).unwrap();
                    sent.fetch_add(per_req, Ordering::Relaxed);
                    next += period;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                }
            })
        })
        .collect();
    let mut lat = Vec::new();
    let t0 = Instant::now();
    let warmup = Duration::from_secs(1);
    while t0.elapsed() < Duration::from_secs(secs) {
        if let Ok(tungstenite::Message::Text(t)) = ws.read() {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if let Some(s) = v["record"]["fields"]["sent"].as_u64() {
                if t0.elapsed() > warmup {
                    lat.push(now_us().saturating_sub(s));
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    let el = t0.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "latency: fsync {fsync}, checkpoint every {ckpt} s, offered {:.0} events/s, {} matches timed; POST→WebSocket p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        sent.load(Ordering::Relaxed) as f64 / el,
        lat.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
    let _ = std::fs::remove_dir_all(&d);
}

fn dir_bytes(p: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            n += if m.is_dir() {
                dir_bytes(&e.path())
            } else {
                m.len()
            };
        }
    }
    n
}

fn ticks_batch(start: u64, n: u64) -> String {
    let mut s = String::with_capacity(n as usize * 80);
    for i in start..start + n {
        let e = json!({"id": format!("k{}", i % 1000), "v": (i % 150) as f64, "sent": 0, "ts": i as i64});
        s.push_str(&e.to_string());
        s.push('\n');
    }
    s
}

/// `example`: the example rules over `payments`; otherwise one simple rule over `ticks`.
fn recovery(events: u64, example: bool) {
    let d = dir("recovery");
    let rules = if example {
        root().join("rules")
    } else {
        let r = d.join("bench.weir");
        std::fs::write(&r, BENCH_RULES).unwrap();
        r
    };
    let args = [
        "--rules",
        rules.to_str().unwrap(),
        "--partitions",
        "2",
        "--fsync",
        "never",
        "--checkpoint-secs",
        "86000",
    ];
    let (s, _) = start(&d, &args);
    let stream = if example { "payments" } else { "ticks" };
    let url = format!("{}/v1/streams/{stream}/events", s.base);
    let mut i = 0;
    while i < events {
        let body = if example {
            payments_batch(i, 10_000)
        } else {
            ticks_batch(i, 10_000)
        };
        match ureq::post(&url)
            .set("Content-Type", "application/x-ndjson")
            .send_string(&body)
        {
            Ok(_) => i += 10_000,
            Err(ureq::Error::Status(429, _)) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("{e}"),
        }
    }
    drop(s); // SIGKILL: no shutdown checkpoint, so the restart replays everything.
    let bytes = dir_bytes(&d.join("log"));
    let (_s, took) = start(&d, &args);
    let gb = bytes as f64 / 1e9;
    println!(
        "recovery ({}): {events} events, {:.1} MB of log replayed in {:.2} s = {:.1} s per GB",
        if example {
            "example rules, payments"
        } else {
            "one simple rule, ticks"
        },
        bytes as f64 / 1e6,
        took.as_secs_f64(),
        took.as_secs_f64() / gb
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// What repartitioning costs: the same events and the same rule, grouped by the stream's
/// key (each partition's worker applies its own events) and by another column holding the
/// same values (every event is also copied into the re-keyed stream and applied there). Events are written
/// first (fsync never, so the append is not what is measured); the figure is events per
/// second from the first write until the workers (and the copies' readers) have applied
/// everything.
fn repartition_cost(events: u64) {
    // `card2` holds the same value as `card`: the rule does the same work either way.
    for (name, by) in [("aligned", "card"), ("repartitioned", "card2")] {
        let d = dir(&format!("repart-{name}"));
        let rules = d.join("rules.weir");
        std::fs::write(
            &rules,
            format!(
                "CREATE STREAM pay (card STRING, card2 STRING, amount FLOAT, ts TIMESTAMP)
                   WITH (event_time = 'ts', max_delay = '1 second', key = 'card');
                 CREATE RULE r AS FROM pay PARTITION BY {by}
                   PATTERN (small{{3,}} big) WITHIN 1 MINUTE
                   DEFINE small AS amount < 5, big AS amount > 500
                   MEASURES COUNT(small.*) AS n;"
            ),
        )
        .unwrap();
        let (s, _) = start(
            &d,
            &[
                "--rules",
                rules.to_str().unwrap(),
                "--partitions",
                "2",
                "--fsync",
                "never",
                "--max-lag",
                "1000000000",
            ],
        );
        let url = format!("{}/v1/streams/pay/events", s.base);
        let batch = 5000u64;
        let bodies: Vec<String> = (0..events / batch)
            .map(|k| {
                let mut b = String::new();
                for i in k * batch..(k + 1) * batch {
                    let e = json!({"card": format!("c{}", i % 5000), "card2": format!("c{}", i % 5000),
                        "amount": if i % 17 == 0 { 700.0 } else { 1.0 + (i % 4) as f64 }, "ts": i as i64});
                    b.push_str(&e.to_string());
                    b.push('\n');
                }
                b
            })
            .collect();
        let agent = ureq::Agent::new();
        let t0 = Instant::now();
        for b in &bodies {
            agent
                .post(&url)
                .set("Content-Type", "application/x-ndjson")
                .send_string(b)
                .unwrap();
        }
        let written = t0.elapsed();
        loop {
            let lag = prom_sum(&s.base, "weir_partition_lag_events{");
            if lag == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let el = t0.elapsed().as_secs_f64();
        let copies = prom_sum(&s.base, "weir_repartition_copies_total");
        let matches = prom_sum(&s.base, "weir_outputs_written_total");
        println!(
            "repartition: {name:13} (PARTITION BY {by}): {events} events written in {:.2} s, all applied after {el:.2} s = {:.0} events/s; {copies} copies, {matches} outputs",
            written.as_secs_f64(),
            events as f64 / el
        );
        drop(s);
        let _ = std::fs::remove_dir_all(&d);
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let secs = env_u64("BENCH_SECS", 8);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "ingest" {
        ingest_throughput(secs);
    }
    if only.is_empty() || only == "latency" {
        latency(secs, env_u64("BENCH_RATE", 50_000));
    }
    if only.is_empty() || only == "recovery" {
        recovery(env_u64("BENCH_RECOVERY_EVENTS", 1_000_000), false);
    }
    if only == "repartition" {
        for _ in 0..env_u64("BENCH_RUNS", 2) {
            repartition_cost(env_u64("BENCH_REPART_EVENTS", 500_000));
        }
    }
    if only == "recovery-example" {
        recovery(env_u64("BENCH_RECOVERY_EVENTS", 1_000_000), true);
    }
}
