//! End-to-end tests of `weir serve`: the real binary on a free loopback port, real files
//! in temp dirs, HTTP (ureq), WebSocket (tungstenite), SSE (raw TCP).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RULES: &str = "
CREATE STREAM pay (card STRING, amount FLOAT, ts TIMESTAMP)
  WITH (event_time = 'ts', max_delay = '1 second', key = 'card');
CREATE RULE probe AS FROM pay PARTITION BY card
  PATTERN (small{2,} big) WITHIN 1 MINUTE
  DEFINE small AS amount < 5, big AS amount > 500
  MEASURES COUNT(small.*) AS n, big.amount AS amount;
CREATE METRIC per_card AS SELECT card, COUNT(*) AS n, SUM(amount) AS total
  FROM pay GROUP BY card WINDOW TUMBLING (SIZE 10 SECONDS);
";

struct Server {
    child: Child,
    base: String,
    port: u16,
    data: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("weir-serve-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(data: &Path, extra: &[&str]) -> Server {
    start_env(data, extra, &[])
}

fn start_env(data: &Path, extra: &[&str], envs: &[(&str, &str)]) -> Server {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", "--listen", &listen, "--data"])
        .arg(data)
        .args(extra)
        .env("WEIR_LOG", "warn")
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("weir serve starts");
    let s = Server {
        child,
        base: format!("http://{listen}"),
        port,
        data: data.to_path_buf(),
    };
    let t0 = Instant::now();
    loop {
        if let Ok(r) = ureq::get(&format!("{}/readyz", s.base)).call() {
            if r.status() == 200 {
                return s;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "weir serve never became ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn with_rules(data: &Path, extra: &[&str]) -> Server {
    let rules = data.join("rules.weir");
    std::fs::write(&rules, RULES).unwrap();
    let mut args = vec!["--rules", rules.to_str().unwrap()];
    args.extend_from_slice(extra);
    start(data, &args)
}

/// (status, JSON body) of a request; non-2xx statuses are answers too.
fn call(
    method: &str,
    url: &str,
    ctype: Option<&str>,
    body: Option<&[u8]>,
    token: Option<&str>,
) -> (u16, Value) {
    let mut r = ureq::request(method, url);
    if let Some(c) = ctype {
        r = r.set("Content-Type", c);
    }
    if let Some(t) = token {
        r = r.set("Authorization", &format!("Bearer {t}"));
    }
    let res = match body {
        Some(b) => r.send_bytes(b),
        None => r.call(),
    };
    let resp = match res {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn post(s: &Server, path: &str, body: &str) -> (u16, Value) {
    call(
        "POST",
        &format!("{}{path}", s.base),
        Some("application/json"),
        Some(body.as_bytes()),
        None,
    )
}

fn get(s: &Server, path: &str) -> (u16, Value) {
    call("GET", &format!("{}{path}", s.base), None, None, None)
}

fn ev(card: &str, amount: f64, ts: i64) -> Value {
    json!({"card": card, "amount": amount, "ts": ts})
}

/// Every output record (after the engine applied `after`).
fn all_outputs(s: &Server, after: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut first = true;
    let mut cursor = 0u64;
    loop {
        // The first read waits for `after`; the others page without waiting.
        let q = if std::mem::take(&mut first) {
            format!("after={after}&wait_ms=20000")
        } else {
            "wait_ms=0".to_string()
        };
        let (st, v) = get(s, &format!("/v1/outputs?cursor={cursor}&limit=1000&{q}"));
        assert_eq!(st, 200, "{v}");
        let recs = v["records"].as_array().unwrap().clone();
        cursor = v["cursor"].as_u64().unwrap();
        if recs.is_empty() {
            return out;
        }
        out.extend(recs);
    }
}

#[test]
fn statements_events_outputs_and_read_your_writes() {
    let d = tmpdir("basic");
    let s = start(&d, &["--partitions", "2"]);
    // A bad statement: 400 with line, column and snippet; nothing applied.
    let (st, v) = post(
        &s,
        "/v1/statements",
        "CREATE STREAM ok (a INT);\nCREATE RULE r AS FROM nowhere PATTERN (a) DEFINE a AS x > 1;",
    );
    assert_eq!(st, 400, "{v}");
    let errs = v["error"]["errors"].as_array().unwrap();
    assert!(!errs.is_empty());
    assert_eq!(errs[0]["line"], 2);
    assert!(errs[0]["column"].as_u64().unwrap() >= 1);
    assert!(errs[0]["snippet"].as_str().unwrap().contains("nowhere"));
    assert_eq!(get(&s, "/v1/statements").1["statements"], json!([]));
    // Good statements.
    let (st, v) = post(&s, "/v1/statements", RULES);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["applied"].as_array().unwrap().len(), 3);
    assert!(v["position"].as_str().unwrap().starts_with("w1"));
    let (st, v) = get(&s, "/v1/statements/probe");
    assert_eq!(st, 200);
    assert!(v["text"].as_str().unwrap().starts_with("CREATE RULE probe"));
    assert_eq!(get(&s, "/v1/statements/nope").0, 404);
    // Events: a probe on c1, then an event far later moves the watermark.
    let evs = json!([
        ev("c1", 1.0, 1000),
        ev("c1", 2.0, 2000),
        ev("c1", 900.0, 3000),
        ev("c1", 1.0, 60_000)
    ]);
    let (st, v) = post(&s, "/v1/streams/pay/events", &evs.to_string());
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["accepted"], 4);
    let pos = v["position"].as_str().unwrap().to_string();
    // Read-your-writes: with after=, the match is there at once.
    let (st, v) = get(&s, &format!("/v1/outputs?name=probe&after={pos}"));
    assert_eq!(st, 200, "{v}");
    let recs = v["records"].as_array().unwrap();
    assert_eq!(recs.len(), 1, "{v}");
    assert_eq!(recs[0]["rule"], "probe");
    assert_eq!(recs[0]["fields"]["n"], 2);
    assert_eq!(recs[0]["fields"]["amount"], 900.0);
    let cursor = v["cursor"].as_u64().unwrap();
    // Nothing new past the cursor: a long poll returns empty after wait_ms.
    let t0 = Instant::now();
    let (_, v) = get(
        &s,
        &format!("/v1/outputs?name=probe&cursor={cursor}&wait_ms=300"),
    );
    assert_eq!(v["records"], json!([]));
    assert!(t0.elapsed() >= Duration::from_millis(250));
    // A bad position token is a 400.
    assert_eq!(get(&s, "/v1/outputs?after=w1zz").0, 400);
    // Metric windows: the closed window [0, 10 s) of c1 has 3 events; the open one
    // [60 s, 70 s) has 1 (final = false).
    let (st, v) = get(
        &s,
        &format!("/v1/metrics/per_card?group.card=c1&after={pos}"),
    );
    assert_eq!(st, 200, "{v}");
    let w = v["windows"].as_array().unwrap();
    assert_eq!(w.len(), 2, "{v}");
    assert_eq!(
        (w[0]["values"]["n"].clone(), w[0]["final"].clone()),
        (json!(3), json!(true))
    );
    assert_eq!(
        (w[1]["values"]["n"].clone(), w[1]["final"].clone()),
        (json!(1), json!(false))
    );
    // from/to select windows by overlap.
    let (_, v) = get(&s, "/v1/metrics/per_card?group.card=c1&from=0&to=10000");
    assert_eq!(v["windows"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(get(&s, "/v1/metrics/probe").0, 404);
    // Prometheus text has the counters.
    let text = ureq::get(&format!("{}/metrics", s.base))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(text.contains("weir_events_accepted_total 4"), "{text}");
    assert!(
        text.contains("weir_engine_events_total{stream=\"pay\",outcome=\"accepted\"} 4"),
        "{text}"
    );
    let (st, api) = get(&s, "/openapi.json");
    assert_eq!(st, 200);
    for path in [
        "/v1/statements",
        "/v1/statements/{name}",
        "/v1/streams/{stream}/events",
        "/v1/outputs",
        "/v1/outputs/stream",
        "/v1/ws",
        "/v1/metrics/{metric}",
        "/v1/metrics/{metric}/contains",
        "/metrics",
        "/healthz",
        "/readyz",
        "/openapi.json",
    ] {
        assert!(
            api["paths"].get(path).is_some(),
            "openapi.json lacks {path}"
        );
    }
    assert_eq!(get(&s, "/healthz").0, 200);
}

#[test]
fn ndjson_array_and_object_ingest() {
    let d = tmpdir("formats");
    let s = with_rules(&d, &["--partitions", "1"]);
    let (st, v) = post(&s, "/v1/streams/pay/events", &ev("a", 1.0, 1).to_string());
    assert_eq!((st, v["accepted"].clone()), (200, json!(1)));
    let (st, v) = post(
        &s,
        "/v1/streams/pay/events",
        &json!([ev("a", 1.0, 2), ev("b", 2.0, 3)]).to_string(),
    );
    assert_eq!((st, v["accepted"].clone()), (200, json!(2)));
    let nd = format!(
        "{}\n\n{}\r\n{}\n",
        ev("a", 1.0, 4),
        ev("b", 1.0, 5),
        ev("c", 1.0, 6)
    );
    let (st, v) = call(
        "POST",
        &format!("{}/v1/streams/pay/events", s.base),
        Some("application/x-ndjson"),
        Some(nd.as_bytes()),
        None,
    );
    assert_eq!((st, v["accepted"].clone()), (200, json!(3)), "{v}");
    let text = ureq::get(&format!("{}/metrics", s.base))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(text.contains("weir_events_accepted_total 6"), "{text}");
}

#[test]
fn bad_input_is_rejected_and_the_service_stays_up() {
    let d = tmpdir("bad");
    let s = with_rules(&d, &["--partitions", "1", "--max-body-bytes", "4096"]);
    let url = format!("{}/v1/streams/pay/events", s.base);
    // Malformed JSON.
    let (st, v) = post(&s, "/v1/streams/pay/events", "{\"card\": ");
    assert_eq!(
        (st, v["error"]["code"].clone()),
        (400, json!("invalid_json"))
    );
    // Wrong types and missing event time are rejected by index; good ones kept.
    let body = json!([ev("a", 1.0, 1), {"card": "a", "amount": "much", "ts": 2}, {"card": "b", "amount": 1.0}, 42, ev("b", 3.0, 3)]);
    let (st, v) = post(&s, "/v1/streams/pay/events", &body.to_string());
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["accepted"], 2);
    let idx: Vec<u64> = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, vec![1, 2, 3]);
    assert!(v["rejected"][0]["error"]
        .as_str()
        .unwrap()
        .contains("amount"));
    // Not an object or array.
    assert_eq!(post(&s, "/v1/streams/pay/events", "\"hello\"").0, 400);
    // Huge body → 413.
    let big = format!("[{}]", vec![ev("a", 1.0, 1).to_string(); 200].join(","));
    let (st, v) = post(&s, "/v1/streams/pay/events", &big);
    assert_eq!(
        (st, v["error"]["code"].clone()),
        (413, json!("body_too_large"))
    );
    // Deep nesting.
    let deep = format!("{}{}", "[".repeat(2000), "]".repeat(2000));
    assert_eq!(post(&s, "/v1/streams/pay/events", &deep).0, 400);
    // Invalid UTF-8: the whole JSON body is refused; in NDJSON only that line.
    let (st, _) = call(
        "POST",
        &url,
        Some("application/json"),
        Some(b"{\"card\": \"\xff\"}"),
        None,
    );
    assert_eq!(st, 400);
    let mut nd = ev("u", 1.0, 10).to_string().into_bytes();
    nd.extend_from_slice(b"\n{\"card\": \"\xfe\", \"ts\": 11}\n");
    nd.extend_from_slice(ev("u", 1.0, 12).to_string().as_bytes());
    let (st, v) = call("POST", &url, Some("application/x-ndjson"), Some(&nd), None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["accepted"], 2);
    assert_eq!(v["rejected"][0]["index"], 1);
    // Unknown stream → 404 naming the known streams.
    let (st, v) = post(&s, "/v1/streams/nope/events", "{}");
    assert_eq!(st, 404);
    assert_eq!(v["error"]["known_streams"], json!(["pay"]));
    // Oversized statement text and unknown endpoints.
    assert_eq!(post(&s, "/v1/statements", "CREATE STREAM").0, 400);
    assert_eq!(get(&s, "/v1/nothing").0, 404);
    // Still up, and the good events are in.
    assert_eq!(get(&s, "/healthz").0, 200);
    let text = ureq::get(&format!("{}/metrics", s.base))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(text.contains("weir_events_accepted_total 4"), "{text}");
}

#[test]
fn token_guards_writes() {
    let d = tmpdir("token");
    let s = start(&d, &["--token", "s3cret"]);
    let url = format!("{}/v1/statements", s.base);
    let (st, v) = call("POST", &url, None, Some(RULES.as_bytes()), None);
    assert_eq!(
        (st, v["error"]["code"].clone()),
        (401, json!("unauthorized"))
    );
    assert_eq!(
        call("POST", &url, None, Some(RULES.as_bytes()), Some("wrong")).0,
        401
    );
    assert_eq!(
        call("POST", &url, None, Some(RULES.as_bytes()), Some("s3cret")).0,
        200
    );
    let ev_url = format!("{}/v1/streams/pay/events", s.base);
    let body = ev("a", 1.0, 1).to_string();
    assert_eq!(
        call("POST", &ev_url, None, Some(body.as_bytes()), None).0,
        401
    );
    assert_eq!(
        call("POST", &ev_url, None, Some(body.as_bytes()), Some("s3cret")).0,
        200
    );
    // Reads stay open.
    assert_eq!(get(&s, "/v1/statements").0, 200);
    assert_eq!(get(&s, "/v1/outputs").0, 200);
}

/// Three probes (one per card) and a watermark mover; returns the position.
fn three_matches(s: &Server) -> String {
    let mut evs = Vec::new();
    for (i, c) in ["c1", "c2", "c3"].iter().enumerate() {
        let t = i as i64 * 10_000;
        evs.extend([ev(c, 1.0, t + 1), ev(c, 1.0, t + 2), ev(c, 999.0, t + 3)]);
    }
    evs.push(ev("c1", 1.0, 100_000));
    let (st, v) = post(s, "/v1/streams/pay/events", &Value::Array(evs).to_string());
    assert_eq!(st, 200);
    v["position"].as_str().unwrap().to_string()
}

#[test]
fn websocket_and_sse_resume_from_a_cursor() {
    let d = tmpdir("ws");
    let s = with_rules(&d, &["--partitions", "1"]);
    let pos = three_matches(&s);
    let (_, v) = get(&s, &format!("/v1/outputs?name=probe&after={pos}"));
    assert_eq!(v["records"].as_array().unwrap().len(), 3, "{v}");
    // WebSocket from the start: the three matches, in order, each with its cursor.
    let (mut ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{}/v1/ws", s.port)).unwrap();
    ws.send(tungstenite::Message::Text(
        json!({"type": "subscribe", "names": ["probe"]})
            .to_string()
            .into(),
    ))
    .unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        let m = ws.read().unwrap();
        if let tungstenite::Message::Text(t) = m {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            assert_eq!(v["type"], "record");
            got.push(v);
        }
    }
    let cards: Vec<String> = got
        .iter()
        .map(|v| v["record"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(cards.iter().collect::<HashSet<_>>().len(), 3);
    // Resume after the second record: only the third comes.
    let resume = got[1]["cursor"].as_u64().unwrap();
    let (mut ws2, _) = tungstenite::connect(format!("ws://127.0.0.1:{}/v1/ws", s.port)).unwrap();
    ws2.send(tungstenite::Message::Text(
        json!({"type": "subscribe", "names": ["probe"], "cursor": resume})
            .to_string()
            .into(),
    ))
    .unwrap();
    let first = loop {
        if let tungstenite::Message::Text(t) = ws2.read().unwrap() {
            break serde_json::from_str::<Value>(t.as_str()).unwrap();
        }
    };
    assert_eq!(first["record"]["id"], got[2]["record"]["id"]);
    // Live: a new match arrives on the open socket.
    post(
        &s,
        "/v1/streams/pay/events",
        &json!([
            ev("c9", 1.0, 200_000),
            ev("c9", 1.0, 200_001),
            ev("c9", 999.0, 200_002),
            ev("c9", 1.0, 300_000)
        ])
        .to_string(),
    );
    let live = loop {
        if let tungstenite::Message::Text(t) = ws2.read().unwrap() {
            break serde_json::from_str::<Value>(t.as_str()).unwrap();
        }
    };
    assert_eq!(live["record"]["fields"]["amount"], 999.0);
    // SSE from cursor = the second record's cursor: the third record comes first.
    let mut tcp = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(tcp, "GET /v1/outputs/stream?name=probe&cursor={resume} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n").unwrap();
    let mut r = BufReader::new(tcp);
    let mut datas = Vec::new();
    let mut line = String::new();
    while datas.len() < 2 {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0);
        if let Some(d) = line.trim_end().strip_prefix("data: ") {
            if let Ok(v) = serde_json::from_str::<Value>(d) {
                datas.push(v);
            }
        }
    }
    assert_eq!(datas[0]["id"], got[2]["record"]["id"]);
    assert_eq!(datas[1]["fields"]["amount"], 999.0);
}

/// Reads `n` SSE `data:` records from a raw HTTP request.
fn sse_records(port: u16, request: &str, n: usize) -> Vec<Value> {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(request.as_bytes()).unwrap();
    let mut r = BufReader::new(tcp);
    let mut datas = Vec::new();
    let mut line = String::new();
    while datas.len() < n {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0);
        if let Some(d) = line.trim_end().strip_prefix("data: ") {
            if let Ok(v) = serde_json::from_str::<Value>(d) {
                datas.push(v);
            }
        }
    }
    datas
}

#[test]
fn sse_resumes_from_last_event_id() {
    let d = tmpdir("sse");
    let s = with_rules(&d, &["--partitions", "1"]);
    let pos = three_matches(&s);
    let all = all_outputs(&s, &pos);
    let probes: Vec<&Value> = all.iter().filter(|r| r["rule"] == "probe").collect();
    assert_eq!(probes.len(), 3);
    // Everything from the start, then a reconnect that says it saw the first probe.
    let first = sse_records(
        s.port,
        "GET /v1/outputs/stream?name=probe HTTP/1.1\r\nHost: localhost\r\n\r\n",
        3,
    );
    assert_eq!(
        first.iter().map(|r| &r["id"]).collect::<Vec<_>>(),
        probes.iter().map(|r| &r["id"]).collect::<Vec<_>>()
    );
    // The first probe's cursor: its position among all outputs.
    let idx = all.iter().position(|r| r["id"] == probes[0]["id"]).unwrap();
    let req = format!(
        "GET /v1/outputs/stream?name=probe HTTP/1.1\r\nHost: localhost\r\nLast-Event-ID: {idx}\r\n\r\n"
    );
    let rest = sse_records(s.port, &req, 2);
    assert_eq!(rest[0]["id"], probes[1]["id"]);
    assert_eq!(rest[1]["id"], probes[2]["id"]);
}

/// Every event of a stream in the log, per partition in order (read from the files).
fn dump_log(data: &Path) -> Vec<Vec<Value>> {
    let log = weir_log::Log::open(data.join("log"), weir_log::LogConfig::default()).unwrap();
    let n = log.partitions("stream.pay").unwrap();
    (0..n)
        .map(|p| {
            let mut out = Vec::new();
            let mut at = 0;
            loop {
                let recs = log.read("stream.pay", p, at, 10_000, 64 << 20).unwrap();
                if recs.is_empty() {
                    break out;
                }
                for r in recs {
                    at = r.offset + 1;
                    // Idle ticks (watermarks of a quiet partition) are not events.
                    if !r.payload.starts_with(b"WT\x01") {
                        out.push(serde_json::from_slice(&r.payload).unwrap());
                    }
                }
            }
        })
        .collect()
}

fn sigterm(s: &mut Server) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(s.child.id().to_string())
        .status();
    // Shutdown checkpoints what the workers applied and stops (the rest is replayed at
    // the next start).
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        if let Ok(Some(st)) = s.child.try_wait() {
            assert!(st.success(), "graceful shutdown exits 0");
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no graceful shutdown");
}

fn flush_events() -> Vec<Value> {
    (0..16)
        .map(|i| ev(&format!("c{i}"), 1.0, 10_000_000))
        .collect()
}

/// Output records by id; asserts every id appears once.
fn by_id(recs: Vec<Value>) -> BTreeMap<String, Value> {
    let mut m = BTreeMap::new();
    for r in recs {
        let id = r["id"].as_str().unwrap().to_string();
        assert!(
            m.insert(id.clone(), r).is_none(),
            "output {id} appears twice"
        );
    }
    m
}

#[test]
fn crash_recovery_keeps_acknowledged_events_and_exactly_once_outputs() {
    let rounds = if std::env::var("WEIR_LONG_TESTS").is_ok() {
        20
    } else {
        3
    };
    let d = tmpdir("crash");
    let args = ["--partitions", "2", "--checkpoint-secs", "0.2"];
    let mut acked: HashSet<u64> = HashSet::new();
    let mut seq = 0u64;
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut rand = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    for _ in 0..rounds {
        let mut s = with_rules(&d, &args);
        let url = format!("{}/v1/streams/pay/events", s.base);
        let kill_after = Duration::from_millis(150 + rand(500));
        let t0 = Instant::now();
        // Ingest continuously from another thread; kill at a random moment.
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u64>>();
        let start_seq = seq;
        let h = std::thread::spawn(move || {
            let mut seq = start_seq;
            loop {
                let mut lines = String::new();
                let mut ids = Vec::new();
                for _ in 0..40 {
                    let card = format!("c{}", seq % 11);
                    let amount = if seq % 7 == 6 {
                        800.0
                    } else {
                        1.0 + (seq % 3) as f64
                    };
                    let e = json!({"card": card, "amount": amount, "ts": 1000 * seq as i64, "seq": seq});
                    lines.push_str(&e.to_string());
                    lines.push('\n');
                    ids.push(seq);
                    seq += 1;
                }
                let r = ureq::post(&url)
                    .set("Content-Type", "application/x-ndjson")
                    .timeout(Duration::from_secs(5))
                    .send_string(&lines);
                match r {
                    Ok(resp) if resp.status() == 200 => {
                        if tx.send(ids).is_err() {
                            return seq;
                        }
                    }
                    _ => return seq,
                }
            }
        });
        while t0.elapsed() < kill_after {
            std::thread::sleep(Duration::from_millis(10));
        }
        s.child.kill().unwrap();
        s.child.wait().unwrap();
        seq = h.join().unwrap() + 1000;
        for ids in rx.try_iter() {
            acked.extend(ids);
        }
    }
    assert!(!acked.is_empty());
    // Recover once more, then stop cleanly and look at the log files.
    let mut s = with_rules(&d, &args);
    sigterm(&mut s);
    drop(s);
    let log = dump_log(&d);
    let in_log: HashSet<u64> = log
        .iter()
        .flatten()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let missing: Vec<_> = acked.difference(&in_log).collect();
    assert!(missing.is_empty(), "acknowledged events lost: {missing:?}");
    // Outputs of the crashed service (after a final watermark move).
    let s = with_rules(&d, &args);
    let (_, v) = post(
        &s,
        "/v1/streams/pay/events",
        &Value::Array(flush_events()).to_string(),
    );
    let crashed = by_id(all_outputs(&s, v["position"].as_str().unwrap()));
    drop(s);
    // An uncrashed service fed the same log in the same per-partition order.
    let d2 = tmpdir("crash-ref");
    let r = with_rules(&d2, &args);
    for part in &log {
        for chunk in part.chunks(500) {
            let (st, _) = post(
                &r,
                "/v1/streams/pay/events",
                &Value::Array(chunk.to_vec()).to_string(),
            );
            assert_eq!(st, 200);
        }
    }
    let (_, v) = post(
        &r,
        "/v1/streams/pay/events",
        &Value::Array(flush_events()).to_string(),
    );
    let reference = by_id(all_outputs(&r, v["position"].as_str().unwrap()));
    assert!(reference.values().any(|x| x["rule"] == "probe"));
    assert!(reference.values().any(|x| x["metric"] == "per_card"));
    assert_eq!(crashed.len(), reference.len(), "same number of outputs");
    for (id, rec) in &reference {
        assert_eq!(crashed.get(id), Some(rec), "output {id}");
    }
}

/// A value of the Prometheus exposition (`/metrics`).
fn prom(s: &Server, name: &str) -> u64 {
    let (_, m) = get(s, "/metrics");
    m.as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics"))
}

#[test]
fn corrupt_tail_is_cut_and_the_service_starts() {
    let d = tmpdir("corrupt");
    let mut s = with_rules(&d, &["--partitions", "1"]);
    let pos = three_matches(&s);
    let before = by_id(all_outputs(&s, &pos));
    sigterm(&mut s);
    drop(s);
    // Garble the tail of the stream's segment and append junk to the outputs segment.
    for topic in ["stream.pay", "outputs"] {
        let dir = d.join("log/topics").join(topic).join("0");
        let mut segs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        segs.sort();
        let seg = segs.last().expect("a segment file").clone();
        let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[0xAB; 97]).unwrap();
    }
    let s = with_rules(&d, &["--partitions", "1"]);
    let after = by_id(all_outputs(&s, &pos));
    assert_eq!(before, after, "nothing garbled is served");
    // Issue 19, item 7: the cut bytes are kept in quarantine and counted.
    assert_eq!(prom(&s, "weir_log_quarantined_bytes"), 2 * 97);
    for topic in ["stream.pay", "outputs"] {
        let q = d.join("log/topics").join(topic).join("0/quarantine");
        let files: Vec<_> = std::fs::read_dir(&q).unwrap().collect();
        assert_eq!(files.len(), 1, "{q:?}");
        let kept = std::fs::read(files[0].as_ref().unwrap().path()).unwrap();
        assert_eq!(kept, [0xAB; 97]);
    }
    // And the service takes new writes.
    let (st, v) = post(
        &s,
        "/v1/streams/pay/events",
        &ev("z", 1.0, 200_000).to_string(),
    );
    assert_eq!((st, v["accepted"].clone()), (200, json!(1)));
    let mut buf = String::new();
    let _ = ureq::get(&format!("{}/healthz", s.base))
        .call()
        .unwrap()
        .into_reader()
        .read_to_string(&mut buf);
    assert!(buf.contains("ok"));
    let _ = &s.data;
}

#[test]
fn metric_open_windows_and_approx_set_membership() {
    let d = tmpdir("metrics");
    let s = start(&d, &["--partitions", "2"]);
    let (st, v) = post(
        &s,
        "/v1/statements",
        "CREATE STREAM logins (user STRING, ip STRING, ts TIMESTAMP) WITH (event_time = 'ts', key = 'user');
         CREATE METRIC ips AS SELECT user, COUNT(*) AS n, APPROX_SET(ip) AS seen
           FROM logins GROUP BY user WINDOW TUMBLING (SIZE 1 HOUR);",
    );
    assert_eq!(st, 200, "{v}");
    let evs = json!([
        {"user": "u1", "ip": "1.1.1.1", "ts": 1000},
        {"user": "u1", "ip": "2.2.2.2", "ts": 2000},
        {"user": "u2", "ip": "3.3.3.3", "ts": 3000},
    ]);
    let (_, v) = post(&s, "/v1/streams/logins/events", &evs.to_string());
    let pos = v["position"].as_str().unwrap().to_string();
    let (st, v) = get(&s, &format!("/v1/metrics/ips?group.user=u1&after={pos}"));
    assert_eq!(st, 200, "{v}");
    let w = v["windows"].as_array().unwrap();
    assert_eq!(w.len(), 1, "{v}");
    assert_eq!(w[0]["final"], false);
    assert_eq!(w[0]["values"]["n"], 2);
    assert_eq!(w[0]["group"]["user"], "u1");
    let ask = |user: &str, ip: &str| {
        let (st, v) = get(
            &s,
            &format!(
                "/v1/metrics/ips/contains?column=seen&value={ip}&group.user={user}&after={pos}"
            ),
        );
        assert_eq!(st, 200, "{v}");
        v["maybe"].as_bool().unwrap()
    };
    assert!(ask("u1", "1.1.1.1"));
    assert!(ask("u1", "2.2.2.2"));
    assert!(!ask("u1", "3.3.3.3"));
    assert!(ask("u2", "3.3.3.3"));
    assert_eq!(get(&s, "/v1/metrics/ips/contains?value=x").0, 400);
    assert_eq!(
        get(&s, "/v1/metrics/nope/contains?column=seen&value=x").0,
        404
    );
}

#[test]
fn statement_change_keeps_state_of_unchanged_statements() {
    let d = tmpdir("change");
    let s = with_rules(&d, &["--partitions", "1"]);
    // Two small payments: a partial match of `probe` is pending.
    let (st, _) = post(
        &s,
        "/v1/streams/pay/events",
        &json!([ev("c1", 1.0, 1000), ev("c1", 2.0, 2000)]).to_string(),
    );
    assert_eq!(st, 200);
    // Replace the metric (the rule is unchanged) and add a search.
    let (st, v) = post(
        &s,
        "/v1/statements",
        "CREATE OR REPLACE METRIC per_card AS SELECT card, COUNT(*) AS n FROM pay GROUP BY card WINDOW TUMBLING (SIZE 1 MINUTE);",
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["applied"][0]["action"], "replaced");
    // The big payment completes the match started before the change.
    let (_, v) = post(
        &s,
        "/v1/streams/pay/events",
        &json!([ev("c1", 900.0, 3000), ev("c1", 1.0, 200_000)]).to_string(),
    );
    let pos = v["position"].as_str().unwrap();
    let (_, v) = get(&s, &format!("/v1/outputs?name=probe&after={pos}"));
    assert_eq!(v["records"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["records"][0]["fields"]["n"], 2);
    // The replaced metric restarted: its first window holds only the events after the change.
    let (_, v) = get(
        &s,
        &format!("/v1/metrics/per_card?group.card=c1&after={pos}"),
    );
    let w = v["windows"].as_array().unwrap();
    let fresh: Vec<_> = w
        .iter()
        .filter(|x| x["values"].get("total").is_none())
        .collect();
    assert_eq!(fresh[0]["values"]["n"], 1, "{v}");
    let text = ureq::get(&format!("{}/metrics", s.base))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(text.contains("weir_states_reset_total 1"), "{text}");
    // After a restart (replay honours the change's position) the outputs are the same.
    let before = by_id(all_outputs(&s, pos));
    drop(s);
    let s = start(&d, &["--partitions", "1"]);
    assert_eq!(by_id(all_outputs(&s, pos)), before);
}

#[test]
fn config_file_and_environment() {
    let d = tmpdir("config");
    let cfg = d.join("weir.toml");
    std::fs::write(
        &cfg,
        "partitions = 3\ntoken = \"from-file\"\nmax_body_bytes = 2000\nmax_subscriptions = 1\n",
    )
    .unwrap();
    // The environment overrides the file; flags override both.
    let s = start_env(
        &d,
        &["--config", cfg.to_str().unwrap()],
        &[("WEIR_MAX_BODY_BYTES", "3000")],
    );
    let url = format!("{}/v1/statements", s.base);
    assert_eq!(
        call("POST", &url, None, Some(RULES.as_bytes()), None).0,
        401
    );
    assert_eq!(
        call(
            "POST",
            &url,
            None,
            Some(RULES.as_bytes()),
            Some("from-file")
        )
        .0,
        200
    );
    let text = ureq::get(&format!("{}/metrics", s.base))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        text.contains("weir_partition_lag_events{stream=\"pay\",partition=\"2\"}"),
        "{text}"
    );
    let ev_url = format!("{}/v1/streams/pay/events", s.base);
    let body = format!("[{}]", vec![ev("a", 1.0, 1).to_string(); 70].join(","));
    assert!(body.len() > 2000 && body.len() < 3000);
    assert_eq!(
        call(
            "POST",
            &ev_url,
            None,
            Some(body.as_bytes()),
            Some("from-file")
        )
        .0,
        200
    );
    // One live subscription at most: a second is refused with 503 + Retry-After.
    let (mut ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{}/v1/ws", s.port)).unwrap();
    ws.send(tungstenite::Message::Text(
        json!({"type": "subscribe"}).to_string().into(),
    ))
    .unwrap();
    let r = ureq::get(&format!("{}/v1/outputs/stream", s.base)).call();
    match r {
        Err(ureq::Error::Status(503, resp)) => assert_eq!(resp.header("Retry-After"), Some("1")),
        other => panic!("expected 503, got {other:?}"),
    }
    drop(ws);
    // A bad config file stops the start with an error.
    std::fs::write(&cfg, "partitions = \"many\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            cfg.to_str().unwrap(),
            "--data",
        ])
        .arg(&d)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid configuration"));
}

/// First text message of a WebSocket, as JSON.
fn ws_next(
    ws: &mut tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
) -> Value {
    loop {
        if let tungstenite::Message::Text(t) = ws.read().unwrap() {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

#[test]
fn subscribers_behind_retention_are_told_which_cursors_they_missed() {
    let d = tmpdir("missed");
    let cfg = d.join("weir.toml");
    // Tiny segments and retention so outputs are deleted after a few dozen records.
    std::fs::write(
        &cfg,
        "segment_bytes = 1024\nretention_bytes = 2048\nretention_check_secs = 0.1\n",
    )
    .unwrap();
    let s = with_rules(
        &d,
        &["--partitions", "1", "--config", cfg.to_str().unwrap()],
    );
    for round in 0..30i64 {
        let c = format!("r{round}");
        let t = round * 100_000;
        let (st, v) = post(
            &s,
            "/v1/streams/pay/events",
            &json!([ev(&c, 1.0, t + 1), ev(&c, 1.0, t + 2), ev(&c, 999.0, t + 3)]).to_string(),
        );
        assert_eq!(st, 200, "{v}");
        let pos = v["position"].as_str().unwrap();
        let (st, _) = get(
            &s,
            &format!("/v1/outputs?cursor=0&limit=1&after={pos}&wait_ms=10000"),
        );
        assert_eq!(st, 200);
    }
    // Retention runs in the background: wait until the oldest outputs are gone, then
    // until it has nothing more to delete (no ingest any more).
    let t0 = Instant::now();
    let to = loop {
        let (_, v) = get(&s, "/v1/outputs?cursor=0&limit=1");
        if let Some(to) = v["missed"]["to"].as_u64() {
            assert_eq!(v["missed"]["from"], 0, "{v}");
            break to;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "retention never deleted outputs: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(to > 0);
    std::thread::sleep(Duration::from_millis(500));
    let (_, v) = get(&s, "/v1/outputs?cursor=0&limit=1");
    let to = v["missed"]["to"].as_u64().unwrap();
    let first = v["records"][0].clone();
    assert!(first["id"].is_string(), "{v}");
    assert_eq!(
        v["cursor"],
        to + 1,
        "the first retained record is at cursor {to}: {v}"
    );
    // A long poll from a retained cursor has no `missed`.
    let (_, v) = get(&s, &format!("/v1/outputs?cursor={to}&limit=1"));
    assert!(v.get("missed").is_none(), "{v}");
    assert_eq!(v["records"][0]["id"], first["id"]);

    // WebSocket from cursor 0: a `missed` message, then the first retained record.
    let (mut ws, _) = tungstenite::connect(format!("ws://127.0.0.1:{}/v1/ws", s.port)).unwrap();
    ws.send(tungstenite::Message::Text(
        json!({"type": "subscribe", "cursor": 0}).to_string().into(),
    ))
    .unwrap();
    let m = ws_next(&mut ws);
    assert_eq!(m, json!({"type": "missed", "from": 0, "to": to}));
    let r = ws_next(&mut ws);
    assert_eq!(r["type"], "record");
    assert_eq!(r["cursor"], to + 1);
    assert_eq!(r["record"]["id"], first["id"]);
    // From a retained cursor: no `missed`, the record right away.
    let (mut ws2, _) = tungstenite::connect(format!("ws://127.0.0.1:{}/v1/ws", s.port)).unwrap();
    ws2.send(tungstenite::Message::Text(
        json!({"type": "subscribe", "cursor": to})
            .to_string()
            .into(),
    ))
    .unwrap();
    let r = ws_next(&mut ws2);
    assert_eq!(r["type"], "record", "{r}");
    assert_eq!(r["record"]["id"], first["id"]);

    // SSE from cursor 0: a `missed` event (`{"from","to"}`), then the first retained record.
    let mut tcp = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        tcp,
        "GET /v1/outputs/stream?cursor=0 HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .unwrap();
    let mut rd = BufReader::new(tcp);
    let mut events: Vec<(String, Value)> = Vec::new();
    let mut name = String::new();
    let mut line = String::new();
    while events.len() < 2 {
        line.clear();
        assert!(rd.read_line(&mut line).unwrap() > 0);
        let l = line.trim_end();
        if let Some(n) = l.strip_prefix("event: ") {
            name = n.to_string();
        } else if let Some(d) = l.strip_prefix("data: ") {
            events.push((std::mem::take(&mut name), serde_json::from_str(d).unwrap()));
        }
    }
    assert_eq!(
        events[0],
        ("missed".to_string(), json!({"from": 0, "to": to}))
    );
    assert_eq!(events[1].0, "record");
    assert_eq!(events[1].1["id"], first["id"]);
    drop(s);
    let _ = std::fs::remove_dir_all(&d);
}

/// The body hash the server keeps with an idempotency key (FNV-1a, length mixed in).
fn body_hash(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for x in b {
        h ^= *x as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h ^ (b.len() as u64).rotate_left(32)
}

fn post_keyed(s: &Server, key: &str, body: &str) -> (u16, Value, bool) {
    let r = ureq::post(&format!("{}/v1/streams/pay/events", s.base))
        .set("Content-Type", "application/x-ndjson")
        .set("Idempotency-Key", key)
        .send_string(body);
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let replayed = resp.header("Idempotent-Replayed") == Some("true");
    (resp.status(), resp.into_json().unwrap(), replayed)
}

fn seq_counts(d: &Path) -> BTreeMap<u64, usize> {
    let mut m = BTreeMap::new();
    for e in dump_log(d).iter().flatten() {
        if let Some(s) = e["seq"].as_u64() {
            *m.entry(s).or_insert(0) += 1;
        }
    }
    m
}

#[test]
fn idempotency_key_resumes_a_write_that_stopped_midway() {
    let d = tmpdir("idem");
    let mut s = with_rules(&d, &["--partitions", "1"]);
    let body: String = (0..10)
        .map(|i| {
            format!(
                "{}\n",
                json!({"card": "a", "amount": 1.0, "ts": i, "seq": i})
            )
        })
        .collect();
    sigterm(&mut s);
    drop(s);
    // What a crash midway leaves: the start record, and the first half of the events.
    {
        let log = weir_log::Log::open(d.join("log"), weir_log::LogConfig::default()).unwrap();
        let from = log.position("stream.pay").unwrap().encode();
        log.create_topic("requests", 1).unwrap();
        let rec = json!({"key": "k1", "hash": body_hash(body.as_bytes()), "stream": "pay",
            "state": "start", "from": from});
        log.append("requests", 0, &[rec.to_string().as_bytes()])
            .unwrap();
        let lines: Vec<&[u8]> = body.lines().take(5).map(str::as_bytes).collect();
        log.append("stream.pay", 0, &lines).unwrap();
    }
    let s = with_rules(&d, &["--partitions", "1"]);
    // The retry appends only the missing half.
    let (st, v, replayed) = post_keyed(&s, "k1", &body);
    assert_eq!(st, 200, "{v}");
    assert!(!replayed);
    assert_eq!(v["accepted"], 10);
    // A second retry is answered from the stored answer; nothing is appended.
    let (st, v2, replayed) = post_keyed(&s, "k1", &body);
    assert_eq!(st, 200);
    assert!(replayed);
    assert_eq!(v2, v);
    // The same key with another body is refused; a bad key too.
    let (st, v, _) = post_keyed(&s, "k1", "{\"card\":\"b\",\"amount\":1,\"ts\":1}\n");
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    let (st, _, _) = post_keyed(&s, &"x".repeat(300), &body);
    assert_eq!(st, 400);
    drop(s);
    let counts = seq_counts(&d);
    assert_eq!(counts.len(), 10, "{counts:?}");
    assert!(
        counts.values().all(|&n| n == 1),
        "each event once: {counts:?}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn idempotent_retries_across_crashes_store_every_event_once() {
    let rounds = if std::env::var("WEIR_LONG_TESTS").is_ok() {
        15
    } else {
        3
    };
    let d = tmpdir("idem-crash");
    let args = ["--partitions", "2", "--checkpoint-secs", "0.2"];
    let mut rng = 0x2545f4914f6cdd1du64;
    let mut rand = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let request = |n: u64| -> (String, String) {
        let body: String = (0..200)
            .map(|i| {
                let seq = n * 1000 + i;
                format!(
                    "{}\n",
                    json!({"card": format!("c{}", seq % 13), "amount": 1.0, "ts": seq, "seq": seq})
                )
            })
            .collect();
        (format!("req-{n}"), body)
    };
    let mut next = 0u64;
    let mut sent = 0u64;
    for _ in 0..rounds {
        let mut s = with_rules(&d, &args);
        // Retry the request in flight at the crash, and the last acknowledged one: both
        // must leave every event exactly once.
        for n in [next.saturating_sub(1), next] {
            if n < sent || (n == next && next < sent) {
                let (k, b) = request(n);
                let (st, v, _) = post_keyed(&s, &k, &b);
                assert_eq!(st, 200, "{v}");
            }
        }
        next = sent;
        let url = format!("{}/v1/streams/pay/events", s.base);
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        let start = next;
        let h = std::thread::spawn(move || {
            let mut n = start;
            loop {
                let (k, b) = request(n);
                // Announce the request before sending: it may be stored or not.
                if tx.send(n).is_err() {
                    return;
                }
                let r = ureq::post(&url)
                    .set("Content-Type", "application/x-ndjson")
                    .set("Idempotency-Key", &k)
                    .timeout(Duration::from_secs(5))
                    .send_string(&b);
                if !matches!(r, Ok(ref x) if x.status() == 200) {
                    return;
                }
                n += 1;
            }
        });
        std::thread::sleep(Duration::from_millis(100 + rand(400)));
        s.child.kill().unwrap();
        s.child.wait().unwrap();
        h.join().unwrap();
        // `sent` = one past the last request that may have been stored.
        if let Some(last) = rx.try_iter().last() {
            sent = last + 1;
            next = last;
        }
    }
    // Finish the last request, then every event of every request is there once.
    let mut s = with_rules(&d, &args);
    for n in [next.saturating_sub(1), next] {
        let (k, b) = request(n);
        let (st, v, _) = post_keyed(&s, &k, &b);
        assert_eq!(st, 200, "{v}");
    }
    sigterm(&mut s);
    drop(s);
    let counts = seq_counts(&d);
    let dups: Vec<_> = counts.iter().filter(|(_, &n)| n != 1).collect();
    assert!(
        dups.is_empty(),
        "{} events stored more than once, first: {:?}",
        dups.len(),
        dups.iter().take(5).collect::<Vec<_>>()
    );
    for n in 0..=next {
        for i in 0..200 {
            assert!(
                counts.contains_key(&(n * 1000 + i)),
                "event {} of request {n} missing",
                i
            );
        }
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn lagging_workers_make_ingest_answer_429_until_they_catch_up() {
    let d = tmpdir("lag");
    // Any unapplied event counts as too much lag.
    let s = with_rules(&d, &["--partitions", "1", "--max-lag", "0"]);
    let body: String = (0..5000)
        .map(|i| format!("{}\n", ev(&format!("c{}", i % 50), 1.0, i)))
        .collect();
    let url = format!("{}/v1/streams/pay/events", s.base);
    let mut throttled = None;
    let mut last_pos = String::new();
    for _ in 0..200 {
        let r = ureq::post(&url)
            .set("Content-Type", "application/x-ndjson")
            .send_string(&body);
        match r {
            Ok(r) => {
                let v: Value = r.into_json().unwrap();
                assert_eq!(v["accepted"], 5000);
                last_pos = v["position"].as_str().unwrap().to_string();
            }
            Err(ureq::Error::Status(429, r)) => {
                throttled = Some((
                    r.header("Retry-After").map(str::to_string),
                    r.into_json::<Value>().unwrap(),
                ));
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let (retry_after, v) = throttled.expect("a 429 while the workers were behind");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(v["error"]["code"], "backpressure", "{v}");
    let text = ureq::get(&format!("{}/metrics", s.base))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(text.contains("weir_requests_throttled_total 1"), "{text}");
    assert!(!last_pos.is_empty(), "the first write is accepted");
    // Once the workers have applied everything, writes are accepted again.
    let t0 = Instant::now();
    loop {
        let (st, v) = call(
            "POST",
            &url,
            Some("application/x-ndjson"),
            Some(body.as_bytes()),
            None,
        );
        if st == 200 {
            assert_eq!(v["accepted"], 5000);
            break;
        }
        assert_eq!(st, 429, "{v}");
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "never accepted again"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(s);
    let _ = std::fs::remove_dir_all(&d);
}

const REPART_RULES: &str = "
CREATE STREAM pay (card STRING, merchant STRING, amount FLOAT, ts TIMESTAMP)
  WITH (event_time = 'ts', max_delay = '1 hour', key = 'card');
CREATE RULE per_merchant AS FROM pay PARTITION BY merchant
  PATTERN (small{2,} big) WITHIN 1 MINUTE
  DEFINE small AS amount < 5, big AS amount > 500
  MEASURES COUNT(small.*) AS n, big.card AS card, big.amount AS amount;
CREATE RULE per_card AS FROM pay PARTITION BY card
  PATTERN (small big) WITHIN 1 MINUTE
  DEFINE small AS amount < 5, big AS amount > 500
  MEASURES big.amount AS amount;
CREATE METRIC merchant_sales AS SELECT merchant, COUNT(*) AS n, SUM(amount) AS total
  FROM pay GROUP BY merchant WINDOW TUMBLING (SIZE 10 SECONDS);
CREATE METRIC all_sales AS SELECT COUNT(*) AS n FROM pay WINDOW TUMBLING (SIZE 10 SECONDS);
";

/// Events of many cards (the stream's key) per merchant, distinct times.
fn repart_events(from: usize, n: usize) -> Vec<Value> {
    (from..from + n)
        .map(|i| {
            let amount = if i % 13 == 12 {
                900.0
            } else {
                1.0 + (i % 3) as f64
            };
            json!({"card": format!("c{}", (i * 7) % 60), "merchant": format!("m{}", i % 10),
                   "amount": amount, "ts": 1_000_000 + 100 * i as i64})
        })
        .collect()
}

/// Far-future events for many merchants and cards: every partition's watermark (and every
/// repartitioned partition's) passes the test's windows.
fn repart_flush() -> Vec<Value> {
    (0..64)
        .map(|i| {
            json!({"card": format!("c{i}"), "merchant": format!("f{i}"), "amount": 1.0,
                   "ts": 9_000_000 + i})
        })
        .collect()
}

/// Outputs without ids, comparable across runs: rule matches, and final windows that
/// start before the flush.
fn comparable(recs: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = recs
        .iter()
        .filter_map(|r| {
            if r.get("rule").is_some() {
                Some(json!([r["rule"], r["ts"], r["fields"]]).to_string())
            } else if r.get("metric").is_some()
                && r["final"] == true
                && r["window"]["start"].as_str().unwrap_or("") < "1970-01-01T01"
            {
                Some(json!([r["metric"], r["window"], r["group"], r["values"]]).to_string())
            } else {
                None
            }
        })
        .collect();
    v.sort();
    v
}

/// `weir run` (one engine, everything in one partition) over the same events.
fn run_reference(d: &Path, rules: &str, events: &[Value]) -> Vec<String> {
    let rf = d.join("ref.weir");
    std::fs::write(&rf, rules).unwrap();
    let input = d.join("ref.ndjson");
    let text: String = events.iter().map(|e| format!("{e}\n")).collect();
    std::fs::write(&input, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["run", "--rules", rf.to_str().unwrap(), "--input"])
        .arg(format!("pay={}", input.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    comparable(&recs)
}

/// A rule partitioned by `merchant` and metrics grouped by it (or by nothing) over a
/// stream keyed by `card`, on 4 partitions: the events are repartitioned, and the outputs
/// equal a one-partition `weir run` of the same events.
#[test]
fn statements_grouped_by_another_column_see_all_their_events() {
    let d = tmpdir("repart");
    let rules = d.join("rules.weir");
    std::fs::write(&rules, REPART_RULES).unwrap();
    let s = start(
        &d,
        &["--partitions", "4", "--rules", rules.to_str().unwrap()],
    );
    let mut events = repart_events(0, 600);
    for chunk in events.chunks(150) {
        let (st, v) = post(
            &s,
            "/v1/streams/pay/events",
            &Value::Array(chunk.to_vec()).to_string(),
        );
        assert_eq!(st, 200, "{v}");
    }
    let (st, v) = post(
        &s,
        "/v1/streams/pay/events",
        &Value::Array(repart_flush()).to_string(),
    );
    assert_eq!(st, 200, "{v}");
    // `after=` covers the repartitioned copies too: every output is there at once.
    let pos = v["position"].as_str().unwrap().to_string();
    let got = all_outputs(&s, &pos);
    by_id(got.clone());
    let got = comparable(&got);
    // The open window of a repartitioned metric's group is found in whichever partition
    // the group landed in.
    let (st, w) = get(
        &s,
        &format!("/v1/metrics/merchant_sales?group.merchant=f3&after={pos}"),
    );
    assert_eq!(st, 200, "{w}");
    let open: Vec<&Value> = w["windows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["final"] == false)
        .collect();
    assert_eq!(open.len(), 1, "{w}");
    assert_eq!(open[0]["values"]["n"], 1, "{w}");
    events.extend(repart_flush());
    let want = run_reference(&d, REPART_RULES, &events);
    assert!(want.iter().any(|x| x.contains("per_merchant")), "{want:?}");
    assert!(want.iter().any(|x| x.contains("merchant_sales")));
    assert!(want.iter().any(|x| x.contains("all_sales")));
    assert_eq!(got, want);
    let (_, m) = get(&s, "/metrics");
    let copies = m
        .as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("weir_repartition_copies_total "))
        .unwrap()
        .trim()
        .parse::<u64>()
        .unwrap();
    // Two repartitioned streams (by merchant, and one partition): two copies per event.
    assert_eq!(copies, 2 * events.len() as u64);
}

/// SIGKILL while events stream in, with repartitioned statements: after recovery every
/// output appears once (by id and by content), equal to a one-partition `weir run` of
/// the events in the log: copies written again by a replay are dropped.
#[test]
fn repartitioned_outputs_are_exactly_once_across_crashes() {
    let d = tmpdir("repart-crash");
    let rules = d.join("rules.weir");
    std::fs::write(&rules, REPART_RULES).unwrap();
    let args = [
        "--partitions",
        "4",
        "--checkpoint-secs",
        "0.2",
        "--rules",
        rules.to_str().unwrap(),
    ];
    let mut next = 0usize;
    for round in 0..3u64 {
        let mut s = start(&d, &args);
        let url = format!("{}/v1/streams/pay/events", s.base);
        let from = next;
        let h = std::thread::spawn(move || {
            let mut at = from;
            loop {
                let body = Value::Array(repart_events(at, 50)).to_string();
                let r = ureq::post(&url)
                    .set("Content-Type", "application/json")
                    .timeout(Duration::from_secs(5))
                    .send_string(&body);
                match r {
                    Ok(resp) if resp.status() == 200 => at += 50,
                    _ => return at,
                }
            }
        });
        std::thread::sleep(Duration::from_millis(200 + 150 * round));
        s.child.kill().unwrap();
        s.child.wait().unwrap();
        // Events of a request cut by the kill may be in the log or not; the next round
        // starts after them (times stay distinct).
        next = h.join().unwrap() + 50;
    }
    let s = start(&d, &args);
    let (st, v) = post(
        &s,
        "/v1/streams/pay/events",
        &Value::Array(repart_flush()).to_string(),
    );
    assert_eq!(st, 200, "{v}");
    let got = all_outputs(&s, v["position"].as_str().unwrap());
    by_id(got.clone());
    let got = comparable(&got);
    let (_, m) = get(&s, "/metrics");
    drop(s);
    let mut events: Vec<Value> = dump_log(&d).into_iter().flatten().collect();
    events.sort_by_key(|e| e["ts"].as_i64().unwrap());
    assert!(
        events.len() > 200,
        "only {} events were written",
        events.len()
    );
    let want = run_reference(&d, REPART_RULES, &events);
    assert!(want.iter().any(|x| x.contains("per_merchant")));
    assert_eq!(got, want);
    // The kills came while copies were being written: replays wrote some again.
    let dedup = m
        .as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("weir_repartition_copies_deduplicated_total "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap();
    assert!(
        dedup > 0,
        "no copy was written twice: the crashes tested nothing"
    );
}

/// A repartitioned rule added at run time sees the events written after it (not before),
/// like any statement; the copies' topic is created with it.
#[test]
fn a_repartitioned_rule_added_at_run_time() {
    let d = tmpdir("repart-runtime");
    let s = start(&d, &["--partitions", "4"]);
    let stream = "CREATE STREAM pay (card STRING, merchant STRING, amount FLOAT, ts TIMESTAMP)
      WITH (event_time = 'ts', key = 'card');";
    let (st, v) = post(&s, "/v1/statements", stream);
    assert_eq!(st, 200, "{v}");
    let seq = |m: &str, t0: i64| -> Vec<Value> {
        (0..3)
            .map(|k| {
                json!({"card": format!("{m}-c{k}"), "merchant": m,
                       "amount": if k == 2 { 900.0 } else { 1.0 }, "ts": t0 + k as i64})
            })
            .collect()
    };
    let (st, _) = post(
        &s,
        "/v1/streams/pay/events",
        &Value::Array(seq("before", 1000)).to_string(),
    );
    assert_eq!(st, 200);
    let rule = "CREATE RULE per_merchant AS FROM pay PARTITION BY merchant
      PATTERN (a b c) WITHIN 1 MINUTE
      DEFINE a AS amount < 5, b AS amount < 5, c AS amount > 500
      MEASURES c.card AS card;";
    let (st, v) = post(&s, "/v1/statements", rule);
    assert_eq!(st, 200, "{v}");
    assert!(v["warnings"].to_string().contains("re-keyed"), "{v}");
    let mut evs = seq("after", 2000);
    // Later events on many cards: every partition's watermark passes the sequence.
    evs.extend(
        (0..32).map(
            |i| json!({"card": format!("f{i}"), "merchant": "f", "amount": 1.0, "ts": 100_000}),
        ),
    );
    let (st, v) = post(&s, "/v1/streams/pay/events", &Value::Array(evs).to_string());
    assert_eq!(st, 200, "{v}");
    let outs = all_outputs(&s, v["position"].as_str().unwrap());
    let merchants: Vec<&str> = outs
        .iter()
        .filter(|r| r["rule"] == "per_merchant")
        .map(|r| r["fields"]["merchant"].as_str().unwrap())
        .collect();
    assert_eq!(merchants, vec!["after"], "{outs:?}");
    let (_, m) = get(&s, "/metrics");
    assert!(
        m.as_str()
            .unwrap()
            .contains("weir_partition_lag_events{stream=\"pay.by.merchant\",partition=\"3\"}"),
        "{m}"
    );
}

/// Copies of a dropped repartitioned rule that a lagging source partition appends after
/// the drop must not hold later statement changes back: nothing reads them any more.
#[test]
fn copies_after_a_dropped_repartitioned_rule_do_not_block_later_changes() {
    let d = tmpdir("repart-drop");
    let stream = "CREATE STREAM pay (card STRING, merchant STRING, amount FLOAT, ts TIMESTAMP)
      WITH (event_time = 'ts', key = 'card');";
    let rule = "CREATE RULE per_merchant AS FROM pay PARTITION BY merchant
      PATTERN (a) WITHIN 1 MINUTE DEFINE a AS amount > 500;";
    let evs = |t0: i64| -> String {
        Value::Array(
            (0..40)
                .map(|i| json!({"card": format!("c{i}"), "merchant": format!("m{}", i % 5), "amount": 900.0, "ts": t0 + i}))
                .collect(),
        )
        .to_string()
    };
    let mut s = start(&d, &["--partitions", "2"]);
    assert_eq!(
        post(&s, "/v1/statements", &format!("{stream}\n{rule}")).0,
        200
    );
    assert_eq!(post(&s, "/v1/streams/pay/events", &evs(1000)).0, 200);
    assert_eq!(post(&s, "/v1/statements", "DROP RULE per_merchant;").0, 200);
    sigterm(&mut s);
    drop(s);
    // What a source partition still running the old catalog would have done: one more
    // copy in the re-keyed topic, after the drop's position.
    {
        let log = weir_log::Log::open(d.join("log"), weir_log::LogConfig::default()).unwrap();
        let copy = {
            let mut v = b"WR\x01".to_vec();
            v.extend_from_slice(&0u32.to_le_bytes());
            v.extend_from_slice(&999u64.to_le_bytes());
            v.extend_from_slice(&0i64.to_le_bytes());
            v.extend_from_slice(br#"{"card":"late","merchant":"m1","amount":900.0,"ts":1500}"#);
            v
        };
        for p in 0..2 {
            log.append("stream.pay.by.merchant", p, &[copy.as_slice()])
                .unwrap();
        }
    }
    let s = start(&d, &["--partitions", "2"]);
    // A later change must take effect in every partition.
    let per_card = "CREATE RULE per_card AS FROM pay PARTITION BY card
      PATTERN (a) WITHIN 1 MINUTE DEFINE a AS amount > 500;";
    assert_eq!(post(&s, "/v1/statements", per_card).0, 200);
    let (st, v) = post(&s, "/v1/streams/pay/events", &evs(5000));
    assert_eq!(st, 200, "{v}");
    let outs = all_outputs(&s, v["position"].as_str().unwrap());
    let n = outs.iter().filter(|r| r["rule"] == "per_card").count();
    assert_eq!(n, 40, "{outs:?}");
}

/// Issue 19, item 4: float SUM/AVG were summed in arrival order, so `weir serve` (panes
/// merged as the watermark moved, events of two partitions interleaved into a global
/// metric) and `weir run` differed in the last bit. Sums are exact now: the same bits.
#[test]
fn serve_and_run_agree_bit_for_bit_on_float_sums() {
    const RULES: &str = "
CREATE STREAM pay (card STRING, amount FLOAT, ts TIMESTAMP)
  WITH (event_time = 'ts', max_delay = '1 second', key = 'card');
CREATE METRIC per_card AS SELECT card, SUM(amount) AS total, AVG(amount) AS mean
  FROM pay GROUP BY card WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE 2 SECONDS);
CREATE METRIC all_pay AS SELECT SUM(amount) AS total, AVG(amount) AS mean
  FROM pay WINDOW TUMBLING (SIZE 20 SECONDS);
";
    let d = tmpdir("exact-sums");
    let rules = d.join("rules.weir");
    std::fs::write(&rules, RULES).unwrap();
    let s = start(
        &d,
        &["--partitions", "2", "--rules", rules.to_str().unwrap()],
    );
    // Amounts with long binary expansions over many magnitudes: summation order shows.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut events: Vec<Value> = (0..3000)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let amount = (x % 1_000_000) as f64 / 3.0 * 10f64.powi((x % 7) as i32 - 3);
            ev(&format!("c{}", x % 5), amount, 1_000_000 + 37 * i as i64)
        })
        .collect();
    events.extend((0..16).map(|i| ev(&format!("c{i}"), 0.5, 9_000_000 + i)));
    let mut pos = String::new();
    for chunk in events.chunks(97) {
        let (st, v) = post(
            &s,
            "/v1/streams/pay/events",
            &Value::Array(chunk.to_vec()).to_string(),
        );
        assert_eq!(st, 200, "{v}");
        pos = v["position"].as_str().unwrap().to_string();
    }
    let got = comparable(&all_outputs(&s, &pos));
    let want = run_reference(&d, RULES, &events);
    assert!(want.iter().any(|x| x.contains("all_pay")), "{want:?}");
    assert!(want.len() > 50, "{}", want.len());
    assert_eq!(got, want);
}

/// Issue 19, item 1: ingest, SIGTERM (a final checkpoint covers everything), cut the tail
/// of the stream's segment (as a torn write under `fsync = interval` could), restart,
/// ingest more: every new event is processed — none is skipped as "covered", none of its
/// outputs dropped as a duplicate — and lag, `after=` and `/readyz` tell the truth.
#[test]
fn checkpoint_ahead_of_a_cut_log_skips_no_new_event() {
    const RULES: &str = "
CREATE STREAM pay (card STRING, amount FLOAT, ts TIMESTAMP)
  WITH (event_time = 'ts', max_delay = '1 second', key = 'card');
CREATE METRIC hourly AS SELECT COUNT(*) AS n, SUM(amount) AS total
  FROM pay WINDOW TUMBLING (SIZE 1 HOUR);
CREATE RULE big AS FROM pay PARTITION BY card
  PATTERN (b) DEFINE b AS amount > 100 MEASURES b.amount AS amount;
";
    let d = tmpdir("ckpt-ahead");
    let rules = d.join("rules.weir");
    std::fs::write(&rules, RULES).unwrap();
    let args = [
        "--partitions",
        "1",
        "--rules",
        rules.to_str().unwrap(),
        "--fsync",
        "interval:50",
    ];
    let mut s = start(&d, &args);
    let batch = |from: i64, n: i64, ts0: i64| -> Vec<Value> {
        (from..from + n)
            .map(|i| ev(&format!("c{}", i % 7), 101.0 + (i % 3) as f64, ts0 + i))
            .collect()
    };
    let mut pos = String::new();
    for k in 0..20 {
        let (st, v) = post(
            &s,
            "/v1/streams/pay/events",
            &Value::Array(batch(k * 100, 100, 1_000)).to_string(),
        );
        assert_eq!(st, 200, "{v}");
        pos = v["position"].as_str().unwrap().to_string();
    }
    // Applied (and so covered by the checkpoint SIGTERM writes).
    assert_eq!(get(&s, &format!("/v1/metrics/hourly?after={pos}")).0, 200);
    sigterm(&mut s);
    drop(s);
    let seg_dir = d.join("log/topics/stream.pay/0");
    let mut segs: Vec<_> = std::fs::read_dir(&seg_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segs.sort();
    let seg = segs.last().unwrap().clone();
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len * 7 / 10)
        .unwrap();
    let s = start(&d, &args);
    assert!(
        prom(&s, "weir_log_lost_offsets_filled_total") > 0,
        "the cut made the checkpoint run ahead of the log"
    );
    // 1,000 new events in hour 5, each a `big` match.
    for k in 0..10 {
        let (st, v) = post(
            &s,
            "/v1/streams/pay/events",
            &Value::Array(batch(k * 100, 100, 5 * 3_600_000)).to_string(),
        );
        assert_eq!(st, 200, "{v}");
    }
    // A later event moves the watermark past them (the rule's matches are released).
    let (st, v) = post(
        &s,
        "/v1/streams/pay/events",
        &ev("flush", 1.0, 7 * 3_600_000).to_string(),
    );
    assert_eq!(st, 200, "{v}");
    let pos = v["position"].as_str().unwrap().to_string();
    let (st, w) = get(&s, &format!("/v1/metrics/hourly?after={pos}&wait_ms=20000"));
    assert_eq!(st, 200, "{w}");
    let open: Vec<&Value> = w["windows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["window"]["start"] == "1970-01-01T05:00:00.000Z")
        .collect();
    assert_eq!(open.len(), 1, "{w}");
    assert_eq!(open[0]["values"]["n"], 1000, "every new event counted: {w}");
    let got = all_outputs(&s, &pos);
    let new_matches = got
        .iter()
        .filter(|r| {
            r["rule"] == "big"
                && r["ts"].as_str().unwrap_or("") >= "1970-01-01T05"
                && r["ts"].as_str().unwrap_or("") < "1970-01-01T06"
        })
        .count();
    assert_eq!(
        new_matches,
        1000,
        "no new output dropped as a duplicate: {:?}",
        got.last()
    );
    let (_, m) = get(&s, "/metrics");
    assert!(
        m.as_str()
            .unwrap()
            .contains("weir_partition_lag_events{stream=\"pay\",partition=\"0\"} 0"),
        "{m}"
    );
    assert_eq!(get(&s, "/readyz").0, 200);
}

fn chattr(p: &Path, flag: &str) -> bool {
    Command::new("chattr")
        .arg(flag)
        .arg(p)
        .status()
        .is_ok_and(|s| s.success())
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

/// Waits until `/readyz` answers `want`.
fn wait_ready_status(s: &Server, want: u16, limit: Duration) {
    let t0 = Instant::now();
    loop {
        let (st, v) = get(s, "/readyz");
        if st == want {
            return;
        }
        assert!(t0.elapsed() < limit, "/readyz stays {st}: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const BIG_RULES: &str = "
CREATE STREAM pay (card STRING, amount FLOAT, ts TIMESTAMP)
  WITH (event_time = 'ts', max_delay = '1 second', key = 'card');
CREATE RULE big AS FROM pay PARTITION BY card
  PATTERN (b) DEFINE b AS amount > 100 MEASURES b.amount AS amount;
";

fn big_events(from: i64, n: i64) -> Value {
    Value::Array(
        (from..from + n)
            .map(|i| ev(&format!("c{}", i % 5), 200.0, 1_000 + 100 * i))
            .collect(),
    )
}

/// A `weir serve` with `BIG_RULES`, 50 events applied, and its outputs segment made
/// immutable (`chattr +i`): (server, that file, the server's arguments); None (the test
/// is skipped) where `chattr +i` is not permitted.
fn server_with_an_outputs_file_to_freeze(name: &str) -> Option<(Server, PathBuf, Vec<String>)> {
    let d = tmpdir(name);
    let rules = d.join("rules.weir");
    std::fs::write(&rules, BIG_RULES).unwrap();
    let args: Vec<String> = ["--partitions", "1", "--rules", rules.to_str().unwrap()]
        .iter()
        .map(|a| a.to_string())
        .collect();
    let s = start(&d, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let (st, v) = post(&s, "/v1/streams/pay/events", &big_events(0, 50).to_string());
    assert_eq!(st, 200, "{v}");
    let pos = v["position"].as_str().unwrap().to_string();
    // The watermark (newest ts - 1 s) releases the earlier matches.
    assert!(!all_outputs(&s, &pos).is_empty());
    let seg = last_segment(&d.join("log/topics/outputs/0"));
    if !chattr(&seg, "+i") {
        eprintln!("chattr +i not available here; skipped");
        return None;
    }
    Some((s, seg, args))
}

/// Issue 19, item 2: the outputs segment made immutable for a moment (`chattr +i`, a
/// real write error): `/readyz` answers 503 while the outputs partition is failed, the
/// log reopens it by itself once the file is writable again (no restart), every output
/// appears once, and SIGTERM finishes.
#[test]
fn short_write_error_recovers_without_restart() {
    let Some((mut s, seg, _)) = server_with_an_outputs_file_to_freeze("eio") else {
        return;
    };
    let (st, v) = post(
        &s,
        "/v1/streams/pay/events",
        &big_events(50, 50).to_string(),
    );
    let failed = {
        let t0 = Instant::now();
        loop {
            let (rs, rv) = get(&s, "/readyz");
            if rs == 503 || t0.elapsed() > Duration::from_secs(10) {
                break (rs, rv);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    assert!(chattr(&seg, "-i"));
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        failed.0, 503,
        "readyz while the outputs partition is failed"
    );
    assert_eq!(failed.1["error"]["code"], "log_failed", "{}", failed.1);
    wait_ready_status(&s, 200, Duration::from_secs(15));
    let (st, v) = post(
        &s,
        "/v1/streams/pay/events",
        &ev("flush", 1.0, 1_000_000).to_string(),
    );
    assert_eq!(st, 200, "{v}");
    let pos = v["position"].as_str().unwrap().to_string();
    let got = all_outputs(&s, &pos);
    let ids: HashSet<&str> = got.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), got.len(), "no duplicate output");
    assert_eq!(got.iter().filter(|r| r["rule"] == "big").count(), 100);
    assert_eq!(prom(&s, "weir_log_failed_partitions"), 0);
    sigterm(&mut s);
}

/// SIGTERM while the outputs segment is still immutable finishes (the worker stops
/// without a checkpoint), and the next start re-derives what was not written.
#[test]
fn shutdown_with_a_failed_disk_finishes_and_the_next_start_replays() {
    let Some((mut s, seg, args)) = server_with_an_outputs_file_to_freeze("eio-stop") else {
        return;
    };
    let (st, _) = post(
        &s,
        "/v1/streams/pay/events",
        &big_events(50, 50).to_string(),
    );
    let (st2, _) = post(
        &s,
        "/v1/streams/pay/events",
        &ev("flush", 1.0, 1_000_000).to_string(),
    );
    wait_ready_status(&s, 503, Duration::from_secs(10));
    let t0 = Instant::now();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(s.child.id().to_string())
        .status();
    let done = loop {
        if let Ok(Some(st)) = s.child.try_wait() {
            break Some(st);
        }
        if t0.elapsed() > Duration::from_secs(20) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(chattr(&seg, "-i"));
    assert_eq!((st, st2), (200, 200));
    assert!(done.is_some(), "SIGTERM did not finish with a failed disk");
    let d = s.data.clone();
    drop(s);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = start(&d, &args);
    let got = all_outputs(&s, "");
    let ids: HashSet<&str> = got.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), got.len(), "no duplicate output");
    assert_eq!(got.iter().filter(|r| r["rule"] == "big").count(), 100);
}

/// A raw HTTP/1.1 request; returns the status code.
fn raw_status(s: &Server, request: &str) -> u16 {
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(request.as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(c).read_line(&mut line).unwrap();
    line.split_whitespace()
        .nth(1)
        .and_then(|x| x.parse().ok())
        .unwrap_or(0)
}

/// Issue 19, item 3: with no token (the default) a web page could change statements
/// (`text/plain` needs no CORS preflight), open the WebSocket, or reach the service
/// through a DNS name it controls. Requests with a foreign `Origin` or `Host` are refused
/// now (403); curl without `Origin` keeps working; `--allow-origin`/`--allow-host` open it.
#[test]
fn cross_site_requests_are_refused() {
    let d = tmpdir("origin");
    let s = with_rules(
        &d,
        &[
            "--allow-origin",
            "https://console.example",
            "--allow-host",
            "weir.internal",
        ],
    );
    let url = format!("{}/v1/statements", s.base);
    let send = |headers: &[(&str, &str)], body: &str| -> (u16, Value) {
        let mut r = ureq::post(&url).set("Content-Type", "text/plain");
        for (k, v) in headers {
            r = r.set(k, v);
        }
        match r.send_string(body) {
            Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
            Err(ureq::Error::Status(c, r)) => (c, r.into_json().unwrap_or(Value::Null)),
            Err(e) => panic!("{e}"),
        }
    };
    let (st, v) = send(&[("Origin", "http://evil.example")], "DROP RULE probe;");
    assert_eq!(st, 403, "{v}");
    assert_eq!(v["error"]["code"], "origin_refused", "{v}");
    let (st, v) = send(&[("Host", "evil.example")], "DROP RULE probe;");
    assert_eq!(st, 403, "{v}");
    assert_eq!(v["error"]["code"], "host_refused", "{v}");
    let (st, v) = get(&s, "/v1/statements");
    assert_eq!(st, 200);
    assert!(v.to_string().contains("probe"), "nothing was dropped: {v}");
    // The WebSocket refuses a foreign origin before upgrading.
    let ws = |origin: &str| {
        raw_status(
            &s,
            &format!(
                "GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: {origin}\r\n\r\n",
                s.port
            ),
        )
    };
    assert_eq!(ws("http://evil.example"), 403);
    assert_eq!(ws(&format!("http://127.0.0.1:{}", s.port)), 101);
    // Its own origin, an allowed origin, an allowed host, and curl without Origin pass.
    let own = format!("http://127.0.0.1:{}", s.port);
    assert_eq!(send(&[("Origin", &own)], "CREATE STREAM a (x INT);").0, 200);
    assert_eq!(
        send(
            &[("Origin", "https://console.example")],
            "CREATE STREAM b (x INT);"
        )
        .0,
        200
    );
    assert_eq!(
        send(&[("Host", "weir.internal:80")], "CREATE STREAM c (x INT);").0,
        200
    );
    assert_eq!(send(&[], "CREATE STREAM e (x INT);").0, 200);
    assert_eq!(
        raw_status(&s, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        200
    );
}

/// Issue 19, item 7: an invalid stream name answers 400 (was 500); the JSON nesting limit
/// is the documented one (127 levels accepted, 128 refused); NDJSON sent without its
/// content type gets a hint.
#[test]
fn invalid_names_nesting_limit_and_ndjson_hint() {
    let d = tmpdir("small-fixes");
    let s = start(&d, &["--partitions", "1"]);
    let (st, v) = post(&s, "/v1/statements", r#"CREATE STREAM "../x" (a INT);"#);
    assert_eq!(st, 400, "{v}");
    assert_eq!(v["error"]["code"], "invalid_name", "{v}");
    let (st, v) = post(&s, "/v1/statements", "CREATE STREAM t (a INT);");
    assert_eq!(st, 200, "{v}");
    let nested = |depth: usize| {
        format!(
            r#"{{"a": 1, "deep": {}1{}}}"#,
            "[".repeat(depth - 1),
            "]".repeat(depth - 1)
        )
    };
    let (st, v) = post(&s, "/v1/streams/t/events", &nested(127));
    assert_eq!(st, 200, "127 levels are accepted: {v}");
    let (st, v) = post(&s, "/v1/streams/t/events", &nested(128));
    assert_eq!(st, 400, "128 levels are refused: {v}");
    let (st, v) = post(&s, "/v1/streams/t/events", "{\"a\": 1}\n{\"a\": 2}\n");
    assert_eq!(st, 400, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("application/x-ndjson"), "{msg}");
}

/// Issue 19, item 6: SIGTERM with a backlog does not wait for it to drain (was 159 s for
/// 900k events): the workers checkpoint what they applied and stop; the next start
/// replays the rest, and every event is applied exactly once.
#[test]
fn shutdown_with_a_backlog_is_bounded() {
    const RULES: &str = "
CREATE STREAM pay (card STRING, amount FLOAT, ts TIMESTAMP)
  WITH (event_time = 'ts', max_delay = '1 second', key = 'card');
CREATE METRIC total AS SELECT COUNT(*) AS n FROM pay WINDOW TUMBLING (SIZE 1 HOUR);
";
    let d = tmpdir("stop-backlog");
    let rules = d.join("rules.weir");
    std::fs::write(&rules, RULES).unwrap();
    let args = [
        "--partitions",
        "1",
        "--rules",
        rules.to_str().unwrap(),
        "--fsync",
        "never",
    ];
    let mut s = start(&d, &args);
    let n_posts = 40;
    let per = 5_000;
    for k in 0..n_posts {
        let body: String = (0..per)
            .map(|i| {
                format!(
                    "{}\n",
                    ev(&format!("c{}", i % 50), 1.0, 1_000 + k * per + i)
                )
            })
            .collect();
        let (st, v) = call(
            "POST",
            &format!("{}/v1/streams/pay/events", s.base),
            Some("application/x-ndjson"),
            Some(body.as_bytes()),
            None,
        );
        assert_eq!(st, 200, "{v}");
    }
    let t0 = Instant::now();
    sigterm(&mut s);
    let took = t0.elapsed();
    drop(s);
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
    let s = start(&d, &args);
    let (st, v) = post(
        &s,
        "/v1/streams/pay/events",
        &ev("flush", 1.0, 10 * 3_600_000).to_string(),
    );
    assert_eq!(st, 200, "{v}");
    let pos = v["position"].as_str().unwrap().to_string();
    let (st, w) = get(&s, &format!("/v1/metrics/total?after={pos}&wait_ms=60000"));
    assert_eq!(st, 200, "{w}");
    let closed: Vec<&Value> = w["windows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["final"] == true)
        .collect();
    assert_eq!(closed.len(), 1, "{w}");
    assert_eq!(closed[0]["values"]["n"], n_posts * per, "{w}");
}

/// Issue 19, item 5 (slowloris): half-sent requests were kept open indefinitely. Now a
/// request's headers must arrive within the header timeout, and one client may hold only
/// so many connections; the service keeps answering.
#[test]
fn slowloris_connections_are_cut_and_limited() {
    let d = tmpdir("slowloris");
    let s = start(
        &d,
        &[
            "--partitions",
            "1",
            "--header-timeout-secs",
            "1",
            "--max-connections-per-client",
            "20",
        ],
    );
    let t0 = Instant::now();
    let mut conns: Vec<TcpStream> = (0..30)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
            let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ");
            c
        })
        .collect();
    // Every one of them is closed by the service: the 10 over the limit at once, the
    // others when their headers did not come within the timeout.
    let mut closed_at = Vec::new();
    for c in conns.iter_mut() {
        let mut buf = [0u8; 512];
        loop {
            match c.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("a half-sent request stayed open: {e}"),
            }
        }
        closed_at.push(t0.elapsed());
    }
    assert!(
        closed_at.iter().all(|t| *t < Duration::from_secs(6)),
        "{closed_at:?}"
    );
    // Slots are given back: the service answers again.
    let (st, _) = get(&s, "/healthz");
    assert_eq!(st, 200);
}

/// Issue 19, item 7: what the rule matcher drops or refuses at its limits is exported
/// (`weir_rule_partial_matches_dropped_total`, `weir_rule_starts_refused_total`).
#[test]
fn rule_limit_counters_are_exported() {
    const RULES: &str = "
CREATE STREAM pay (card STRING, amount FLOAT, ts TIMESTAMP)
  WITH (event_time = 'ts', max_delay = '1 second', key = 'card');
CREATE RULE never AS FROM pay PARTITION BY card
  PATTERN (a x* b) DEFINE a AS amount > 0, x AS amount > 0, b AS amount < 0
  MEASURES a.amount AS amount;
";
    let d = tmpdir("rule-limits");
    let rules = d.join("rules.weir");
    std::fs::write(&rules, RULES).unwrap();
    let s = start(
        &d,
        &["--partitions", "1", "--rules", rules.to_str().unwrap()],
    );
    // One key, 10,100 open partial matches: past the per-key cap of 10,000 (slow in a
    // debug build on a busy machine: the count is checked with WEIR_LONG_TESTS=1; by
    // default the series must be there).
    let long = std::env::var("WEIR_LONG_TESTS").is_ok();
    let n = if long { 10_100 } else { 100 };
    let body: String = (0..n)
        .map(|i| format!("{}\n", ev("k", 1.0, 1_000 + i)))
        .collect();
    let (st, v) = call(
        "POST",
        &format!("{}/v1/streams/pay/events", s.base),
        Some("application/x-ndjson"),
        Some(body.as_bytes()),
        None,
    );
    assert_eq!(st, 200, "{v}");
    let t0 = Instant::now();
    loop {
        let (_, m) = get(&s, "/metrics");
        let text = m.as_str().unwrap().to_string();
        let dropped = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("weir_rule_partial_matches_dropped_total{stream=\"pay\"} ")
            })
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if dropped > 0
            || (!long && text.contains("weir_rule_partial_matches_dropped_total{stream=\"pay\"}"))
        {
            assert!(
                text.contains("weir_rule_starts_refused_total{stream=\"pay\"} 0"),
                "{text}"
            );
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "never exported: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
