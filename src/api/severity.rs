//! `/api/v1/severity/...`: rules (list, create, delete), the audit log, and the effective rules
//! of one service with an ETag long-poll, so services can filter at the source.
//!
//! Who may call what is decided in front of these handlers (`auth::policy`): reads need a read
//! or admin token, changes an admin token; a scoped admin token is further limited here to
//! rules whose service glob lies inside its scope.

use std::collections::HashMap;
use std::time::Duration;

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ApiError, ApiState};
use crate::auth::Principal;
use crate::severity::{CreateRule, SeverityError};

/// Longest a long-poll may wait.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// The principal the auth layer admitted, refused if its scope does not cover `service`.
/// Without one (a route reached around the auth layer) nothing is allowed.
fn admitted(
    state: &ApiState,
    principal: Option<Extension<Principal>>,
    service: Option<&str>,
) -> Result<Principal, ApiError> {
    let Some(Extension(principal)) = principal else {
        return Err(ApiError::Unauthorized(
            "rule changes need an admin token".into(),
        ));
    };
    if let Err(denied) = principal.check_scope(service) {
        state.auth_refused.count(&denied);
        return Err(ApiError::Forbidden(denied.message));
    }
    Ok(principal)
}

impl From<SeverityError> for ApiError {
    fn from(error: SeverityError) -> Self {
        match error {
            SeverityError::Invalid(m) => ApiError::bad_request(m),
            SeverityError::NotFound(_) => ApiError::not_found(error.to_string()),
            SeverityError::Io(e) => ApiError::internal(e.to_string()),
            SeverityError::Unavailable(_) => ApiError::unavailable(error.to_string()),
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
    principal: Option<Extension<Principal>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let request: CreateRule = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("body is not a valid rule: {e}")))?;
    let by = admitted(&state, principal, request.selector.service.as_deref())?.name;
    let control = state.severity.clone();
    let rule = tokio::task::spawn_blocking(move || control.create(request, &by))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok((StatusCode::CREATED, Json(state.severity.rule_json(&rule))).into_response())
}

pub(crate) async fn delete(
    State(state): State<ApiState>,
    principal: Option<Extension<Principal>>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    // With a shared metastore, the rule may come from another node since the last refresh.
    let control = state.severity.clone();
    tokio::task::spawn_blocking(move || control.refresh())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let service = state
        .severity
        .rules()
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| ApiError::from(SeverityError::NotFound(id.clone())))?
        .selector
        .service;
    let by = admitted(&state, principal, service.as_deref())?.name;
    let reason = params.get("reason").cloned().unwrap_or_default();
    let control = state.severity.clone();
    let rule = tokio::task::spawn_blocking(move || control.delete(&id, &by, &reason))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(Json(state.severity.rule_json(&rule)))
}

pub(crate) async fn audit(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    let control = state.severity.clone();
    let mut entries = tokio::task::spawn_blocking(move || control.audit_log())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
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
        .ok_or_else(|| ApiError::bad_request("parameter 'service' is required"))?;
    let wait = match params.get("wait") {
        None => Duration::ZERO,
        Some(w) => {
            let d = weft_index::text::duration(w)
                .map_err(|why| ApiError::bad_request(format!("wait {why}")))?;
            if d > MAX_WAIT {
                return Err(ApiError::bad_request("wait may be at most 60s"));
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
