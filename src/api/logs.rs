//! `GET /api/v1/logs`: log search, newest first.

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};
use weft_index::query::parse;
use weft_index::store::Scope;
use weft_index::{LogCursor, LogPage, LogRow, LogSearch, RowBatch};

use super::params::{limit, time_range};
use super::traces::authorization;
use super::{ApiError, ApiState};
use crate::fanout::InternalRows;

/// A log search from its parameters as text, with the API's defaults and limits; HTTP and
/// gRPC both build theirs here.
pub(crate) fn log_search(
    q: &str,
    start: Option<&str>,
    end: Option<&str>,
    page_size: Option<&str>,
    cursor: Option<&str>,
) -> Result<LogSearch, ApiError> {
    let query = parse(q)?;
    let (start, end) = time_range(start, end)?;
    let limit = limit(
        page_size,
        super::limits::DEFAULT_LOGS,
        super::limits::MAX_LOGS,
    )?;
    Ok(LogSearch {
        query,
        start_unix_nano: start,
        end_unix_nano: end,
        limit,
        cursor: super::params::cursor(cursor)?,
    })
}

pub(crate) async fn search(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let get = |k: &str| params.get(k).map(String::as_str);
    let q = get("q").unwrap_or("");
    let search = log_search(q, get("start"), get("end"), get("limit"), get("cursor"))?;
    let (page, missing) = log_page(&state, search, q, authorization(&headers)).await?;
    let logs: Vec<Value> = page.logs.iter().map(|r| r.to_json()).collect();
    Ok(Json(json!({
        "logs": logs,
        "next_cursor": page.next_cursor.map(|c| c.encode()),
        "more": page.more,
        // Ingest nodes that did not answer: their records not yet published are not here.
        "partial": !missing.is_empty(),
        "missing_nodes": missing,
        "took_ms": started.elapsed().as_millis() as u64,
    })))
}

/// `GET /api/v1/internal/logs`: this node's log records not yet in a published split that
/// match a search (the parameters of `/api/v1/logs`), and the partitions listed, for a search
/// node (`crate::fanout`).
pub(crate) async fn internal_search(
    State(state): State<ApiState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<InternalRows>, ApiError> {
    let get = |k: &str| params.get(k).map(String::as_str);
    let search = log_search(
        get("q").unwrap_or(""),
        get("start"),
        get("end"),
        get("limit"),
        get("cursor"),
    )?;
    let (page, listed) = state
        .run_query(move |store, _| Ok(store.search_logs_in(&search, &Scope::Unpublished)?))
        .await?;
    let node = state.cluster.as_ref().map(|c| c.me().id.clone());
    let batch = RowBatch {
        logs: page.logs,
        spans: Vec::new(),
    };
    Ok(Json(InternalRows::new(node, batch, page.more, &listed)))
}

/// A page of `search` (whose query text is `q`), and the ingest nodes that did not answer.
/// On a search node, each live ingest node gives its page of records not yet published, the
/// splits give theirs, and the newest `limit` of them all make the page: the cursor is a
/// position in one order shared by every node, so the next page continues each source
/// where this one stopped, with no gap and no repeat.
pub(crate) async fn log_page(
    state: &ApiState,
    search: LogSearch,
    q: &str,
    authorization: Option<String>,
) -> Result<(LogPage, Vec<String>), ApiError> {
    let Some(fanout) = state.fanout.clone() else {
        let page = state
            .run_query(move |store, _| Ok(store.search_logs(&search)?))
            .await?;
        return Ok((page, Vec::new()));
    };
    let gathered = fanout.logs(&search, q, authorization.as_deref()).await;
    let answered = Scope::Except(gathered.covered());
    let limit = search.limit;
    let (local, _) = state
        .run_query(move |store, _| Ok(store.search_logs_in(&search, &answered)?))
        .await?;
    let mut more = local.more;
    let mut rows: Vec<(LogCursor, LogRow)> = local
        .logs
        .into_iter()
        .map(|row| (LogCursor::of(&row), row))
        .collect();
    for answer in gathered.answers {
        more |= answer.more;
        rows.extend(
            answer
                .rows
                .logs
                .into_iter()
                .map(|row| (LogCursor::of(&row), row)),
        );
    }
    rows.sort_by_key(|(key, _)| std::cmp::Reverse(*key));
    if rows.len() > limit {
        more = true;
        rows.truncate(limit);
    }
    let next_cursor = if more {
        rows.last().map(|(key, _)| *key)
    } else {
        None
    };
    let page = LogPage {
        logs: rows.into_iter().map(|(_, row)| row).collect(),
        more,
        next_cursor,
    };
    Ok((page, gathered.missing))
}
