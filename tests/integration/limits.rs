//! Every dimension a client controls is bounded: a request over a bound gets a clear refusal
//! that names the bound, and weft keeps serving everyone else.

use weft::grpc::proto::query_service_client::QueryServiceClient;
use weft::grpc::proto::{SearchLogsRequest, TailRequest};

use crate::bad_input::{logs_request, record};
use crate::common::TestServer;

/// Regression: one GET with 10,000 nested parentheses overflowed a runtime thread's stack and
/// aborted weft. Over HTTP, gRPC and the tail, it is now a 400 / INVALID_ARGUMENT that says
/// which limit it broke, and weft goes on answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_queries_are_refused_everywhere() {
    let server = TestServer::start().await;
    let nested = format!("{}a{}", "(".repeat(10_000), ")".repeat(10_000));
    let deep_but_short = format!("{}a{}", "(".repeat(1_000), ")".repeat(1_000));
    for q in [&nested, &deep_but_short] {
        for path in ["/api/v1/logs", "/api/v1/logs/histogram", "/api/v1/traces"] {
            let (status, body) = server.get(path, &[("q", q)]).await;
            assert_eq!(status, 400, "{path}: {body}");
            let error = body["error"].as_str().unwrap();
            assert!(
                error.contains("limit"),
                "{path}: the answer names the limit: {error}"
            );
        }
        let response = server
            .client
            .get(server.url("/api/v1/logs/tail"))
            .query(&[("q", q)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400);
    }
    let (_, body) = server.get("/api/v1/logs", &[("q", &deep_but_short)]).await;
    assert!(
        body["error"].as_str().unwrap().contains("deeper than 32"),
        "{body}"
    );

    let mut client = QueryServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .unwrap();
    for q in [&nested, &deep_but_short] {
        let status = client
            .search_logs(SearchLogsRequest {
                query: q.clone(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        let status = client
            .tail(TailRequest { query: q.clone() })
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }

    // Still alive and serving.
    let mut ingest = opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient::connect(format!("http://{}", server.grpc)).await.unwrap();
    ingest
        .export(logs_request("survivor", vec![record("still here", vec![])]))
        .await
        .unwrap();
    server.wait_for_logs("service:survivor", 1).await;
    server.stop().await;
}
