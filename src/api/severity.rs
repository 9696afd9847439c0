//! `/api/v1/severity/...`: rules (list, create, delete), the audit log, and the effective rules
//! of one service with an ETag long-poll, so services can filter at the source.
//!
//! Reads are open. Changes need `Authorization: Bearer <secret>` of a configured admin token;
//! with no tokens configured they are accepted from loopback only.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ApiError, ApiState};
use crate::severity::{CreateRule, SeverityError};

/// Longest a long-poll may wait.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// Who may change rules: the token's name, or `loopback`. Secrets never leave this function.
pub(crate) fn authorize(
    tokens: &BTreeMap<String, String>,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if tokens.is_empty() {
        if peer.ip().is_loopback() {
            return Ok("loopback".into());
        }
        return Err(ApiError::Forbidden(
            "no admin tokens are configured, so rule changes are accepted from loopback only; \
             set admin_tokens in the config (name = \"secret\") or WEFT_ADMIN_TOKENS, and send \
             Authorization: Bearer <secret>"
                .into(),
        ));
    }
    let Some(presented) = presented else {
        return Err(ApiError::Unauthorized(
            "rule changes need Authorization: Bearer <admin token>".into(),
        ));
    };
    tokens
        .iter()
        .find(|(_, secret)| constant_time_eq(secret.as_bytes(), presented.as_bytes()))
        .map(|(name, _)| name.clone())
        .ok_or_else(|| ApiError::Unauthorized("the bearer token is not an admin token".into()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl From<SeverityError> for ApiError {
    fn from(error: SeverityError) -> Self {
        match error {
            SeverityError::Invalid(m) => ApiError::BadRequest(m),
            SeverityError::NotFound(_) => ApiError::NotFound(error.to_string()),
            SeverityError::Io(e) => ApiError::Internal(e.to_string()),
        }
    }
}

pub(crate) async fn list(State(state): State<ApiState>) -> Json<Value> {
    let rules: Vec<Value> = state
        .severity
        .rules()
        .iter()
        .map(|r| state.severity.rule_json(r))
        .collect();
    Json(json!({ "rules": rules }))
}

pub(crate) async fn create(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let by = authorize(&state.admin_tokens, peer, &headers)?;
    let request: CreateRule = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("body is not a valid rule: {e}")))?;
    let control = state.severity.clone();
    let rule = tokio::task::spawn_blocking(move || control.create(request, &by))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok((StatusCode::CREATED, Json(state.severity.rule_json(&rule))).into_response())
}

pub(crate) async fn delete(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let by = authorize(&state.admin_tokens, peer, &headers)?;
    let reason = params.get("reason").cloned().unwrap_or_default();
    let control = state.severity.clone();
    let rule = tokio::task::spawn_blocking(move || control.delete(&id, &by, &reason))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(Json(state.severity.rule_json(&rule)))
}

pub(crate) async fn audit(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let control = state.severity.clone();
    let mut entries = tokio::task::spawn_blocking(move || control.audit_log())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    entries.reverse();
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|e| {
            json!({
                "at_unix_nano": e.at.to_string(),
                "action": e.action,
                "by": e.by,
                "reason": e.reason,
                "rule": e.rule,
            })
        })
        .collect();
    Ok(Json(json!({ "entries": entries })))
}

/// `GET /api/v1/severity/effective?service=X[&wait=30s]`. With `If-None-Match` equal to the
/// current ETag and a `wait`, the answer is held until the service's rules change (200 with the
/// new ETag) or the wait ends (304).
pub(crate) async fn effective(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let service = params
        .get("service")
        .filter(|s| !s.is_empty())
        .cloned()
        .ok_or_else(|| ApiError::BadRequest("parameter 'service' is required".into()))?;
    let wait = match params.get("wait") {
        None => Duration::ZERO,
        Some(w) => {
            let d = crate::config::parse_duration(w).map_err(ApiError::BadRequest)?;
            if d > MAX_WAIT {
                return Err(ApiError::BadRequest("wait may be at most 60s".into()));
            }
            d
        }
    };
    let known = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut changes = state.severity.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        changes.mark_unchanged();
        let (tag, rules) = state.severity.effective(&service);
        if known.as_deref() != Some(tag.as_str()) {
            let rules: Vec<Value> = rules.iter().map(|r| state.severity.rule_json(r)).collect();
            let mut response =
                Json(json!({"service": service, "etag": tag, "rules": rules})).into_response();
            response.headers_mut().insert(
                header::ETAG,
                HeaderValue::from_str(&tag).expect("hex is a valid header"),
            );
            return Ok(response);
        }
        let mut stop = state.shutdown.clone();
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep_until(deadline) => break,
            _ = stop.changed() => break,
        }
    }
    let (tag, _) = state.severity.effective(&service);
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    response.headers_mut().insert(
        header::ETAG,
        HeaderValue::from_str(&tag).expect("hex is a valid header"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn without_tokens_only_loopback_may_change_rules() {
        let none = BTreeMap::new();
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let local6: SocketAddr = "[::1]:5000".parse().unwrap();
        let remote: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        assert_eq!(authorize(&none, local, &headers(None)).unwrap(), "loopback");
        assert_eq!(
            authorize(&none, local6, &headers(None)).unwrap(),
            "loopback"
        );
        let err = authorize(&none, remote, &headers(None)).unwrap_err();
        assert!(matches!(err, ApiError::Forbidden(_)));
        assert!(err.to_string().contains("admin_tokens"));
    }

    #[test]
    fn with_tokens_the_bearer_names_the_author() {
        let tokens = BTreeMap::from([("alice".to_string(), "correct horse".to_string())]);
        let remote: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(
            authorize(&tokens, remote, &headers(Some("Bearer correct horse"))).unwrap(),
            "alice"
        );
        // Loopback is no exception once tokens exist.
        assert!(matches!(
            authorize(&tokens, local, &headers(None)),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(matches!(
            authorize(&tokens, remote, &headers(Some("Bearer wrong"))),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(matches!(
            authorize(&tokens, remote, &headers(Some("correct horse"))),
            Err(ApiError::Unauthorized(_))
        ));
    }
}
