//! `weft.v1.QueryService` answers as the HTTP API does.

use std::collections::BTreeSet;
use std::time::Duration;

use weft::grpc::proto::query_service_client::QueryServiceClient;
use weft::grpc::proto::{
    GetTraceRequest, SearchLogsRequest, SearchTracesRequest, TailRequest, tail_response,
};

use crate::bad_input::{logs_request, record};
use crate::query_api::loaded;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_queries_match_the_data_set() {
    let (server, data) = loaded().await;
    let mut client = QueryServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap();

    // Paged search over gRPC returns exactly the matching records, newest first.
    let mut bodies = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = client
            .search_logs(SearchLogsRequest {
                query: "severity>=WARN".into(),
                start_unix_nano: data.start,
                end_unix_nano: data.end,
                limit: 4,
                cursor: cursor.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        bodies.extend(page.logs.iter().map(|l| l.body.clone()));
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    let mut want: Vec<&crate::dataset::SentLog> =
        data.logs.iter().filter(|l| l.severity >= 13).collect();
    want.sort_by_key(|l| std::cmp::Reverse(l.time));
    assert_eq!(
        bodies,
        want.iter().map(|l| l.body.clone()).collect::<Vec<_>>()
    );

    let trace = client
        .get_trace(GetTraceRequest {
            trace_id: data.cross_hour_trace.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(trace.spans.len(), 2);
    assert_eq!(trace.logs.len(), 3);
    let summary = trace.summary.unwrap();
    assert_eq!(summary.root_name, "GET /slow");
    assert_eq!(summary.duration_ns, 4_000_000_000);

    let missing = client
        .get_trace(GetTraceRequest {
            trace_id: vec![0xcd; 16],
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let bad = client
        .get_trace(GetTraceRequest {
            trace_id: vec![1; 3],
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    let bad = client
        .search_logs(SearchLogsRequest {
            query: "a AND (b".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("position 8"), "{}", bad.message());

    let found = client
        .search_traces(SearchTracesRequest {
            service: "payments".into(),
            errors_only: true,
            start_unix_nano: data.start,
            end_unix_nano: data.end,
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: BTreeSet<Vec<u8>> = found.traces.iter().map(|t| t.trace_id.clone()).collect();
    let want: BTreeSet<Vec<u8>> = data
        .spans
        .iter()
        .filter(|s| s.error)
        .map(|s| s.trace_id.clone())
        .collect();
    assert_eq!(ids, want);

    // Tail: a stream of new matching records.
    let mut stream = client
        .tail(TailRequest {
            query: "service:grpctail".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut ingest = opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient::connect(format!("http://{}", server.grpc)).await.unwrap();
    // The subscription is live once the call returned; send until the record comes through.
    let received = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            ingest
                .export(logs_request("grpctail", vec![record("over grpc", vec![])]))
                .await
                .unwrap();
            if let Ok(Some(item)) =
                tokio::time::timeout(Duration::from_millis(500), stream.message())
                    .await
                    .unwrap_or(Ok(None))
                    .map(|m| m.and_then(|r| r.item))
            {
                return item;
            }
        }
    })
    .await
    .expect("tail delivered a record");
    match received {
        tail_response::Item::Log(log) => {
            assert_eq!(log.service, "grpctail");
            assert_eq!(log.body, "over grpc");
        }
        other => panic!("unexpected {other:?}"),
    }
    server.stop().await;
}
