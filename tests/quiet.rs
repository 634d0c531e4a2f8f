//! Results on time on quiet streams (`idle_timeout`, issue 12), end to end on the real
//! `weir serve`: an absence fires and a tumbling window closes with no further event,
//! with 1 and 4 partitions, within the contract's bound; after a SIGKILL and a replay of
//! the whole log (idle ticks included) the outputs are the same, each id once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const RULES: &str = "
CREATE STREAM orders (id STRING, kind STRING, ts TIMESTAMP)
  WITH (event_time = 'ts', max_delay = '200 ms', key = 'id', idle_timeout = '1 second');
CREATE RULE unpaid AS FROM orders PARTITION BY id
  PATTERN (created !paid) WITHIN 2 SECONDS
  DEFINE created AS kind = 'created', paid AS kind = 'paid'
  MEASURES created.ts AS created_at;
CREATE METRIC per_kind AS SELECT kind, COUNT(*) AS n FROM orders
  GROUP BY kind WINDOW TUMBLING (SIZE 1 SECOND);
";

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-quiet-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `weir serve` with RULES on a free port, `args` added (no checkpoint is written during
/// a test: a restart replays the whole log).
fn start(data: &Path, args: &[&str]) -> Server {
    let rules = data.join("rules.weir");
    std::fs::write(&rules, RULES).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", "--listen", &listen, "--checkpoint-secs", "3600"])
        .arg("--data")
        .arg(data)
        .arg("--rules")
        .arg(&rules)
        .args(args)
        .env("WEIR_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("weir serve starts");
    let s = Server {
        child,
        base: format!("http://{listen}"),
    };
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(30) {
        if let Ok(r) = ureq::get(&format!("{}/readyz", s.base)).call() {
            if r.status() == 200 {
                return s;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("weir serve never became ready");
}

fn send(s: &Server, events: &[Value]) {
    let body: String = events.iter().map(|e| format!("{e}\n")).collect();
    let r = ureq::post(&format!("{}/v1/streams/orders/events", s.base))
        .set("Content-Type", "application/x-ndjson")
        .send_string(&body)
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// Every output record so far.
fn outputs(s: &Server) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = 0u64;
    loop {
        let v: Value = ureq::get(&format!(
            "{}/v1/outputs?cursor={cursor}&limit=1000&wait_ms=0",
            s.base
        ))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
        let recs = v["records"].as_array().unwrap().clone();
        cursor = v["cursor"].as_u64().unwrap();
        if recs.is_empty() {
            return out;
        }
        out.extend(recs);
    }
}

/// Polls until `done` holds of the outputs; returns them and when that was seen (ms).
fn wait_for(s: &Server, within: Duration, done: impl Fn(&[Value]) -> bool) -> (Vec<Value>, i64) {
    let t0 = Instant::now();
    loop {
        let out = outputs(s);
        if done(&out) {
            return (out, now_ms());
        }
        assert!(
            t0.elapsed() < within,
            "not decided within {within:?}; outputs so far: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn by_id(recs: &[Value]) -> BTreeMap<String, Value> {
    let mut m = BTreeMap::new();
    for r in recs {
        let id = r["id"].as_str().unwrap().to_string();
        assert!(
            m.insert(id.clone(), r.clone()).is_none(),
            "output {id} twice"
        );
    }
    m
}

fn is_rule(r: &Value, name: &str) -> bool {
    r["rule"] == name
}

/// The records of the quiet-stream scenario: orders o0..o7 created (o1 and o5 paid),
/// then silence.
fn scenario(s: &Server) -> (Vec<Value>, i64, i64) {
    let t = now_ms();
    let mut evs: Vec<Value> = (0..8)
        .map(|i| json!({"id": format!("o{i}"), "kind": "created", "ts": t}))
        .collect();
    evs.push(json!({"id": "o1", "kind": "paid", "ts": t + 100}));
    evs.push(json!({"id": "o5", "kind": "paid", "ts": t + 100}));
    send(s, &evs);
    let sent = now_ms();
    // 6 absences (deadline t + 2 s) and the window [t, t + 1 s) of both kinds, then no
    // event at all.
    let (out, seen) = wait_for(s, Duration::from_secs(20), |o| {
        o.iter().filter(|r| is_rule(r, "unpaid")).count() == 6
            && o.iter().filter(|r| r["metric"] == "per_kind").count() >= 2
    });
    (out, seen - sent, t)
}

#[test]
fn absences_and_windows_are_decided_on_a_quiet_stream() {
    for parts in ["1", "4"] {
        let d = tmpdir(&format!("p{parts}"));
        let s = start(&d, &["--partitions", parts]);
        let (out, waited, t) = scenario(&s);
        // Contract: decidable at event time t + 2 s (the deadline), out by wall time
        // max(deadline + max_delay, last event + idle_timeout) + 1 s. Allow one more
        // second for a loaded 2-core test machine.
        let bound = (t + 2_000 + 200).max(t + 1_000) + 1_000;
        let late_by = t + waited - bound;
        assert!(
            late_by <= 1_000,
            "{parts} partition(s): decided {late_by} ms after the bound"
        );
        let ids: Vec<String> = out
            .iter()
            .filter(|r| is_rule(r, "unpaid"))
            .map(|r| r["fields"]["id"].as_str().unwrap_or("").to_string())
            .collect();
        for paid in ["o1", "o5"] {
            assert!(!ids.iter().any(|i| i == paid), "{paid} was paid: {ids:?}");
        }
        by_id(&out);
    }
}

#[test]
fn the_same_outputs_after_a_sigkill_and_a_replay() {
    let d = tmpdir("kill");
    let mut s = start(&d, &["--partitions", "4"]);
    let (before, _, _) = scenario(&s);
    // Let a few more ticks into the log, then kill without a checkpoint.
    std::thread::sleep(Duration::from_millis(600));
    let before = by_id(&before);
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    drop(s);
    let s = start(&d, &["--partitions", "4"]);
    std::thread::sleep(Duration::from_millis(1500));
    let after = outputs(&s);
    let after = by_id(&after);
    for (id, r) in &before {
        assert_eq!(
            after.get(id),
            Some(r),
            "output {id} changed after the replay"
        );
    }
}

/// Lateness of results on a quiet stream against the contract's bound, through
/// `weir serve` (bench/README.md, "Quiet streams"): `cargo test -p server --release
/// --test quiet -- --ignored --nocapture`. Each round sends 20 `created` events stamped
/// with the current time, then nothing; every absence is read by long-polling
/// `GET /v1/outputs` (the path live readers take) and its arrival compared with
/// max(deadline + max_delay, last event + idle_timeout), the moment the contract allows one
/// more second from. (Events stamped ahead of the clock would move the watermark ahead of
/// it too, by the same amount, and the next round's events would be late.)
#[test]
#[ignore]
fn quiet_stream_latency() {
    let rounds: usize = std::env::var("WEIR_QUIET_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    for parts in ["1", "4"] {
        let d = tmpdir(&format!("lat{parts}"));
        let s = start(&d, &["--partitions", parts]);
        let mut lateness = Vec::new();
        let mut cursor = 0u64;
        for round in 0..rounds {
            let t = now_ms();
            let evs: Vec<Value> = (0..20)
                .map(|k| json!({"id": format!("r{round}k{k}"), "kind": "created", "ts": t}))
                .collect();
            send(&s, &evs);
            let last = now_ms();
            let mut base: BTreeMap<String, i64> = (0..20)
                .map(|k| {
                    let deadline = t + 2_000;
                    (format!("r{round}k{k}"), (deadline + 200).max(last + 1_000))
                })
                .collect();
            let t0 = Instant::now();
            while !base.is_empty() {
                assert!(
                    t0.elapsed() < Duration::from_secs(30),
                    "round {round}: {base:?} not out"
                );
                let v: Value = ureq::get(&format!(
                    "{}/v1/outputs?cursor={cursor}&limit=1000&wait_ms=5000",
                    s.base
                ))
                .call()
                .unwrap()
                .into_json()
                .unwrap();
                let seen = now_ms();
                cursor = v["cursor"].as_u64().unwrap();
                for r in v["records"].as_array().unwrap() {
                    if is_rule(r, "unpaid") {
                        let id = r["fields"]["id"].as_str().unwrap_or("").to_string();
                        if let Some(b) = base.remove(&id) {
                            lateness.push(seen - b);
                        }
                    }
                }
            }
        }
        lateness.sort();
        let q = |p: f64| lateness[((lateness.len() - 1) as f64 * p).round() as usize];
        println!(
            "partitions {parts}: {} absences, lateness after max(deadline + max_delay, last event + idle_timeout): p50 {} ms, p99 {} ms, max {} ms (contract: <= 1000 ms)",
            lateness.len(),
            q(0.5),
            q(0.99),
            lateness[lateness.len() - 1]
        );
        assert!(q(0.99) <= 1_000, "p99 over the contract's second");
    }
}

/// The worker's clock is injectable: a test moves time two hours on instead of sleeping
/// (`idle_timeout = '1 hour'`, `WITHIN 1 HOUR`), in-process over a real embedded log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_clock_moves_time_without_sleeping() {
    use axum::body::Body;
    use axum::http::Request;
    use server::serve::{self, clock::Clock, state::Settings};
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;
    use tower::ServiceExt;

    let skew = Arc::new(AtomicI64::new(0));
    let sk = skew.clone();
    let settings = Settings {
        partitions: 1,
        clock: Clock::from_fn(move || now_ms() + sk.load(Ordering::SeqCst)),
        ..Settings::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let (app, ws) = serve::open(dir.path(), weir_log::LogConfig::default(), settings).unwrap();
    let handles = serve::start_workers(&app.shared, ws);
    let call = |req: Request<Body>| {
        let app = app.clone();
        async move {
            let r = serve::routes::app(app).oneshot(req).await.unwrap();
            let b = axum::body::to_bytes(r.into_body(), usize::MAX)
                .await
                .unwrap();
            serde_json::from_slice::<Value>(&b).unwrap()
        }
    };
    let post = |path: &str, body: String| Request::post(path).body(Body::from(body)).unwrap();
    let rules = "CREATE STREAM orders (id STRING, kind STRING, ts TIMESTAMP)
      WITH (event_time = 'ts', key = 'id', idle_timeout = '1 hour');
    CREATE RULE unpaid AS FROM orders PARTITION BY id
      PATTERN (created !paid) WITHIN 1 HOUR
      DEFINE created AS kind = 'created', paid AS kind = 'paid';";
    call(post("/v1/statements", rules.into())).await;
    let ev = json!({"id": "o1", "kind": "created", "ts": now_ms()});
    let v = call(post("/v1/streams/orders/events", ev.to_string())).await;
    let pos = v["position"].as_str().unwrap().to_string();
    let outputs = |q: String| {
        Request::get(format!("/v1/outputs?{q}"))
            .body(Body::empty())
            .unwrap()
    };
    let v = call(outputs(format!("cursor=0&after={pos}"))).await;
    assert_eq!(v["records"], json!([]), "nothing is decided yet");
    // Two hours and a second later by the worker's clock: quiet for idle_timeout, and the
    // watermark passed the deadline.
    skew.store(2 * 3_600_000 + 1_000, Ordering::SeqCst);
    let v = call(outputs("cursor=0&wait_ms=5000".into())).await;
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 1, "{v}");
    assert_eq!(recs[0]["rule"], "unpaid");
    app.shutdown.store(true, Ordering::SeqCst);
    app.wake_workers();
    for h in handles {
        let _ = tokio::task::spawn_blocking(move || h.join()).await;
    }
}
