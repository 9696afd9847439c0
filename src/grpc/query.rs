//! `weft.v1.QueryService`: SearchLogs, GetTrace, SearchTraces and a streaming Tail, an adapter
//! over `crate::query::QueryService` with the semantics of the HTTP API (the same request
//! parsers, limits, defaults and errors; the codes in `super::status`).

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tonic::{Request, Response, Status};
use weft_index::{LogRow, SpanRow, TraceSummary};

use super::proto;
use super::proto::query_service_server::{QueryService, QueryServiceServer};
use crate::query::answers::Span;
use crate::query::requests::{SpanFilters, TraceSearchParams, log_search, trace_search};
use crate::query::tail::TailItem;

/// The service, ready to add to a tonic server.
pub fn service(query: Arc<crate::query::QueryService>) -> QueryServiceServer<Query> {
    QueryServiceServer::new(Query(query))
}

/// Implementation of `weft.v1.QueryService`.
pub struct Query(Arc<crate::query::QueryService>);

fn optional_time(nanos: u64) -> Option<String> {
    (nanos != 0).then(|| nanos.to_string())
}

fn optional_limit(limit: u32) -> Option<String> {
    (limit != 0).then(|| limit.to_string())
}

/// The caller's `authorization` metadata, passed on to other nodes by a search node.
fn authorization<T>(request: &Request<T>) -> Option<String> {
    request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn log_record(row: &LogRow) -> proto::LogRecord {
    proto::LogRecord {
        time_unix_nano: row.time_unix_nano,
        observed_time_unix_nano: row.observed_time_unix_nano,
        service: row.service.clone(),
        severity_number: row.severity_number,
        severity_text: row.severity_text.clone(),
        event: row.event.clone(),
        body: row.body_text(),
        trace_id: row.trace_id.clone(),
        span_id: row.span_id.clone(),
        attributes_json: weft_index::model::attributes_to_json(&row.attributes).to_string(),
        resource_json: weft_index::model::attributes_to_json(&row.resource).to_string(),
        scope_name: row.scope_name.clone(),
        scope_version: row.scope_version.clone(),
    }
}

fn span(row: &SpanRow) -> proto::Span {
    let json = Span::from(row);
    proto::Span {
        trace_id: row.trace_id.clone(),
        span_id: row.span_id.clone(),
        parent_span_id: row.parent_span_id.clone(),
        name: row.name.clone(),
        kind: row.kind_name().to_string(),
        service: row.service.clone(),
        start_time_unix_nano: row.start_time_unix_nano,
        end_time_unix_nano: row.end_time_unix_nano,
        status_code: weft_index::text::status_name(row.status_code).to_string(),
        status_message: row.status_message.clone(),
        attributes_json: json.attributes.to_string(),
        resource_json: json.resource.to_string(),
        events_json: serde_json::to_string(&json.events).unwrap_or_default(),
    }
}

fn summary(s: &TraceSummary) -> proto::TraceSummary {
    proto::TraceSummary {
        trace_id: s.trace_id.to_vec(),
        root_service: s.root_service.clone().unwrap_or_default(),
        root_name: s.root_name.clone().unwrap_or_default(),
        start_time_unix_nano: s.start_time_unix_nano,
        duration_ns: s.duration_ns,
        span_count: s.span_count as u32,
        error_count: s.error_count as u32,
        log_count: s.log_count as u32,
        services: s.services.iter().cloned().collect(),
        incomplete: s.incomplete,
    }
}

type TailStream = Pin<Box<dyn Stream<Item = Result<proto::TailResponse, Status>> + Send>>;

#[tonic::async_trait]
impl QueryService for Query {
    async fn search_logs(
        &self,
        request: Request<proto::SearchLogsRequest>,
    ) -> Result<Response<proto::SearchLogsResponse>, Status> {
        let authorization = authorization(&request);
        let r = request.into_inner();
        let search = log_search(
            &r.query,
            optional_time(r.start_unix_nano).as_deref(),
            optional_time(r.end_unix_nano).as_deref(),
            optional_limit(r.limit).as_deref(),
            Some(&r.cursor),
        )?;
        let found = self.0.search_logs(search, authorization.as_deref()).await?;
        let (page, missing_nodes) = (found.value, found.missing_nodes);
        Ok(Response::new(proto::SearchLogsResponse {
            logs: page.logs.iter().map(log_record).collect(),
            next_cursor: page.next_cursor.map(|c| c.encode()).unwrap_or_default(),
            more: page.more,
            missing_nodes,
        }))
    }

    async fn get_trace(
        &self,
        request: Request<proto::GetTraceRequest>,
    ) -> Result<Response<proto::GetTraceResponse>, Status> {
        let authorization = authorization(&request);
        let id = <[u8; 16]>::try_from(request.into_inner().trace_id.as_slice())
            .map_err(|_| Status::invalid_argument("trace_id must be 16 bytes"))?;
        let found = self.0.trace_rows(id, authorization.as_deref()).await?;
        let (rows, missing_nodes) = (found.value, found.missing_nodes);
        if rows.spans.is_empty() && rows.logs.is_empty() {
            return Err(Status::not_found(format!(
                "trace {} not found",
                hex::encode(id)
            )));
        }
        let s = TraceSummary::from_rows(id, &rows.spans, &rows.logs);
        Ok(Response::new(proto::GetTraceResponse {
            spans: rows.spans.iter().map(span).collect(),
            logs: rows.logs.iter().map(log_record).collect(),
            summary: Some(summary(&s)),
            truncated: rows.truncated,
            missing_nodes,
        }))
    }

    async fn search_traces(
        &self,
        request: Request<proto::SearchTracesRequest>,
    ) -> Result<Response<proto::SearchTracesResponse>, Status> {
        let authorization = authorization(&request);
        let r = request.into_inner();
        let search = trace_search(TraceSearchParams {
            filters: SpanFilters {
                service: Some(&r.service),
                operation: Some(&r.operation),
                q: Some(&r.query),
                errors_only: r.errors_only,
                ..SpanFilters::default()
            },
            start: optional_time(r.start_unix_nano).as_deref(),
            end: optional_time(r.end_unix_nano).as_deref(),
            min_duration_ns: (r.min_duration_ns != 0).then_some(r.min_duration_ns),
            max_duration_ns: (r.max_duration_ns != 0).then_some(r.max_duration_ns),
            limit: optional_limit(r.limit).as_deref(),
        })?;
        let found = self.0.find_traces(search, authorization.as_deref()).await?;
        Ok(Response::new(proto::SearchTracesResponse {
            traces: found.value.traces.iter().map(summary).collect(),
            limited: found.value.limited,
            missing_nodes: found.missing_nodes,
        }))
    }

    type TailStream = TailStream;

    async fn tail(
        &self,
        request: Request<proto::TailRequest>,
    ) -> Result<Response<TailStream>, Status> {
        let authorization = authorization(&request);
        let subscription = self
            .0
            .tail(&request.into_inner().query, authorization.as_deref())
            .await?;
        let stream = futures_util::stream::unfold(subscription, |mut sub| async move {
            let item = match sub.next().await? {
                TailItem::Log(row) => proto::tail_response::Item::Log(log_record(&row)),
                TailItem::Missed(n) => proto::tail_response::Item::Missed(n),
            };
            Some((Ok(proto::TailResponse { item: Some(item) }), sub))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
