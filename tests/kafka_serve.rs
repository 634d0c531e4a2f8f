//! End-to-end tests of `weir serve --kafka`: the real `weir` binary against a real tansu
//! broker (started with scripts/kafka-broker, as kafka/tests do). Without a tansu binary
//! the tests print a loud skip message and pass, unless WEIR_REQUIRE_KAFKA is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weir_kafka::{KafkaConfig, OutRecord, PartitionReader, Producer, ID_HEADER};

// ---------------------------------------------------------------- broker

// The broker helper of weir-kafka's own tests (scripts/kafka-broker, skip or fail
// without a tansu binary, broker log shown when a test fails).
#[path = "../kafka/tests/common/mod.rs"]
mod common;
use common::Broker;

/// Client settings of these tests (the group name of their own readers and producers).
fn client_config(b: &Broker) -> KafkaConfig {
    let mut c = KafkaConfig::new(&b.bootstrap);
    c.group = "weir-test-client".into();
    c.replication = 1;
    c
}

// ---------------------------------------------------------------- weir instances

struct Weir {
    child: Child,
    base: String,
    _data: tempfile::TempDir,
}

impl Drop for Weir {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("WEIR_TEST_GDB").is_some() {
            let out = Command::new("gdb")
                .args([
                    "-p",
                    &self.child.id().to_string(),
                    "-batch",
                    "-ex",
                    "thread apply all bt",
                ])
                .output();
            if let Ok(o) = out {
                let f = std::env::temp_dir().join(format!("weir-stacks-{}.txt", self.child.id()));
                let _ = std::fs::write(&f, &o.stdout);
                eprintln!("weir stacks in {}", f.display());
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn weir(b: &Broker, group: &str, prefix: &str) -> Weir {
    weir_with(b, group, prefix, 4)
}

fn weir_with(b: &Broker, group: &str, prefix: &str, partitions: u32) -> Weir {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let data = tempfile::tempdir().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", "--listen", &listen, "--data"])
        .arg(data.path())
        .args(["--kafka", &b.bootstrap, "--group", group])
        .args([
            "--topic-prefix",
            prefix,
            "--partitions",
            &partitions.to_string(),
        ])
        .args(["--kafka-session-ms", "4000", "--checkpoint-secs", "1"])
        .env(
            "WEIR_LOG",
            std::env::var("WEIR_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("weir serve starts");
    let w = Weir {
        child,
        base: format!("http://{listen}"),
        _data: data,
    };
    let t0 = Instant::now();
    loop {
        if let Ok(r) = ureq::get(&format!("{}/readyz", w.base)).call() {
            if r.status() == 200 {
                return w;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "weir serve --kafka never became ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An instance configured through a `--config` TOML file and the environment instead of
/// flags (same settings as [`weir`]).
fn weir_from_config(b: &Broker, group: &str, prefix: &str) -> Weir {
    let port = free_port();
    let data = tempfile::tempdir().unwrap();
    let conf = data.path().join("weir.toml");
    std::fs::write(
        &conf,
        format!(
            "listen = \"127.0.0.1:{port}\"\ngroup = \"{group}\"\ntopic_prefix = \"{prefix}\"\npartitions = 4\nkafka_session_ms = 4000\ncheckpoint_secs = 1.0\n"
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", "--config"])
        .arg(&conf)
        .arg("--data")
        .arg(data.path())
        .env("WEIR_KAFKA", &b.bootstrap)
        .env("WEIR_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("weir serve starts");
    let w = Weir {
        child,
        base: format!("http://127.0.0.1:{port}"),
        _data: data,
    };
    let t0 = Instant::now();
    while ureq::get(&format!("{}/readyz", w.base)).call().is_err() {
        assert!(t0.elapsed() < Duration::from_secs(60), "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    w
}

/// Kafka-only settings without `--kafka` are refused with a clear message (no broker
/// needed).
#[test]
fn kafka_settings_need_kafka() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["serve", "--listen", "127.0.0.1:0", "--group", "g", "--data"])
        .arg(data.path())
        .env_remove("WEIR_KAFKA")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("need --kafka"), "{err}");
}

fn call(method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    let r = ureq::request(method, url).set("Content-Type", "application/json");
    let res = match body {
        Some(b) => r.send_string(b),
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

fn post(w: &Weir, path: &str, body: &str) -> (u16, Value) {
    call("POST", &format!("{}{path}", w.base), Some(body))
}

fn get(w: &Weir, path: &str) -> (u16, Value) {
    call("GET", &format!("{}{path}", w.base), None)
}

// The events carry made-up timestamps near 0 and the broker-restart test pauses for
// seconds: with the default `idle_timeout` the quiet partitions' watermarks would follow the
// wall clock through the pause and the later events would be late (language §9).
const STREAM: &str = "CREATE STREAM pay (card STRING, amount FLOAT, ts TIMESTAMP)
  WITH (event_time = 'ts', key = 'card', idle_timeout = '0');";
const PROBE: &str = "CREATE RULE probe AS FROM pay PARTITION BY card
  PATTERN (small big) WITHIN 1 MINUTE
  DEFINE small AS amount < 5, big AS amount > 500
  MEASURES big.amount AS amount;";

fn ev(card: &str, amount: f64, ts: i64) -> Value {
    json!({"card": card, "amount": amount, "ts": ts})
}

/// Produces events straight to a stream topic (keyed by card, Kafka's partitioner).
fn produce(cfg: &KafkaConfig, topic: &str, events: &[Value]) {
    let p = Producer::idempotent(cfg).unwrap();
    let texts: Vec<(String, String)> = events
        .iter()
        .map(|e| (e["card"].as_str().unwrap().to_string(), e.to_string()))
        .collect();
    let recs: Vec<OutRecord<'_>> = texts
        .iter()
        .map(|(k, v)| OutRecord {
            key: Some(k.as_bytes()),
            value: v.as_bytes(),
            ..Default::default()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match p.send(topic, &recs) {
            Ok(_) => return,
            Err(e) if Instant::now() < deadline => {
                eprintln!("produce retry: {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("produce: {e}"),
        }
    }
}

/// Every record of the outputs topic: (id from the `weir-id` header, value).
fn output_topic(cfg: &KafkaConfig, prefix: &str) -> Vec<(String, Value)> {
    output_records(cfg, prefix)
        .into_iter()
        .map(|(id, _, v)| (id, v))
        .collect()
}

/// Every record of the outputs topic: (id from the `weir-id` header, key, value).
fn output_records(cfg: &KafkaConfig, prefix: &str) -> Vec<(String, Option<String>, Value)> {
    let mut r = match PartitionReader::new(cfg, &format!("{prefix}outputs"), 0) {
        Ok(r) => r,
        Err(_) => return Vec::new(),
    };
    let Ok(recs) = r.read_to_end(0) else {
        return Vec::new();
    };
    recs.into_iter()
        .filter_map(|r| {
            let id = String::from_utf8(r.header(ID_HEADER)?.to_vec()).ok()?;
            let v: Value = serde_json::from_slice(r.value.as_deref()?).ok()?;
            let key = r.key.map(|k| String::from_utf8_lossy(&k).into_owned());
            Some((id, key, v))
        })
        .collect()
}

/// Waits until the outputs topic holds at least the ids `want` (returns all ids seen,
/// with their counts).
fn wait_ids(
    cfg: &KafkaConfig,
    prefix: &str,
    want: &BTreeSet<String>,
    timeout: Duration,
) -> BTreeMap<String, usize> {
    let t0 = Instant::now();
    loop {
        let mut seen = BTreeMap::new();
        for (id, v) in output_topic(cfg, prefix) {
            assert_eq!(v["id"].as_str(), Some(id.as_str()), "header = record id");
            *seen.entry(id).or_insert(0) += 1;
        }
        if want.iter().all(|i| seen.contains_key(i)) {
            return seen;
        }
        if t0.elapsed() > timeout {
            let missing: Vec<_> = want.iter().filter(|i| !seen.contains_key(*i)).collect();
            panic!(
                "{} of {} outputs missing after {timeout:?}: {:?}",
                missing.len(),
                want.len(),
                &missing[..missing.len().min(10)]
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Events for `cards` cards: phase 1 = a small payment for every card and a big one for
/// the first half; phase 2 = the big payments of the second half. One probe per card.
fn two_phase_events(cards: usize) -> (Vec<Value>, Vec<Value>) {
    let mut ts = 1_000;
    let mut tick = || {
        ts += 10;
        ts
    };
    let mut a = Vec::new();
    for c in 0..cards {
        a.push(ev(&format!("c{c}"), 1.0, tick()));
    }
    for c in 0..cards / 2 {
        a.push(ev(&format!("c{c}"), 900.0, tick()));
    }
    let mut b = Vec::new();
    for c in cards / 2..cards {
        b.push(ev(&format!("c{c}"), 900.0, tick()));
    }
    (a, b)
}

fn probe_ids(seen: &BTreeMap<String, usize>) -> BTreeSet<String> {
    seen.keys()
        .filter(|i| i.starts_with("probe@"))
        .cloned()
        .collect()
}

/// Runs the two phases through one instance on its own prefix: the reference ids.
fn reference_ids(b: &Broker, cards: usize) -> BTreeSet<String> {
    let cfg = client_config(b);
    let w = weir(b, "ref", "ref.");
    let (st, v) = post(&w, "/v1/statements", &format!("{STREAM}\n{PROBE}"));
    assert_eq!(st, 200, "{v}");
    let (a, bb) = two_phase_events(cards);
    produce(&cfg, "ref.pay", &a);
    produce(&cfg, "ref.pay", &bb);
    let t0 = Instant::now();
    loop {
        let seen = wait_ids(&cfg, "ref.", &BTreeSet::new(), Duration::from_secs(1));
        let ids = probe_ids(&seen);
        if ids.len() >= cards {
            assert_eq!(ids.len(), cards, "one probe per card");
            return ids;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "reference run: {} of {cards} outputs",
            ids.len()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

// ---------------------------------------------------------------- tests

/// Events in through HTTP and straight into the topic; matches out on the outputs topic
/// with a `weir-id` header, and through `GET /v1/outputs`; Kafka metrics exported.
#[test]
fn events_in_matches_out_on_the_output_topic() {
    let Some(b) = Broker::start(false) else {
        return;
    };
    let cfg = client_config(&b);
    let w = weir(&b, "g1", "t1.");
    let (st, v) = post(&w, "/v1/statements", &format!("{STREAM}\n{PROBE}"));
    assert_eq!(st, 200, "{v}");
    assert_eq!(get(&w, "/v1/statements/probe").0, 200);
    // Through HTTP: c1 (produced to Kafka with its key).
    let evs = json!([ev("c1", 1.0, 1000), ev("c1", 900.0, 2000)]);
    let (st, v) = post(&w, "/v1/streams/pay/events", &evs.to_string());
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["accepted"], 2);
    // Bad events are still refused before they reach Kafka.
    let (st, v) = post(
        &w,
        "/v1/streams/pay/events",
        r#"[{"card":"x","amount":"no"}]"#,
    );
    assert!(
        st == 400 || v["rejected"].as_array().is_some_and(|r| r.len() == 1),
        "{v}"
    );
    // Straight into the topic: c2, c3 (as any Kafka producer would).
    produce(
        &cfg,
        "t1.pay",
        &[
            ev("c2", 2.0, 3000),
            ev("c3", 3.0, 3100),
            ev("c2", 800.0, 4000),
            ev("c3", 700.0, 4100),
        ],
    );
    // Every event went to the partition Kafka's partitioner picks for its key.
    for c in ["c1", "c2", "c3"] {
        let p = weir_kafka::partition_for_key(c.as_bytes(), 4);
        let mut r = PartitionReader::new(&cfg, "t1.pay", p).unwrap();
        let recs = r.read_to_end(0).unwrap();
        assert!(
            recs.iter().any(|r| r.key.as_deref() == Some(c.as_bytes())),
            "{c} not in partition {p}"
        );
    }
    let t0 = Instant::now();
    let cards = loop {
        let outs = output_topic(&cfg, "t1.");
        let cards: BTreeSet<String> = outs
            .iter()
            .filter(|(_, v)| v["rule"] == "probe")
            .map(|(id, v)| {
                assert_eq!(v["id"].as_str(), Some(id.as_str()));
                v["fields"]["card"].as_str().unwrap().to_string()
            })
            .collect();
        if cards.len() == 3 || t0.elapsed() > Duration::from_secs(30) {
            break cards;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        cards,
        ["c1", "c2", "c3"].iter().map(|s| s.to_string()).collect()
    );
    // Each output is keyed by its partition key (PARTITION BY card).
    for (_, key, v) in output_records(&cfg, "t1.") {
        assert_eq!(key.as_deref(), v["fields"]["card"].as_str(), "{v}");
    }
    // The HTTP outputs endpoint reads the same topic.
    let (st, v) = get(&w, "/v1/outputs?name=probe&cursor=0&limit=100&wait_ms=0");
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["records"].as_array().unwrap().len(), 3, "{v}");
    let (st, m) = get(&w, "/metrics");
    assert_eq!(st, 200);
    let m = m.as_str().unwrap().to_string();
    assert!(m.contains("weir_kafka_rebalances_total"), "{m}");
    assert!(
        m.contains("weir_kafka_consumer_lag{topic=\"t1.pay\""),
        "{m}"
    );
    assert!(
        m.contains("weir_kafka_checkpoint_age_seconds{topic=\"t1.pay\""),
        "{m}"
    );
    assert!(m.contains("weir_kafka_owned_partitions 4"), "{m}");
}

/// A statement posted to instance A at runtime reaches instance B, and B runs it.
#[test]
fn statements_posted_on_one_instance_reach_the_others() {
    let Some(b) = Broker::start(false) else {
        return;
    };
    let cfg = client_config(&b);
    let a = weir(&b, "g2", "t2.");
    // B takes its settings from a config file and WEIR_KAFKA.
    let bb = weir_from_config(&b, "g2", "t2.");
    let (st, v) = post(&a, "/v1/statements", STREAM);
    assert_eq!(st, 200, "{v}");
    // At runtime, on A only.
    let (st, v) = post(&a, "/v1/statements", PROBE);
    assert_eq!(st, 200, "{v}");
    let t0 = Instant::now();
    while get(&bb, "/v1/statements/probe").0 != 200 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the statement never reached instance B"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        get(&bb, "/v1/statements").1["statements"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Events through B, for many cards (so both instances' partitions get some): every
    // card matches, whichever instance runs its partition.
    let mut evs = Vec::new();
    for c in 0..20 {
        evs.push(ev(&format!("k{c}"), 1.0, 1000 + c));
    }
    for c in 0..20 {
        evs.push(ev(&format!("k{c}"), 999.0, 2000 + c));
    }
    let (st, v) = post(&bb, "/v1/streams/pay/events", &json!(evs).to_string());
    assert_eq!(st, 200, "{v}");
    let t0 = Instant::now();
    loop {
        let n = output_topic(&cfg, "t2.")
            .iter()
            .filter(|(_, v)| v["rule"] == "probe")
            .map(|(id, _)| id.clone())
            .collect::<BTreeSet<_>>()
            .len();
        if n == 20 {
            break;
        }
        if t0.elapsed() > Duration::from_secs(40) {
            let outs = output_topic(&cfg, "t2.");
            let got: BTreeSet<String> = outs
                .iter()
                .filter(|(_, v)| v["rule"] == "probe")
                .map(|(_, v)| v["fields"]["card"].as_str().unwrap_or("").to_string())
                .collect();
            let mut per_part = BTreeMap::new();
            for c in 0..20 {
                let k = format!("k{c}");
                let p = weir_kafka::partition_for_key(k.as_bytes(), 4);
                let e = per_part.entry(p).or_insert((0, 0));
                e.0 += 1;
                if got.contains(&k) {
                    e.1 += 1;
                }
            }
            let mut ins = Vec::new();
            for p in 0..4 {
                let mut r = PartitionReader::new(&cfg, "t2.pay", p).unwrap();
                ins.push(r.read_to_end(0).unwrap().len());
            }
            panic!("{n} of 20 probes after the runtime statement; per partition (cards, matched): {per_part:?}; events per partition {ins:?}; outputs {outs:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // A DROP on B reaches A.
    let (st, v) = post(&bb, "/v1/statements", "DROP RULE probe;");
    assert_eq!(st, 200, "{v}");
    let t0 = Instant::now();
    while get(&a, "/v1/statements/probe").0 != 404 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "DROP never reached A"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Three instances in one group on a 4-partition topic; one is SIGKILLed mid-stream; the
/// survivors take its partitions over and the union of outputs equals a single-instance
/// run, by id, with no id missing.
#[test]
fn scale_out_survives_a_sigkilled_instance() {
    let Some(b) = Broker::start(false) else {
        return;
    };
    let cfg = client_config(&b);
    let cards = 200;
    let want = reference_ids(&b, cards);
    let ws: Vec<Weir> = (0..3).map(|_| weir(&b, "g3", "t3.")).collect();
    let (st, v) = post(&ws[0], "/v1/statements", &format!("{STREAM}\n{PROBE}"));
    assert_eq!(st, 200, "{v}");
    // Every instance knows the statements and the group settled (4 partitions owned).
    let t0 = Instant::now();
    loop {
        let owned: u64 = ws.iter().map(owned_partitions).sum();
        let known = ws.iter().all(|w| get(w, "/v1/statements/probe").0 == 200);
        if owned == 4 && known {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "the group never settled ({owned} partitions owned)"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (phase1, phase2) = two_phase_events(cards);
    produce(&cfg, "t3.pay", &phase1);
    let t0 = Instant::now();
    loop {
        let n = probe_ids(&wait_ids(
            &cfg,
            "t3.",
            &BTreeSet::new(),
            Duration::from_secs(1),
        ))
        .len();
        if n >= cards / 2 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "phase 1: {n} of {} outputs",
            cards / 2
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Kill one instance (SIGKILL: no goodbye, no final checkpoint).
    let mut ws = ws;
    let mut victim = ws.remove(1);
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    let killed_at = Instant::now();
    produce(&cfg, "t3.pay", &phase2);
    let seen = wait_ids(&cfg, "t3.", &want, Duration::from_secs(60));
    let got = probe_ids(&seen);
    eprintln!(
        "scale-out: all {} outputs {:.1} s after the SIGKILL; {} duplicates",
        got.len(),
        killed_at.elapsed().as_secs_f64(),
        seen.values().map(|n| n - 1).sum::<usize>()
    );
    assert_eq!(
        got, want,
        "union of outputs = the single-instance run, by id"
    );
    // The survivors settle owning every partition.
    let t0 = Instant::now();
    loop {
        let owned: u64 = ws.iter().map(owned_partitions).sum();
        if owned == 4 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the survivors own {owned} of 4 partitions"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn owned_partitions(w: &Weir) -> u64 {
    metric(w, "weir_kafka_owned_partitions")
}

/// The value of an unlabelled metric on `/metrics` (0 when absent).
fn metric(w: &Weir, name: &str) -> u64 {
    let m = get(w, "/metrics").1;
    m.as_str()
        .unwrap_or("")
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0)
}

/// The broker (persistent storage) restarts mid-stream: nothing acknowledged is lost.
#[test]
fn broker_restart_mid_stream_loses_nothing() {
    let Some(mut b) = Broker::start(true) else {
        return;
    };
    let cfg = client_config(&b);
    let cards = 60;
    let w = weir_with(&b, "g4", "t4.", 4);
    let (st, v) = post(&w, "/v1/statements", &format!("{STREAM}\n{PROBE}"));
    assert_eq!(st, 200, "{v}");
    let (phase1, phase2) = two_phase_events(cards);
    produce(&cfg, "t4.pay", &phase1);
    let t0 = Instant::now();
    loop {
        let n = probe_ids(&wait_ids(
            &cfg,
            "t4.",
            &BTreeSet::new(),
            Duration::from_secs(1),
        ))
        .len();
        if n >= cards / 2 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(40), "phase 1: {n}");
        std::thread::sleep(Duration::from_millis(200));
    }
    b.restart();
    // Half of phase 2 through HTTP (retried while weir reconnects), half straight in.
    let (http, direct) = phase2.split_at(phase2.len() / 2);
    let t0 = Instant::now();
    loop {
        let (st, v) = post(&w, "/v1/streams/pay/events", &json!(http).to_string());
        if st == 200 {
            assert_eq!(v["accepted"].as_u64(), Some(http.len() as u64), "{v}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "ingest never recovered after the broker restart: {st} {v}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    produce(&cfg, "t4.pay", direct);
    let t0 = Instant::now();
    loop {
        let outs = output_topic(&cfg, "t4.");
        let probes: Vec<&(String, Value)> =
            outs.iter().filter(|(_, v)| v["rule"] == "probe").collect();
        let cs: BTreeSet<String> = probes
            .iter()
            .map(|(_, v)| v["fields"]["card"].as_str().unwrap().to_string())
            .collect();
        if cs.len() == cards {
            let ids: BTreeSet<&String> = probes.iter().map(|(id, _)| id).collect();
            assert_eq!(ids.len(), cards, "one id per card");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "after the broker restart: {} of {cards} cards matched",
            cs.len()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// A rule partitioned by `merchant` over a topic keyed by `card`, on two instances: the
/// events go through the internal repartition topic (written by the instance that reads a
/// card's partition, read by the one that runs the merchant's), and each merchant's
/// sequence, made of three cards' payments, matches once.
#[test]
fn rules_grouped_by_another_column_are_repartitioned_across_instances() {
    let Some(b) = Broker::start(false) else {
        return;
    };
    let cfg = client_config(&b);
    let a = weir(&b, "g5", "t5.");
    let stream = "CREATE STREAM pay (card STRING, merchant STRING, amount FLOAT, ts TIMESTAMP)
      WITH (event_time = 'ts', key = 'card');";
    let rule = "CREATE RULE per_merchant AS FROM pay PARTITION BY merchant
      PATTERN (s1 s2 big) WITHIN 1 MINUTE
      DEFINE s1 AS amount < 5, s2 AS amount < 5 AND card <> s1.card,
             big AS amount > 500 AND card <> s2.card
      MEASURES s1.card AS c1, s2.card AS c2, big.card AS c3;";
    let (st, v) = post(&a, "/v1/statements", &format!("{stream}\n{rule}"));
    assert_eq!(st, 200, "{v}");
    assert!(v["warnings"].to_string().contains("re-keyed"), "{v}");
    let b2 = weir(&b, "g5", "t5.");
    // Both instances run some partitions before the events come.
    let t0 = Instant::now();
    while owned_partitions(&a) == 4 || owned_partitions(&b2) == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the group never split"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let merchants = 12;
    let mut evs = Vec::new();
    let mut ts = 10_000;
    for m in 0..merchants {
        for (k, amount) in [(0, 1.0), (1, 2.0), (2, 900.0)] {
            ts += 10;
            evs.push(
                json!({"card": format!("c{m}-{k}"), "merchant": format!("m{m}"),
                            "amount": amount, "ts": ts}),
            );
        }
    }
    // Later events on many cards move every source partition's watermark past them.
    for i in 0..32 {
        evs.push(
            json!({"card": format!("f{i}"), "merchant": "flush", "amount": 1.0,
                        "ts": 1_000_000 + i}),
        );
    }
    produce(&cfg, "t5.pay", &evs);
    let t0 = Instant::now();
    loop {
        let outs: Vec<(String, Value)> = output_topic(&cfg, "t5.")
            .into_iter()
            .filter(|(_, v)| v["rule"] == "per_merchant")
            .collect();
        let ms: BTreeSet<String> = outs
            .iter()
            .map(|(_, v)| v["fields"]["merchant"].as_str().unwrap().to_string())
            .collect();
        if ms.len() == merchants {
            let ids: BTreeSet<&String> = outs.iter().map(|(id, _)| id).collect();
            assert_eq!(ids.len(), merchants, "one output per merchant: {outs:?}");
            for (_, v) in &outs {
                let m = v["fields"]["merchant"].as_str().unwrap();
                assert_eq!(
                    v["fields"]["c3"].as_str().unwrap(),
                    format!("c{}-2", &m[1..])
                );
            }
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            let m: Vec<String> = [&a, &b2]
                .iter()
                .flat_map(|w| {
                    get(w, "/metrics")
                        .1
                        .as_str()
                        .unwrap_or("")
                        .lines()
                        .filter(|l| {
                            l.contains("repartition")
                                || l.contains("lag")
                                || l.contains("engine_events")
                                || l.contains("owned")
                        })
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                })
                .collect();
            panic!(
                "{} of {merchants} merchants matched: {outs:?}\n{}",
                ms.len(),
                m.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // The copies went through the internal topic.
    let copied: u64 = [&a, &b2]
        .iter()
        .map(|w| metric(w, "weir_repartition_copies_total"))
        .sum();
    assert!(copied >= evs.len() as u64, "{copied} copies");
    let mut seen = 0;
    for p in 0..4 {
        let mut r = PartitionReader::new(&cfg, "t5.pay.by.merchant", p).unwrap();
        seen += r.read_to_end(0).unwrap().len();
    }
    assert!(seen >= evs.len(), "{seen} records in the internal topic");
}

/// `Idempotency-Key` on Kafka: a retried write is answered from the stored answer and
/// appends nothing; the same key with another body is refused; a restarted instance (the
/// keys live in the `<prefix>requests` topic) still knows the key.
#[test]
fn idempotency_key_works_on_kafka() {
    let Some(b) = Broker::start(false) else {
        return;
    };
    let cfg = client_config(&b);
    let w = weir(&b, "g6", "t6.");
    let (st, v) = post(&w, "/v1/statements", STREAM);
    assert_eq!(st, 200, "{v}");
    let body: String = (0..20)
        .map(|i| {
            format!(
                "{}\n",
                json!({"card": format!("c{i}"), "amount": 1.0, "ts": i, "seq": i})
            )
        })
        .collect();
    let keyed = |w: &Weir, key: &str, body: &str| -> (u16, Value, bool) {
        let r = ureq::post(&format!("{}/v1/streams/pay/events", w.base))
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
    };
    let (st, first, replayed) = keyed(&w, "k1", &body);
    assert_eq!((st, replayed), (200, false), "{first}");
    assert_eq!(first["accepted"], 20);
    let (st, again, replayed) = keyed(&w, "k1", &body);
    assert_eq!((st, replayed), (200, true), "{again}");
    assert_eq!(again, first);
    let (st, v, _) = keyed(&w, "k1", "{\"card\":\"x\",\"amount\":1,\"ts\":1}\n");
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused")),
        "{v}"
    );
    drop(w);
    // Another instance of the group (this one stopped): the key is known there too.
    let w2 = weir(&b, "g6", "t6.");
    let (st, v, replayed) = keyed(&w2, "k1", &body);
    assert_eq!((st, replayed), (200, true), "{v}");
    // Each event is in the topic once.
    let mut seqs = BTreeMap::new();
    for p in 0..4 {
        let mut r = PartitionReader::new(&cfg, "t6.pay", p).unwrap();
        for rec in r.read_to_end(0).unwrap() {
            let v: Value = serde_json::from_slice(rec.value.as_deref().unwrap()).unwrap();
            *seqs.entry(v["seq"].as_u64().unwrap()).or_insert(0) += 1;
        }
    }
    assert_eq!(seqs.len(), 20, "{seqs:?}");
    assert!(seqs.values().all(|&n| n == 1), "each event once: {seqs:?}");
}
