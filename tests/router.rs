//! The HTTP API driven in-process: `serve::routes::app` over a real embedded log in a
//! temporary folder, requests sent with `tower::ServiceExt::oneshot` (axum's
//! `examples/testing`). The error answers (400/401/404/413/422/429) are checked here;
//! tests that need a process (crashes, signals) spawn the binary (`tests/serve.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};
use server::serve::{self, state::Settings, App};
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use tower::ServiceExt;
use weir_log::LogConfig;

/// A service over a fresh log; workers run unless `workers` is false.
struct Svc {
    app: App,
    handles: Vec<JoinHandle<()>>,
    dir: std::sync::Arc<tempfile::TempDir>,
}

impl Svc {
    fn new(settings: Settings, workers: bool) -> Svc {
        let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
        Svc::open(dir, settings, LogConfig::default(), workers)
    }

    /// The service over the log in `dir` (a restart when another ran there before).
    fn open(
        dir: std::sync::Arc<tempfile::TempDir>,
        settings: Settings,
        log: LogConfig,
        workers: bool,
    ) -> Svc {
        let (app, ws) = serve::open(dir.path(), log, settings).unwrap();
        let handles = if workers {
            serve::start_workers(&app.shared, ws)
        } else {
            Vec::new()
        };
        Svc { app, handles, dir }
    }

    /// Stops as `weir serve` does on SIGTERM (workers finish, checkpoint and return);
    /// panics if that takes longer than `limit`.
    fn stop(mut self, limit: std::time::Duration) -> std::sync::Arc<tempfile::TempDir> {
        self.app.shutdown.store(true, Ordering::SeqCst);
        self.app.wake_workers();
        let t0 = std::time::Instant::now();
        for h in self.handles.drain(..) {
            while !h.is_finished() {
                assert!(
                    t0.elapsed() < limit,
                    "the workers did not stop within {limit:?}"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let _ = h.join();
        }
        self.app.log.sync().unwrap();
        self.dir.clone()
    }

    async fn call(&self, req: Request<Body>) -> (StatusCode, Value, axum::http::HeaderMap) {
        let r = serve::routes::app(self.app.clone())
            .oneshot(req)
            .await
            .unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, v, headers)
    }

    async fn post(&self, path: &str, body: &str) -> (StatusCode, Value) {
        let (s, v, _) = self
            .call(
                Request::post(path)
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            )
            .await;
        (s, v)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (s, v, _) = self
            .call(Request::get(path).body(Body::empty()).unwrap())
            .await;
        (s, v)
    }
}

impl Drop for Svc {
    fn drop(&mut self) {
        self.app.shutdown.store(true, Ordering::SeqCst);
        self.app.wake_workers();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

const STREAM: &str = "CREATE STREAM tx (card STRING, amount FLOAT, ts TIMESTAMP) WITH (event_time = 'ts', key = 'card');";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_answer_400_with_what_is_wrong() {
    let s = Svc::new(Settings::default(), true);
    let (st, v) = s.post("/v1/statements", "CREATE STREAM (;").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(code(&v), "invalid_statement");
    assert!(v["error"]["errors"][0]["line"].is_number(), "{v}");
    let (st, v) = s.post("/v1/statements", STREAM).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s.post("/v1/streams/tx/events", "{not json").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(code(&v), "invalid_json");
    let (st, v) = s.post("/v1/streams/tx/events", "42").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(code(&v), "invalid_event");
    let (st, v) = s.get("/v1/outputs?limit=many").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(code(&v), "invalid_parameter");
    let (st, v) = s.get("/v1/outputs?after=garbage").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(code(&v), "invalid_position");
    // An event of the wrong type is answered 200 with the event listed as rejected.
    let (st, v) = s
        .post(
            "/v1/streams/tx/events",
            r#"[{"card":"a","amount":"x","ts":1}, {"card":"a","amount":1.0,"ts":2}]"#,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["accepted"], 1);
    assert_eq!(v["rejected"][0]["index"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_need_the_token_when_one_is_set() {
    let s = Svc::new(
        Settings {
            token: Some("sekrit".into()),
            ..Settings::default()
        },
        true,
    );
    let (st, v) = s.post("/v1/statements", STREAM).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(code(&v), "unauthorized");
    let (st, _, _) = s
        .call(
            Request::post("/v1/statements")
                .header(header::AUTHORIZATION, "Bearer wrong!")
                .body(Body::from(STREAM))
                .unwrap(),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, v, _) = s
        .call(
            Request::post("/v1/statements")
                .header(header::AUTHORIZATION, "Bearer sekrit")
                .body(Body::from(STREAM))
                .unwrap(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s.post("/v1/streams/tx/events", "{}").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    // Reads stay open.
    let (st, _) = s.get("/v1/statements").await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_things_answer_404_with_what_exists() {
    let s = Svc::new(Settings::default(), true);
    s.post("/v1/statements", STREAM).await;
    let (st, v) = s.post("/v1/streams/nope/events", "{}").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(code(&v), "unknown_stream");
    assert_eq!(v["error"]["known_streams"], json!(["tx"]));
    let (st, v) = s.get("/v1/statements/nope").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(code(&v), "unknown_statement");
    let (st, v) = s.get("/v1/metrics/nope").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(code(&v), "unknown_metric");
    let (st, v) = s.get("/v2/anything").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(code(&v), "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_answer_413() {
    let s = Svc::new(
        Settings {
            max_body_bytes: 1000,
            max_statement_bytes: 200,
            ..Settings::default()
        },
        true,
    );
    let (st, v) = s.post("/v1/statements", STREAM).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let big = format!(
        "[{}]",
        vec![r#"{"card":"a","amount":1,"ts":1}"#; 100].join(",")
    );
    let (st, v) = s.post("/v1/streams/tx/events", &big).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(code(&v), "body_too_large");
    assert_eq!(v["error"]["limit"], 1000);
    let long = format!("{STREAM} -- {}", "x".repeat(300));
    let (st, v) = s.post("/v1/statements", &long).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(code(&v), "statement_too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_idempotency_key_with_another_body_answers_422() {
    let s = Svc::new(Settings::default(), true);
    s.post("/v1/statements", STREAM).await;
    let keyed = |body: &'static str| {
        Request::post("/v1/streams/tx/events")
            .header("idempotency-key", "k-1")
            .body(Body::from(body))
            .unwrap()
    };
    let (st, v, h) = s.call(keyed(r#"{"card":"a","amount":1,"ts":1}"#)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(h.get("idempotent-replayed").is_none());
    let (st, v, h) = s.call(keyed(r#"{"card":"a","amount":1,"ts":1}"#)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(h.get("idempotent-replayed").unwrap(), "true");
    let (st, v, _) = s.call(keyed(r#"{"card":"b","amount":1,"ts":1}"#)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(code(&v), "idempotency_key_reused");
    let (st, v, _) = s
        .call(
            Request::post("/v1/streams/tx/events")
                .header("idempotency-key", "has space")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(code(&v), "invalid_idempotency_key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_answers_429_when_the_workers_are_behind() {
    // No workers run: every appended event stays unapplied.
    let s = Svc::new(
        Settings {
            max_lag: 3,
            partitions: 1,
            ..Settings::default()
        },
        false,
    );
    let (st, v) = s.post("/v1/statements", STREAM).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let four = r#"[{"card":"a","amount":1,"ts":1},{"card":"a","amount":1,"ts":2},{"card":"a","amount":1,"ts":3},{"card":"a","amount":1,"ts":4}]"#;
    let (st, v) = s.post("/v1/streams/tx/events", four).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v, h) = s
        .call(
            Request::post("/v1/streams/tx/events")
                .body(Body::from(r#"{"card":"a","amount":1,"ts":5}"#))
                .unwrap(),
        )
        .await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(code(&v), "backpressure");
    assert_eq!(h.get(header::RETRY_AFTER).unwrap(), "1");
    let (_, m) = s.get("/metrics").await;
    let m = m.as_str().unwrap().to_string();
    assert!(m.contains("weir_requests_throttled_total 1"), "{m}");
}

/// `after=` waits for the workers to apply what a write returned.
async fn applied(s: &Svc, position: &Value) {
    let p = position.as_str().unwrap();
    let (st, v) = s.get(&format!("/v1/outputs?after={p}&limit=1")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_stats_count_events_and_outputs() {
    let s = Svc::new(
        Settings {
            partitions: 2,
            ..Settings::default()
        },
        true,
    );
    let (st, v) = s
        .post(
            "/v1/statements",
            &format!(
                "{STREAM} CREATE SEARCH big AS FROM tx WHERE amount > 10 AND card MATCHES 'c*';"
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let events: Vec<Value> = (0..20)
        .map(|i| json!({"card": format!("c{i}"), "amount": i, "ts": i}))
        .collect();
    let (st, v) = s
        .post("/v1/streams/tx/events", &Value::from(events).to_string())
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    applied(&s, &v["position"]).await;
    let (st, v) = s.get("/v1/statements/big/stats").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["stream"], "tx");
    assert_eq!(v["events_in"], 20, "{v}");
    assert_eq!(v["outputs"], 9, "{v}");
    assert_eq!(v["dropped"], 0, "{v}");
    let (st, v) = s.get("/v1/statements/tx/stats").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["events_in"], 20, "{v}");
    let (st, v) = s.get("/v1/statements/bog/stats").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(code(&v), "unknown_statement");
    assert_eq!(v["error"]["known_statements"][0], "big", "{v}");
    assert_eq!(v["error"]["statements_total"], 2);
    // The engine's counters are on /metrics per stream, metric_rejected included.
    let (_, m) = s.get("/metrics").await;
    let m = m.as_str().unwrap();
    assert!(
        m.contains(r#"weir_engine_events_total{stream="tx",outcome="accepted"} 20"#),
        "{m}"
    );
    assert!(
        m.contains(r#"weir_engine_events_total{stream="tx",outcome="metric_rejected"} 0"#),
        "{m}"
    );
}

/// `/metrics` has series per stream and partition, none per statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_page_size_does_not_grow_with_statements() {
    let size_with = |n: usize| async move {
        let s = Svc::new(
            Settings {
                partitions: 1,
                ..Settings::default()
            },
            true,
        );
        let mut text = STREAM.to_string();
        for i in 0..n {
            text.push_str(&format!(
                " CREATE SEARCH s{i} AS FROM tx WHERE card MATCHES 'c{i}';"
            ));
        }
        let (st, v) = s.post("/v1/statements", &text).await;
        assert_eq!(st, StatusCode::OK, "{}", v.to_string().len());
        let ev: Vec<Value> = (0..50)
            .map(|i| json!({"card": format!("c{i}"), "amount": i, "ts": i}))
            .collect();
        let (_, v) = s
            .post("/v1/streams/tx/events", &Value::from(ev).to_string())
            .await;
        applied(&s, &v["position"]).await;
        let (_, m) = s.get("/metrics").await;
        m.as_str().unwrap().len()
    };
    let small = size_with(10).await;
    let large = size_with(10_000).await;
    eprintln!("/metrics: {small} bytes with 10 statements, {large} with 10,000");
    assert!(
        large < small + small / 10,
        "/metrics: {small} bytes with 10 statements, {large} with 10,000"
    );
}

/// Rule matches of `name` after `position` is applied.
async fn outputs_of(s: &Svc, name: &str, position: &Value) -> Vec<Value> {
    let p = position.as_str().unwrap();
    let (st, v) = s
        .get(&format!("/v1/outputs?after={p}&name={name}&limit=10000"))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["records"].as_array().unwrap().clone()
}

/// An INT key sent as `4` and as `4.0` is one key, `Int(4)`: both events reach the
/// partition of the rule's key and match together. (Routing hashed the key's JSON text
/// before, and put `4` and `4.0` in different partitions for most keys.) A STRING key
/// stays text: `"4"` and `"4.0"` are two keys, and a number is not a STRING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_int_key_sent_as_4_and_4_0_reaches_one_rule_partition() {
    let s = Svc::new(
        Settings {
            partitions: 4,
            ..Settings::default()
        },
        true,
    );
    let rules = "
CREATE STREAM ki (k INT, t STRING, ts TIMESTAMP) WITH (event_time = 'ts', key = 'k');
CREATE RULE pair_i AS FROM ki PARTITION BY k PATTERN (a b)
  DEFINE a AS t = 'a', b AS t = 'b' MEASURES b.ts AS at;
CREATE STREAM ks (k STRING, t STRING, ts TIMESTAMP) WITH (event_time = 'ts', key = 'k');
CREATE RULE pair_s AS FROM ks PARTITION BY k PATTERN (a b)
  DEFINE a AS t = 'a', b AS t = 'b' MEASURES b.ts AS at;";
    let (st, v) = s.post("/v1/statements", rules).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let keys = 0..24;
    let mut ev = String::new();
    for k in keys.clone() {
        ev.push_str(&format!("{{\"k\":{k},\"t\":\"a\",\"ts\":{}}}\n", 1000 + k));
    }
    for k in keys.clone() {
        ev.push_str(&format!(
            "{{\"k\":{k}.0,\"t\":\"b\",\"ts\":{}}}\n",
            2000 + k
        ));
    }
    // Far later events in every partition close the matches (watermarks).
    for k in keys.clone() {
        ev.push_str(&format!("{{\"k\":{k},\"t\":\"x\",\"ts\":10000000}}\n"));
    }
    let (st, v, _) = s
        .call(
            Request::post("/v1/streams/ki/events")
                .header(header::CONTENT_TYPE, "application/x-ndjson")
                .body(Body::from(ev.clone()))
                .unwrap(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["accepted"], 72, "{v}");
    let recs = outputs_of(&s, "pair_i", &v["position"]).await;
    let mut got: Vec<i64> = recs
        .iter()
        .map(|r| r["fields"]["k"].as_i64().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, keys.clone().collect::<Vec<i64>>(), "{recs:?}");
    // The same through the JSON-array path (the decoder, not the NDJSON fast path).
    let arr: Vec<Value> = ev
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v["ts"] = json!(v["ts"].as_i64().unwrap() + 20_000_000);
            v
        })
        .collect();
    let (st, v) = s
        .post("/v1/streams/ki/events", &Value::from(arr).to_string())
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(outputs_of(&s, "pair_i", &v["position"]).await.len(), 48);
    // STRING keys: "4" then "4.0" is no match; "4" then "4" is; 4 is refused.
    let evs = json!([
        {"k": "4", "t": "a", "ts": 1000}, {"k": "4.0", "t": "b", "ts": 1001},
        {"k": "5", "t": "a", "ts": 1002}, {"k": "5", "t": "b", "ts": 1003},
        {"k": 6, "t": "a", "ts": 1004},
    ]);
    let (st, v) = s.post("/v1/streams/ks/events", &evs.to_string()).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["rejected"][0]["index"], 4, "{v}");
    let flush: Vec<Value> = (0..24)
        .map(|k| json!({"k": format!("{k}"), "t": "x", "ts": 10_000_000}))
        .chain(["4", "4.0", "5"].map(|k| json!({"k": k, "t": "x", "ts": 10_000_000})))
        .collect();
    let (_, v) = s
        .post("/v1/streams/ks/events", &Value::from(flush).to_string())
        .await;
    let recs = outputs_of(&s, "pair_s", &v["position"]).await;
    let got: Vec<&str> = recs
        .iter()
        .map(|r| r["fields"]["k"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec!["5"], "{recs:?}");
}

/// Every output record from the start (paging through the cursor), after `position`.
async fn all_outputs(s: &Svc, position: &Value) -> Vec<Value> {
    let p = position.as_str().unwrap();
    let (st, v) = s
        .get(&format!("/v1/outputs?after={p}&limit=1&wait_ms=120000"))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let mut out = Vec::new();
    let mut cursor = 0;
    loop {
        let (st, v) = s
            .get(&format!("/v1/outputs?cursor={cursor}&limit=10000"))
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let recs = v["records"].as_array().unwrap();
        if recs.is_empty() {
            return out;
        }
        out.extend(recs.iter().cloned());
        cursor = v["cursor"].as_u64().unwrap();
    }
}

fn assert_unique_ids(recs: &[Value]) {
    let mut ids: Vec<&str> = recs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "an output id appears twice");
}

/// Synthetic timestamps near 0 and pauses of seconds between writes: idle advance off
/// (with it, a write after a pause longer than 5 s would be late).
const DOCS: &str = "CREATE STREAM docs (id INT, body STRING, ts TIMESTAMP) WITH (event_time = 'ts', key = 'id', idle_timeout = '0');";

/// Searches without EMIT (each hit carries the whole document), `n` of them, all
/// matching documents with the word `acme`.
fn searches(n: usize) -> String {
    let mut t = DOCS.to_string();
    for i in 0..n {
        t.push_str(&format!(
            "\nCREATE SEARCH hit{i} AS FROM docs WHERE body MATCHES 'acme';"
        ));
    }
    t
}

async fn restart_is_ready(dir: std::sync::Arc<tempfile::TempDir>, settings: Settings) -> Svc {
    let s = Svc::open(dir, settings, LogConfig::default(), true);
    let t0 = std::time::Instant::now();
    loop {
        let (st, _) = s.get("/readyz").await;
        if st == StatusCode::OK {
            return s;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(120),
            "not ready after a restart"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// One step whose outputs are far over the log's 16 MiB append limit (1,000 documents
/// of ~1 KB × 25 searches without EMIT: ~30 MB) is appended in several batches: the
/// partition keeps going, stopping finishes, a restart is ready, nothing is lost or
/// written twice. (Before, the one append was refused and retried forever.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_of_one_step_over_the_append_limit_are_split() {
    let settings = Settings {
        partitions: 1,
        ..Settings::default()
    };
    let s = Svc::new(settings.clone(), true);
    let (st, v) = s.post("/v1/statements", &searches(25)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let filler = "lorem ipsum dolor sit amet ".repeat(38);
    let docs: String = (0..1000)
        .map(|i| format!("{{\"id\":{i},\"body\":\"acme {filler}{i}\",\"ts\":{i}}}\n"))
        .collect();
    let (st, v, _) = s
        .call(
            Request::post("/v1/streams/docs/events")
                .header(header::CONTENT_TYPE, "application/x-ndjson")
                .body(Body::from(docs))
                .unwrap(),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let recs = all_outputs(&s, &v["position"]).await;
    assert_eq!(recs.len(), 25_000);
    assert_unique_ids(&recs);
    assert!(recs.iter().all(|r| r.get("truncated").is_none()));
    let bytes: usize = recs.iter().map(|r| r.to_string().len()).sum();
    assert!(bytes > 20 << 20, "{bytes} bytes of outputs");
    // The partition keeps going.
    let (_, v) = s
        .post(
            "/v1/streams/docs/events",
            r#"{"id":5000,"body":"acme again","ts":5000}"#,
        )
        .await;
    assert_eq!(all_outputs(&s, &v["position"]).await.len(), 25_025);
    let dir = s.stop(std::time::Duration::from_secs(60));
    let s = restart_is_ready(dir, settings).await;
    let (_, v) = s
        .post(
            "/v1/streams/docs/events",
            r#"{"id":5001,"body":"acme once more","ts":5001}"#,
        )
        .await;
    let recs = all_outputs(&s, &v["position"]).await;
    assert_eq!(recs.len(), 25_050);
    assert_unique_ids(&recs);
}

/// One 2 MB document hit by 12 searches without EMIT (24 MB of outputs for one event)
/// is split the same way; a 20 MB event is refused at ingest (413), whether the body
/// limit or the per-event limit stops it, and the partition keeps going.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_event_copied_by_many_searches_and_an_event_over_the_limit() {
    let settings = Settings {
        partitions: 2,
        max_body_bytes: 64 << 20,
        ..Settings::default()
    };
    let s = Svc::new(settings.clone(), true);
    let (st, v) = s.post("/v1/statements", &searches(12)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let big = format!(
        "{{\"id\":1,\"body\":\"acme {}\",\"ts\":1}}",
        "word ".repeat(400_000)
    );
    let (st, v) = s.post("/v1/streams/docs/events", &big).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let recs = all_outputs(&s, &v["position"]).await;
    assert_eq!(recs.len(), 12);
    assert!(recs
        .iter()
        .all(|r| r["fields"]["body"].as_str().unwrap().len() > 2_000_000));
    // 20 MB: over the per-event limit (the log's 16 MiB batch limit less room).
    let huge = format!(
        "{{\"id\":2,\"body\":\"acme {}\",\"ts\":2}}",
        "x".repeat(20 << 20)
    );
    let (st, v) = s.post("/v1/streams/docs/events", &huge).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(code(&v), "event_too_large");
    // With the default body limit (16 MiB) the body is refused first.
    let s2 = Svc::new(Settings::default(), true);
    s2.post("/v1/statements", DOCS).await;
    let (st, v) = s2.post("/v1/streams/docs/events", &huge).await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(code(&v), "body_too_large");
    drop(s2);
    let (st, v) = s
        .post(
            "/v1/streams/docs/events",
            r#"{"id":3,"body":"acme","ts":3}"#,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(all_outputs(&s, &v["position"]).await.len(), 24);
    let dir = s.stop(std::time::Duration::from_secs(60));
    let s = restart_is_ready(dir, settings).await;
    let (_, v) = s.get("/readyz").await;
    assert_eq!(v["status"], "ready");
}

/// An output record that can never fit the log's batch limit (here 256 KiB; a document
/// whose every word is a hit, so its highlights outgrow it) is written truncated with a
/// flag and its original size, counted, and the partition goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_too_large_for_the_log_is_written_truncated() {
    let settings = Settings {
        partitions: 1,
        ..Settings::default()
    };
    let log = LogConfig {
        max_batch_bytes: 256 << 10,
        ..LogConfig::default()
    };
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let s = Svc::open(dir, settings, log, true);
    let (st, v) = s.post("/v1/statements", &searches(1)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let body = "acme ".repeat(30_000);
    let ev = format!(
        "[{{\"id\":1,\"body\":\"{body}\",\"ts\":1}},{{\"id\":2,\"body\":\"acme\",\"ts\":2}}]"
    );
    let (st, v) = s.post("/v1/streams/docs/events", &ev).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let recs = all_outputs(&s, &v["position"]).await;
    assert_eq!(recs.len(), 2, "{recs:?}");
    let t = &recs[0];
    assert_eq!(t["search"], "hit0");
    assert_eq!(t["truncated"], true);
    assert!(t["original_bytes"].as_u64().unwrap() > 256 << 10, "{t}");
    assert!(t.get("fields").is_none() && t.get("highlights").is_none());
    assert!(t["id"].is_string() && t["ts"].is_string());
    assert_eq!(recs[1]["fields"]["id"], 2);
    assert!(recs[1].get("truncated").is_none());
    let (_, m) = s.get("/metrics").await;
    assert!(
        m.as_str()
            .unwrap()
            .contains("weir_outputs_truncated_total 1"),
        "{m}"
    );
}

/// A statement the checker accepts but the engine cannot build (a regex or a pattern
/// too large) is refused when applied, with its position, like any check error; the
/// statements already running keep running (nothing makes a worker run without them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_the_engine_cannot_build_answers_400_and_changes_nothing() {
    let s = Svc::new(Settings::default(), true);
    let (st, v) = s
        .post(
            "/v1/statements",
            &format!("{STREAM} CREATE SEARCH ok AS FROM tx WHERE card MATCHES 'c1';"),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    for bad in [
        "CREATE SEARCH huge AS FROM tx WHERE card MATCHES '/a{1000}{1000}/';",
        "CREATE RULE huge AS FROM tx PARTITION BY card PATTERN ((a{1000}){1000}) \
         DEFINE a AS amount > 0 MEASURES COUNT(*) AS n;",
    ] {
        let (st, v) = s.post("/v1/statements", bad).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{bad}: {v}");
        assert_eq!(code(&v), "invalid_statement", "{v}");
        assert_eq!(v["error"]["errors"][0]["line"], 1, "{v}");
        assert!(
            v["error"]["errors"][0]["column"].as_u64().unwrap() > 1,
            "{v}"
        );
        let (st, _) = s.get("/v1/statements/huge").await;
        assert_eq!(st, StatusCode::NOT_FOUND);
    }
    let (st, v) = s
        .post(
            "/v1/streams/tx/events",
            r#"{"card":"c1","amount":1.0,"ts":5}"#,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let out = outputs_of(&s, "ok", &v["position"]).await;
    assert_eq!(out.len(), 1, "{out:?}");
}
