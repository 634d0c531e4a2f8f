//! `weir serve`: configuration (flags > environment > `--config` TOML file > defaults),
//! logging, the runtime, and graceful shutdown (SIGTERM / ctrl-c: stop accepting, the
//! workers checkpoint what they applied and stop — a backlog is replayed at the next
//! start — flush the log, exit 0).

use crate::check_cmd::{collect_files, read_text};
use crate::serve::{self, state::Settings};
use anyhow::{bail, Context as _};
use serde::Deserialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;
use weir_log::{FsyncPolicy, LogConfig, Visibility};

#[derive(clap::Args, Default)]
pub struct Args {
    /// Address to listen on (default 127.0.0.1:7878).
    #[arg(long, env = "WEIR_LISTEN")]
    pub listen: Option<String>,
    /// Data directory (default ./weir-data).
    #[arg(long, env = "WEIR_DATA")]
    pub data: Option<PathBuf>,
    /// Statement files or folders of `*.weir` files applied at start (if they change anything).
    #[arg(long, num_args = 1..)]
    pub rules: Vec<PathBuf>,
    /// Partitions (and worker threads) per stream (default 4).
    #[arg(long, env = "WEIR_PARTITIONS")]
    pub partitions: Option<u32>,
    /// fsync policy: always | interval:MS | never (default always).
    #[arg(long, env = "WEIR_FSYNC")]
    pub fsync: Option<String>,
    /// Bearer token required on every write and admin endpoint.
    #[arg(long, env = "WEIR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// TOML configuration file (keys as the long flags, with `_` for `-`).
    #[arg(long, env = "WEIR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Largest request body in bytes (default 16 MiB).
    #[arg(long, env = "WEIR_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Seconds between checkpoints of each worker (default 10).
    #[arg(long, env = "WEIR_CHECKPOINT_SECS")]
    pub checkpoint_secs: Option<f64>,
    /// Ingest answers 429 when a partition's workers lag by more events than this (default 1000000).
    #[arg(long, env = "WEIR_MAX_LAG")]
    pub max_lag: Option<u64>,
    /// Web origins (scheme://host[:port]) allowed to call the API from a browser, besides
    /// the service's own; `*` allows any (repeat or separate with commas).
    #[arg(long, env = "WEIR_ALLOW_ORIGIN", value_delimiter = ',')]
    pub allow_origin: Vec<String>,
    /// Host header values (names or name:port) accepted besides the listen address and
    /// localhost; `*` allows any (repeat or separate with commas).
    #[arg(long, env = "WEIR_ALLOW_HOST", value_delimiter = ',')]
    pub allow_host: Vec<String>,
    /// Seconds a client has to send a request's headers (default 10; slow clients are cut).
    #[arg(long, env = "WEIR_HEADER_TIMEOUT_SECS")]
    pub header_timeout_secs: Option<f64>,
    /// Open connections allowed per client IP (default 256).
    #[arg(long, env = "WEIR_MAX_CONNECTIONS_PER_CLIENT")]
    pub max_connections_per_client: Option<usize>,
    /// Kafka mode: bootstrap brokers HOST:PORT[,…]; the log is Kafka instead of the data directory.
    #[arg(long, env = "WEIR_KAFKA")]
    pub kafka: Option<String>,
    /// Kafka mode: consumer group of the instances that share the work (default weir).
    #[arg(long, env = "WEIR_GROUP")]
    pub group: Option<String>,
    /// Kafka mode: prefix of weir's topic names (default `weir.`).
    #[arg(long, env = "WEIR_TOPIC_PREFIX")]
    pub topic_prefix: Option<String>,
    /// Kafka mode: consumer-group session timeout in ms — how soon a dead instance's
    /// partitions move (default 10000).
    #[arg(long, env = "WEIR_KAFKA_SESSION_MS")]
    pub kafka_session_ms: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data: Option<PathBuf>,
    rules: Option<Vec<PathBuf>>,
    partitions: Option<u32>,
    fsync: Option<String>,
    token: Option<String>,
    max_body_bytes: Option<usize>,
    max_statement_bytes: Option<usize>,
    max_statements: Option<usize>,
    checkpoint_secs: Option<f64>,
    max_lag: Option<u64>,
    max_subscriptions: Option<usize>,
    kafka: Option<String>,
    group: Option<String>,
    topic_prefix: Option<String>,
    kafka_session_ms: Option<u64>,
    allow_origin: Option<Vec<String>>,
    allow_host: Option<Vec<String>>,
    header_timeout_secs: Option<f64>,
    max_connections_per_client: Option<usize>,
    /// Log segment size in bytes (default 64 MiB) and retention per partition of every
    /// topic but `statements` (docs/durability.md).
    segment_bytes: Option<u64>,
    retention_bytes: Option<u64>,
    retention_secs: Option<f64>,
    retention_check_secs: Option<f64>,
}

/// A list setting: the flag's (or environment's) values if any, else the file's.
fn pick_list(flag: Vec<String>, file: Option<Vec<String>>) -> Vec<String> {
    let v = if flag.is_empty() {
        file.unwrap_or_default()
    } else {
        flag
    };
    v.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn secs(v: Option<f64>, key: &str) -> anyhow::Result<Option<Duration>> {
    match v {
        None => Ok(None),
        Some(x) if x.is_finite() && x > 0.0 => Ok(Some(Duration::from_secs_f64(x))),
        Some(x) => bail!("`{key}` must be a positive number of seconds, got {x}"),
    }
}

fn parse_fsync(s: &str) -> anyhow::Result<FsyncPolicy> {
    match s {
        "always" => Ok(FsyncPolicy::Always),
        "never" => Ok(FsyncPolicy::Never),
        _ => match s.strip_prefix("interval:").map(|m| m.parse::<u64>()) {
            Some(Ok(ms)) if ms > 0 => Ok(FsyncPolicy::Interval(Duration::from_millis(ms))),
            _ => bail!("--fsync takes always, interval:MS (MS > 0) or never; got `{s}`"),
        },
    }
}

pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: log files and journald get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let file: FileConfig = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("{}: invalid configuration", p.display()))?
        }
        None => FileConfig::default(),
    };
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| "127.0.0.1:7878".into());
    let data = args
        .data
        .or(file.data)
        .unwrap_or_else(|| "weir-data".into());
    let rules = if args.rules.is_empty() {
        file.rules.unwrap_or_default()
    } else {
        args.rules
    };
    let partitions = args
        .partitions
        .or(file.partitions)
        .unwrap_or(Settings::default().partitions);
    if partitions == 0 || partitions > 256 {
        bail!("--partitions must be between 1 and 256");
    }
    let fsync = parse_fsync(&args.fsync.or(file.fsync).unwrap_or_else(|| "always".into()))?;
    let checkpoint_secs = args
        .checkpoint_secs
        .or(file.checkpoint_secs)
        .unwrap_or(10.0);
    if !(checkpoint_secs > 0.0 && checkpoint_secs < 86_400.0) {
        bail!("--checkpoint-secs must be positive");
    }
    let d = Settings::default();
    let settings = Settings {
        partitions,
        token: args.token.or(file.token).filter(|t| !t.is_empty()),
        max_body_bytes: args
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(d.max_body_bytes),
        max_statement_bytes: file.max_statement_bytes.unwrap_or(d.max_statement_bytes),
        max_statements: file.max_statements.unwrap_or(d.max_statements),
        max_lag: args.max_lag.or(file.max_lag).unwrap_or(d.max_lag),
        checkpoint_interval: Duration::from_secs_f64(checkpoint_secs),
        max_subscriptions: file.max_subscriptions.unwrap_or(d.max_subscriptions),
        guard: serve::guard::Guard::new(
            &listen,
            pick_list(args.allow_host, file.allow_host),
            pick_list(args.allow_origin, file.allow_origin),
        ),
        clock: d.clock.clone(),
    };
    let log_cfg = LogConfig {
        fsync,
        // Under `always`, readers see only fsynced records; otherwise what is written
        // (a process crash loses nothing written).
        visibility: if fsync == FsyncPolicy::Always {
            Visibility::Durable
        } else {
            Visibility::Written
        },
        segment_bytes: file.segment_bytes.unwrap_or(64 << 20),
        retention: weir_log::Retention {
            max_bytes: file.retention_bytes,
            max_age: secs(file.retention_secs, "retention_secs")?,
        },
        retention_check_interval: secs(file.retention_check_secs, "retention_check_secs")?
            .unwrap_or(Duration::from_secs(30)),
        ..LogConfig::default()
    };
    let mut limits = serve::listen::Limits::default();
    if let Some(t) = secs(
        args.header_timeout_secs.or(file.header_timeout_secs),
        "header_timeout_secs",
    )? {
        limits.header_timeout = t;
    }
    match args
        .max_connections_per_client
        .or(file.max_connections_per_client)
    {
        Some(0) => bail!("--max-connections-per-client must be at least 1"),
        Some(n) => limits.max_per_client = n,
        None => {}
    }
    let mut rule_texts = Vec::new();
    if !rules.is_empty() {
        for f in collect_files(&rules)? {
            rule_texts.push((f.display().to_string(), read_text(&f)?));
        }
    }
    let kafka = args.kafka.or(file.kafka).filter(|k| !k.trim().is_empty());
    let group = args.group.or(file.group);
    let prefix = args.topic_prefix.or(file.topic_prefix);
    let session_ms = args.kafka_session_ms.or(file.kafka_session_ms);
    if kafka.is_none() && (group.is_some() || prefix.is_some() || session_ms.is_some()) {
        bail!("--group, --topic-prefix and --kafka-session-ms need --kafka HOST:PORT");
    }
    let (app, workers) = match kafka {
        Some(bootstrap) => {
            let mut cfg = weir_kafka::KafkaConfig::new(bootstrap);
            if let Some(g) = group {
                cfg.group = g;
            }
            if let Some(p) = prefix {
                cfg.topic_prefix = p;
            }
            if let Some(ms) = session_ms {
                if !(1000..=600_000).contains(&ms) {
                    bail!("--kafka-session-ms must be between 1000 and 600000");
                }
                cfg.session_timeout = Duration::from_millis(ms);
            }
            cfg.client_id = format!("weir-{}", std::process::id());
            serve::open_kafka(cfg, settings)?
        }
        None => {
            std::fs::create_dir_all(&data)
                .with_context(|| format!("cannot create {}", data.display()))?;
            serve::open(&data, log_cfg, settings)?
        }
    };
    let shared = app.shared.clone();
    let mut background = Vec::new();
    if shared.kafka.is_some() {
        background.push(serve::statements::start_statement_follower(app.clone()));
    }
    serve::apply_rule_files(&app, &rule_texts)?;
    let handles = serve::start_workers(&shared, workers);
    if shared.kafka.is_some() {
        background.push(serve::kafka::start_group(shared.clone())?);
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let shared2 = shared.clone();
    let app2 = app.clone();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        tracing::info!(listen = %listener.local_addr()?, data = %data.display(), kafka = shared2.kafka.is_some(), "weir serve listening");
        let router = serve::routes::app(app2);
        serve::listen::serve(listener, router, limits, async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            shared2.shutdown.store(true, Ordering::SeqCst);
            shared2.wake_workers();
        })
        .await;
        anyhow::Ok(())
    })?;
    shared.shutdown.store(true, Ordering::SeqCst);
    shared.wake_workers();
    for h in background {
        let _ = h.join();
    }
    for h in handles {
        let _ = h.join();
    }
    if let Err(e) = shared.log.sync() {
        tracing::error!(error = %e, "final sync failed");
    }
    rt.shutdown_timeout(Duration::from_secs(1));
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
