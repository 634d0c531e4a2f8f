//! `/v1/statements`: apply statement text, list and read statements.
use super::{blocking, check_token, read_body, St};
use crate::serve::error::AppError;
use crate::serve::statements::apply_statements;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value as Json};

pub async fn post_statements(
    State(s): St,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AppError> {
    check_token(&s, &headers)?;
    let bytes = read_body(&s, &headers, body).await?;
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|e| AppError::new(400, "invalid_utf8", format!("the body is not UTF-8: {e}")))?;
    let s2 = s.clone();
    let r = blocking(move || apply_statements(&s2, &text)).await??;
    Ok(axum::Json(r).into_response())
}

pub fn statement_json(e: &dsl::check::Entry) -> Json {
    json!({
        "name": e.name,
        "kind": format!("{:?}", e.kind).to_lowercase(),
        "text": e.statement.to_string(),
        "from": e.from(),
        "output": serde_json::to_value(&e.output).unwrap_or(Json::Null),
        "statement": serde_json::to_value(&e.statement).unwrap_or(Json::Null),
    })
}

pub async fn list_statements(State(s): St) -> Response {
    let cur = s.current();
    let list: Vec<Json> = cur.catalog.entries().iter().map(statement_json).collect();
    axum::Json(json!({"statements": list})).into_response()
}

pub async fn get_statement(State(s): St, Path(name): Path<String>) -> Result<Response, AppError> {
    let cur = s.current();
    match cur.catalog.get(&name) {
        Some(e) => Ok(axum::Json(statement_json(e)).into_response()),
        None => Err(AppError::new(
            404,
            "unknown_statement",
            format!("no statement named `{name}`"),
        )),
    }
}
