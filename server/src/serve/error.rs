//! The API's error answer: status, code, message and details, rendered as
//! `{"error": {"code", "message", ...}}` (docs/api.md). Every layer returns it; the
//! handlers turn it into a response ([`IntoResponse`]).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value as Json};

/// An API error: status, code, message and details.
#[derive(Debug)]
pub struct AppError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    pub details: serde_json::Map<String, Json>,
}

impl AppError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> AppError {
        AppError {
            status,
            code,
            message: message.into(),
            details: serde_json::Map::new(),
        }
    }
    pub fn with(mut self, key: &str, v: Json) -> AppError {
        self.details.insert(key.to_string(), v);
        self
    }
    pub fn body(&self) -> Json {
        let mut e = serde_json::Map::new();
        e.insert("code".into(), self.code.into());
        e.insert("message".into(), self.message.clone().into());
        for (k, v) in &self.details {
            e.insert(k.clone(), v.clone());
        }
        json!({ "error": e })
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, axum::Json(self.body())).into_response();
        if self.status == 429 || self.status == 503 {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}
