//! Cross-site and DNS-rebinding protection (api.md, second wave): a request whose `Host`
//! is not the listen address, `localhost`, or allowed with `--allow-host` is refused
//! (403 `host_refused`); a request with an `Origin` that is not the service's own origin
//! or allowed with `--allow-origin` is refused (403 `origin_refused`), WebSocket
//! upgrades included. Requests without `Origin` (curl, scripts, other services) pass.
//! Without it a web page open in the operator's browser could `POST /v1/statements` with
//! `Content-Type: text/plain` (no CORS preflight), open the WebSocket, or reach the
//! service through a DNS name it controls (rebinding).

use super::app::App;
use super::error::AppError;
use axum::extract::{Request, State};
use axum::http::header::{HOST, ORIGIN};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;

/// Which `Host` and `Origin` values are accepted.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    /// The IP the service listens on (None: a name, or not known).
    pub listen_ip: Option<IpAddr>,
    /// `--allow-host`: host names or `host:port`, case-insensitive; `*` allows any.
    pub allow_hosts: Vec<String>,
    /// `--allow-origin`: exact origins (`https://console.example:8443`); `*` allows any.
    pub allow_origins: Vec<String>,
}

/// `name` and optional port of a `Host` value (`[::1]:80` → `::1`).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

impl Guard {
    pub fn new(listen: &str, allow_hosts: Vec<String>, allow_origins: Vec<String>) -> Guard {
        Guard {
            listen_ip: host_name(listen).parse().ok(),
            allow_hosts,
            allow_origins,
        }
    }

    pub fn host_ok(&self, host: &str) -> bool {
        let name = host_name(host);
        if name.eq_ignore_ascii_case("localhost") {
            return true;
        }
        if self
            .allow_hosts
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(host) || a.eq_ignore_ascii_case(name))
        {
            return true;
        }
        // An IP literal cannot be rebound: the listen IP itself, any loopback address
        // when listening on one, any address when listening on all of them.
        match (name.parse::<IpAddr>(), self.listen_ip) {
            (Ok(ip), Some(l)) => {
                ip == l || l.is_unspecified() || (l.is_loopback() && ip.is_loopback())
            }
            (Ok(_), None) => true,
            (Err(_), _) => false,
        }
    }

    pub fn origin_ok(&self, origin: &str, host: Option<&str>) -> bool {
        if self
            .allow_origins
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
        {
            return true;
        }
        // The service's own origin (the console it serves).
        host.is_some_and(|h| {
            origin.eq_ignore_ascii_case(&format!("http://{h}"))
                || origin.eq_ignore_ascii_case(&format!("https://{h}"))
        })
    }

    /// The verdict on a request's headers.
    pub fn check(&self, headers: &axum::http::HeaderMap) -> Result<(), AppError> {
        let host = match headers.get(HOST).map(|h| h.to_str()) {
            None => None,
            Some(Ok(h)) => Some(h),
            Some(Err(_)) => {
                return Err(AppError::new(
                    403,
                    "host_refused",
                    "the Host header is not text",
                ))
            }
        };
        if let Some(h) = host {
            if !self.host_ok(h) {
                return Err(AppError::new(
                    403,
                    "host_refused",
                    format!("Host `{h}` is not this service's address, localhost, or allowed with --allow-host"),
                ));
            }
        }
        if let Some(o) = headers.get(ORIGIN) {
            let o = o.to_str().unwrap_or("");
            if !self.origin_ok(o, host) {
                return Err(AppError::new(
                    403,
                    "origin_refused",
                    format!("requests from the web origin `{o}` are refused; allow it with --allow-origin"),
                ));
            }
        }
        Ok(())
    }
}

/// The middleware every route goes through.
pub async fn guard(State(s): State<App>, req: Request, next: Next) -> Response {
    match s.settings.guard.check(req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let g = Guard::new("127.0.0.1:7878", vec!["weir.internal".into()], vec![]);
        assert!(g.host_ok("127.0.0.1:7878"));
        assert!(g.host_ok("localhost:7878"));
        assert!(g.host_ok("LOCALHOST"));
        assert!(g.host_ok("[::1]:7878"));
        assert!(g.host_ok("weir.internal:7878"));
        assert!(!g.host_ok("evil.example:7878"));
        assert!(!g.host_ok("10.0.0.1:7878"));
        let any = Guard::new("0.0.0.0:7878", vec![], vec![]);
        assert!(any.host_ok("10.1.2.3:7878"));
        assert!(!any.host_ok("rebind.example:7878"));
    }

    #[test]
    fn origins() {
        let g = Guard::new(
            "127.0.0.1:7878",
            vec![],
            vec!["https://console.example".into()],
        );
        assert!(g.origin_ok("http://127.0.0.1:7878", Some("127.0.0.1:7878")));
        assert!(g.origin_ok("https://console.example", Some("127.0.0.1:7878")));
        assert!(!g.origin_ok("http://evil.example", Some("127.0.0.1:7878")));
        assert!(!g.origin_ok("null", Some("127.0.0.1:7878")));
        assert!(!g.origin_ok("http://127.0.0.1:7878", None));
    }
}
