//! `serve DIR` — the stored-search goals of issue #11 measured through the real `weir serve`
//! (loopback only; every loop is bounded in count and time).
//!
//! Uses DIR/queries.tsv and DIR/docs.tsv written by `gen`. Writes statement files of
//! 10,000 `CREATE SEARCH` each (the first NQ queries, over stream `news`), plus one file
//! with 1,000 rules and 100 metrics over a `payments` stream, starts `weir serve` with
//! them and prints one `key=value` line per phase:
//! 1. `register`: seconds from spawn to `/readyz` 200, then process RSS (and its peak);
//! 2. `docs`: NDOCS news documents POSTed as NDJSON by 2 client threads (batches of 200),
//!    documents per second from the first POST until every output is durable (`GET
//!    /v1/outputs?after=P` answered), outputs written, RSS after;
//! 3. `change`: 100 searches added then dropped one at a time: answer time of each POST and
//!    time until applied (a read with `after=` of its position), p50/p99/max;
//! 4. `restart`: SIGTERM (time to exit), restart on the same data directory with a
//!    checkpoint, seconds to `/readyz` 200, RSS.
//!
//! Env: WEIR (binary; default `target/release/weir` of the workspace), NQ (1000000),
//! PARTS (4), NDOCS (100000), NCHANGES (100), KEEP=1 keeps the server's data directory.
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_search_bench::read_tsv;

fn env(k: &str, d: usize) -> usize {
    std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d)
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn rss(pid: u32) -> (f64, f64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0 / 1024.0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(600))
        .build()
}

/// Starts the server and waits (at most 30 min) for `/readyz`; returns it and the wait.
fn start(weir: &Path, port: u16, work: &Path, rules: &[PathBuf]) -> (Server, Duration) {
    let mut cmd = Command::new(weir);
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data")
        .arg(work.join("data"))
        .arg("--partitions")
        .arg(env("PARTS", 4).to_string())
        .arg("--config")
        .arg(work.join("weir.toml"))
        .arg("--rules")
        .args(rules)
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(work.join("server.log")).unwrap(),
        ));
    let t = Instant::now();
    let child = cmd.spawn().expect("spawn weir");
    let s = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let a = agent();
    loop {
        if let Ok(r) = a.get(&format!("{}/readyz", s.base)).call() {
            if r.status() == 200 {
                break;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(1800), "not ready in 30 min");
        std::thread::sleep(Duration::from_millis(50));
    }
    let d = t.elapsed();
    (s, d)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn position(r: ureq::Response) -> String {
    let v: serde_json::Value = r.into_json().unwrap();
    v["position"].as_str().unwrap_or_default().to_string()
}

/// Waits until the engine applied everything up to `pos` (read-your-writes).
fn wait_applied(a: &ureq::Agent, base: &str, name: Option<&str>, pos: &str) {
    let mut url = format!("{base}/v1/outputs?limit=1&wait_ms=600000&after={pos}");
    if let Some(n) = name {
        url.push_str(&format!("&name={n}"));
    }
    let r = a.get(&url).call().unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(r.status(), 200);
}

fn write_rules(work: &Path, dir: &str, nq: usize) -> Vec<PathBuf> {
    let rules = work.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let mut files = Vec::new();
    let base = rules.join("00-base.weir");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&base).unwrap());
    writeln!(
        f,
        "CREATE STREAM news (id STRING, title STRING, body STRING, ts TIMESTAMP)\n  \
         WITH (event_time = 'ts', max_delay = '1 second', key = 'id');\n\
         CREATE STREAM payments (card_id STRING, merchant STRING, amount FLOAT, country STRING, ts TIMESTAMP)\n  \
         WITH (event_time = 'ts', max_delay = '1 second', key = 'card_id');"
    )
    .unwrap();
    for i in 0..1000 {
        let m = format!("m{}", i % 500);
        match i % 3 {
            0 => writeln!(
                f,
                "CREATE RULE r{i} AS FROM payments PARTITION BY card_id PATTERN (small{{3,}} big) \
                 WITHIN 10 MINUTES DEFINE small AS amount < 5 AND merchant = '{m}', big AS amount > {} \
                 AND country <> FIRST(small.country) MEASURES COUNT(small.*) AS probes, big.amount AS amount;",
                500 + i
            ),
            1 => writeln!(
                f,
                "CREATE RULE r{i} AS FROM payments PARTITION BY card_id PATTERN (a b) WITHIN 1 MINUTE \
                 DEFINE a AS merchant = '{m}' AND amount > {}, b AS amount > a.amount * 2 \
                 MEASURES a.amount AS first, b.amount AS second;",
                i % 100 * 10
            ),
            _ => writeln!(
                f,
                "CREATE RULE r{i} AS FROM payments PARTITION BY card_id PATTERN (x y z) WITHIN 5 MINUTES \
                 DEFINE x AS merchant = '{m}', y AS country <> x.country, z AS amount > {} \
                 MEASURES x.merchant AS merchant;",
                100 + i
            ),
        }
        .unwrap();
    }
    for i in 0..100 {
        writeln!(
            f,
            "CREATE METRIC m{i} AS SELECT merchant, COUNT(*) AS n, SUM(amount) AS total, \
             APPROX_COUNT_DISTINCT(card_id) AS cards FROM payments WHERE amount > {} \
             GROUP BY merchant WINDOW TUMBLING (SIZE 1 MINUTE);",
            i * 10
        )
        .unwrap();
    }
    drop(f);
    files.push(base);
    let queries = read_tsv(&format!("{dir}/queries.tsv"));
    for (chunk_no, chunk) in queries[..nq.min(queries.len())].chunks(10_000).enumerate() {
        let p = rules.join(format!("s-{chunk_no:04}.weir"));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
        for q in chunk {
            writeln!(
                f,
                "CREATE SEARCH {} AS FROM news WHERE body MATCHES {};",
                q[0],
                quote(&q[1])
            )
            .unwrap();
        }
        files.push(p);
    }
    files
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let dir = a.get(1).map_or("/tmp/weir-search-bench", |s| s.as_str());
    let nq = env("NQ", 1_000_000);
    let ndocs = env("NDOCS", 100_000);
    let nchanges = env("NCHANGES", 100);
    let weir = std::env::var("WEIR").map(PathBuf::from).unwrap_or_else(|_| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/weir")
    });
    assert!(weir.exists(), "{} missing: cargo build --release -p server", weir.display());
    let work = PathBuf::from(format!("{dir}/serve-{nq}"));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(
        work.join("weir.toml"),
        format!(
            "max_statements = {}\ncheckpoint_secs = 5\nfsync = \"interval:5\"\n",
            nq + 10_000
        ),
    )
    .unwrap();
    let t = Instant::now();
    let files = write_rules(&work, dir, nq);
    println!(
        "# {} stored searches in {} files written in {:.1} s; {} cores, load {}",
        nq,
        files.len() - 1,
        t.elapsed().as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    let port = free_port();
    let (server, took) = start(&weir, port, &work, &files);
    let pid = server.child.id();
    let (r, hwm) = rss(pid);
    println!(
        "register searches={nq} parts={} seconds={:.1} rss_gb={r:.2} peak_gb={hwm:.2} bytes_per_search={:.0}",
        env("PARTS", 4),
        took.as_secs_f64(),
        r * 1024.0 * 1024.0 * 1024.0 / nq.max(1) as f64
    );

    // 2. Documents.
    let docs = read_tsv(&format!("{dir}/docs.tsv"));
    let mut bodies: Vec<String> = Vec::new();
    let mut cur = String::new();
    let ts = now_ms();
    for i in 0..ndocs {
        let d = &docs[i % docs.len()];
        cur.push_str(
            &serde_json::json!({"id": format!("d{i}"), "title": d[1], "body": d[2], "ts": ts + i as u64 / 100})
                .to_string(),
        );
        cur.push('\n');
        if (i + 1) % 200 == 0 || i + 1 == ndocs {
            bodies.push(std::mem::take(&mut cur));
        }
    }
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicU64::new(0));
    let base = server.base.clone();
    let t = Instant::now();
    let mut hs = Vec::new();
    for _ in 0..2 {
        let (bodies, next, base) = (bodies.clone(), next.clone(), base.clone());
        hs.push(std::thread::spawn(move || {
            let a = agent();
            let mut last = String::new();
            let mut retries = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= bodies.len() {
                    break;
                }
                loop {
                    match a
                        .post(&format!("{base}/v1/streams/news/events"))
                        .set("Content-Type", "application/x-ndjson")
                        .send_string(&bodies[i])
                    {
                        Ok(r) => {
                            last = position(r);
                            break;
                        }
                        Err(ureq::Error::Status(429 | 503, _)) if retries < 100_000 => {
                            retries += 1;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => panic!("post: {e}"),
                    }
                }
            }
            (last, retries)
        }));
    }
    let mut positions = Vec::new();
    let mut retries = 0;
    for h in hs {
        let (p, r) = h.join().unwrap();
        positions.push(p);
        retries += r;
    }
    let posted = t.elapsed();
    let a = agent();
    for p in &positions {
        if !p.is_empty() {
            wait_applied(&a, &base, None, p);
        }
    }
    let applied = t.elapsed();
    let metrics = a
        .get(&format!("{base}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    let outputs: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("weir_outputs_total") || l.starts_with("weir_outputs_written_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let (r, hwm) = rss(pid);
    println!(
        "docs n={ndocs} posted_s={:.2} applied_s={:.2} docs_per_s={:.0} outputs={outputs:.0} retries={retries} rss_gb={r:.2} peak_gb={hwm:.2} metrics_bytes={}",
        posted.as_secs_f64(),
        applied.as_secs_f64(),
        ndocs as f64 / applied.as_secs_f64(),
        metrics.len()
    );

    // 3. Statement changes, one at a time.
    let queries = read_tsv(&format!("{dir}/queries.tsv"));
    let mut answer = Vec::new();
    let mut visible = Vec::new();
    for (k, verb) in ["add", "drop"].iter().enumerate() {
        let mut ans = Vec::new();
        let mut vis = Vec::new();
        for i in 0..nchanges {
            let q = &queries[(nq + i) % queries.len()];
            let text = if k == 0 {
                format!(
                    "CREATE SEARCH extra_{i} AS FROM news WHERE body MATCHES {};",
                    quote(&q[1])
                )
            } else {
                format!("DROP SEARCH extra_{i};")
            };
            let t = Instant::now();
            let r = a
                .post(&format!("{base}/v1/statements"))
                .send_string(&text)
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            let p = position(r);
            ans.push(t.elapsed().as_secs_f64() * 1000.0);
            wait_applied(&a, &base, None, &p);
            vis.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        println!(
            "change {verb} n={nchanges} answer_ms_p50={:.1} p99={:.1} max={:.1} applied_ms_p50={:.1} p99={:.1} max={:.1}",
            pct(&mut ans, 0.5),
            pct(&mut ans, 0.99),
            pct(&mut ans, 1.0),
            pct(&mut vis, 0.5),
            pct(&mut vis, 0.99),
            pct(&mut vis, 1.0)
        );
        answer.extend(ans);
        visible.extend(vis);
    }
    let (r, hwm) = rss(pid);
    println!("after_changes rss_gb={r:.2} peak_gb={hwm:.2}");

    // 4. Restart with a checkpoint.
    std::thread::sleep(Duration::from_secs(6));
    let mut server = server;
    let t = Instant::now();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let status = server.child.wait().unwrap();
    let stop = t.elapsed();
    let (server2, took) = start(&weir, port, &work, &files);
    let (r, hwm) = rss(server2.child.id());
    println!(
        "restart stop_s={:.1} exit={status} ready_s={:.1} rss_gb={r:.2} peak_gb={hwm:.2}",
        stop.as_secs_f64(),
        took.as_secs_f64()
    );
    drop(server2);
    let log = std::fs::File::open(work.join("server.log")).ok();
    if let Some(log) = log {
        let errors = std::io::BufReader::new(log)
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.contains("ERROR"))
            .count();
        println!("server_log_errors={errors}");
    }
    if std::env::var("KEEP").is_err() {
        let _ = std::fs::remove_dir_all(work.join("data"));
    }
}
