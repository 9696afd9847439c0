//! A service wired to weft both ways: it exports logs (event IDs via `name:`) and spans over
//! OTLP/gRPC, and `weft-client` applies weft's severity rules to what it emits.
//!
//! ```sh
//! cargo run -- serve &                              # a weft on the default ports
//! cargo run --example checkout_service              # emits INFO; DEBUG stays off
//! cargo run -- severity set --service checkout --min debug --ttl 2m --reason demo
//! # within a second or two DEBUG `CacheProbe` events arrive in weft; they stop after 2 minutes
//! ```
//! Options: `--grpc 127.0.0.1:4317 --http 127.0.0.1:4318 --service checkout --for 300s`.
//! Prints `seq N` after each unit of work, so scripts can follow its progress.

use std::time::{Duration, Instant};

use opentelemetry::trace::{TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_otlp::{LogExporter, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::prelude::*;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn main() {
    let grpc = arg("--grpc", "127.0.0.1:4317");
    let http = arg("--http", "127.0.0.1:4318");
    let service = arg("--service", "checkout");
    let run_for = humantime::parse_duration(&arg("--for", "300s")).expect("--for is a duration");

    // The OTLP/gRPC exporters need a Tokio runtime for their connections; the work itself runs
    // on this thread.
    let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime");
    let _entered = runtime.enter();
    let resource = Resource::builder()
        .with_service_name(service.clone())
        .build();
    let logs = LogExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://{grpc}"))
        .build()
        .expect("log exporter");
    let spans = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(format!("http://{grpc}"))
        .build()
        .expect("span exporter");
    let logger_provider = SdkLoggerProvider::builder()
        .with_resource(resource.clone())
        .with_simple_exporter(logs)
        .build();
    let tracer_provider = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_simple_exporter(spans)
        .build();

    let (filter, _watch) =
        weft_client::SeverityFilter::builder(&format!("http://{http}"), &service)
            .default_level(tracing::Level::INFO)
            .start();
    // A copy of the filter, to say when an operator's rule turns DEBUG on or off.
    let debug_watch = filter.clone();
    tracing_subscriber::registry()
        .with(OpenTelemetryTracingBridge::new(&logger_provider).with_filter(filter))
        .init();

    let tracer = tracer_provider.tracer("checkout");
    let started = Instant::now();
    let mut seq: u64 = 0;
    let mut debug_on = false;
    while started.elapsed() < run_for {
        // Decided before this order's events: once it prints `off at seq N`, no DEBUG event of
        // seq N or later passes the filter.
        let on = debug_watch.enabled_for(tracing::Level::DEBUG, "checkout_service");
        if on != debug_on {
            println!("debug {} at seq {seq}", if on { "on" } else { "off" });
            debug_on = on;
        }
        let span = tracer
            .span_builder("POST /checkout")
            .with_attributes([KeyValue::new("order.seq", seq as i64)])
            .start(&tracer);
        let cx = Context::current_with_span(span);
        {
            let _active = cx.clone().attach();
            tracing::info!(name: "OrderPlaced", seq, "order {seq} placed");
            // Costly detail an operator only wants during an incident.
            tracing::debug!(name: "CacheProbe", seq, "cache probe for order {seq}: 3 hits, 1 miss");
        }
        cx.span().end();
        println!("seq {seq}");
        seq += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = logger_provider.shutdown();
    let _ = tracer_provider.shutdown();
}
