//! `weir serve`'s HTTP accept loop (instead of `axum::serve`), for two limits a slow or
//! hostile client must not get around (issue 19, item 5, "slowloris": 3,000 half-sent
//! requests stayed open indefinitely):
//!
//! - **header read timeout**: a request's headers must arrive within
//!   `header_timeout` (default 10 s) of its first byte — hyper's HTTP/1 timer, which
//!   `axum::serve` does not set; the connection is closed otherwise;
//! - **connections per client**: at most `max_per_client` open connections per client IP
//!   (default 256); more are closed at once (and counted in the log at debug level).
//!
//! Shutdown: stop accepting, ask every connection to finish its request and close, and
//! wait for them at most `drain` (SSE and WebSocket streams end on shutdown).

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// The connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_per_client: usize,
    pub drain: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            max_per_client: 256,
            drain: Duration::from_secs(10),
        }
    }
}

type Counts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One open connection of a client; gives its slot back when dropped.
struct Slot {
    counts: Counts,
    ip: IpAddr,
}

impl Slot {
    fn take(counts: &Counts, ip: IpAddr, max: usize) -> Option<Slot> {
        let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = c.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = c.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.remove(&self.ip);
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let counts: Counts = Arc::new(Mutex::new(HashMap::new()));
    let (close_tx, close_rx) = tokio::sync::watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            _ = &mut shutdown => break,
            // Reap finished connection tasks as they end.
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off a little.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = Slot::take(&counts, addr.ip(), limits.max_per_client) else {
            tracing::debug!(client = %addr.ip(), limit = limits.max_per_client, "too many connections from one client; closed");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let svc = TowerToHyperService::new(router.clone());
        let mut close = close_rx.clone();
        conns.spawn(async move {
            let _slot = slot;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::trace!(error = %e, "connection ended with an error");
                    }
                }
                _ = async { let _ = close.wait_for(|c| *c).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(listener);
    let _ = close_tx.send(true);
    let _ = tokio::time::timeout(limits.drain, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
}
