//! weft: a collector and store for OpenTelemetry logs and traces, joined on trace ID.
//!
//! Layers, top to bottom; each module uses only modules below it (no circle:
//! `scripts/modgraph.py src --check`, run by CI):
//!
//! ```text
//! server, bench, cli, inspect, ui     start and stop, commands, the benchmark, the web UI's files
//! api, grpc                           adapters: parse a request into the query service's typed
//!                                     request, render its typed answer; errors become HTTP
//!                                     statuses in api/error.rs, gRPC codes in grpc/status.rs
//! query                               the query service: every question weft answers, on one
//!                                     node or by fan-out over a cluster
//! ingest, severity, normalize         OTLP in (decode, admission, rows); runtime severity rules
//! pipeline                            WAL, WAL writer, indexer, retention, the live tail's thread
//! storage, cluster                    object storage and the publisher; nodes by heartbeat
//! metastore                           the split list, membership and rules (file or PostgreSQL)
//! config, auth, net, tls, metrics,    leaves: they name nothing above them
//! otlp_status, node, clock
//! ```
//!
//! Where a question is answered, from request to index, in three files: the adapter
//! (`api/logs.rs`, `api/traces.rs`, `api/peel.rs`, `api/jaeger.rs`, `grpc/query.rs`, …), the
//! query service's file for it (`query/logs.rs`, `query/traces.rs`, `query/peel.rs`, …), and
//! the index crate's (`weft_index::store`, `search`, `traces`, `aggregate`, `peel`).
//!
//! Modules:
//! - `config`: every key declared once (`config/keys.rs`); defaults, TOML file, `WEFT_*`
//!   environment, flags → a validated [`config::Config`].
//! - `ingest`: OTLP over gRPC (`ingest::grpc`) and HTTP (`ingest::http`), sharing one accept
//!   path; `normalize`: OTLP requests → rows (service, event ID, severity, IDs);
//!   `otlp_status`: OTLP/HTTP's formats and `google.rpc.Status` answers.
//! - `pipeline`: the write-ahead log (`pipeline::wal`), the group-commit WAL thread → the
//!   indexer thread, what refuses data while the disk or a thread fails (`pipeline::health`),
//!   and live tail's matching thread (`pipeline::tail`).
//! - `query`: the query service (see its file map): log search and the histogram, traces and
//!   trace search, catalogs, peeling, the service map, live tails; fan-out to ingest nodes and
//!   the merging of their parts.
//! - `api`: the HTTP API: weft's (`/api/v1`), Jaeger's v1 and v3, the internal node API,
//!   health and metrics; `grpc`: `weft.v1.QueryService` and `weft.v1.SeverityControl`.
//! - `severity`: runtime severity rules (validation, expiry, audit, the compiled matcher ingest
//!   applies; `severity::store`: kept in files or shared in PostgreSQL); `cli`: `weft severity …`
//!   against a running weft.
//! - `storage`: object storage for sealed partitions (splits) and the publisher task that
//!   uploads them and deletes what retention removed (on a search node, the follower that
//!   reads every node's list instead); `metastore`: the list of splits, and with PostgreSQL
//!   the cluster's membership rows and every node's severity rules; `cluster`: the nodes
//!   sharing a PostgreSQL metastore, by heartbeat; `node`: this node's name and role.
//! - `auth`: tokens with roles, and which role each route and gRPC method needs
//!   (`auth::policy`); `tls`: certificates, reloaded when their files change; `net`: accepting
//!   plain or TLS connections for both servers; `metrics`: weft's own counters; `clock`: the
//!   time in unix nanoseconds.
//! - `bench`: `weft bench`, which measures a weft through its public protocols only; `inspect`:
//!   `weft inspect`, where a data directory's bytes go; `ui`: the web UI's files, embedded.
//! - `server`: start and graceful stop, used by `main` and by the integration tests.
//!
//! Storage and search live in the `weft-index` crate.

pub mod api;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod grpc;
pub mod ingest;
pub mod inspect;
pub mod metastore;
pub mod metrics;
pub mod net;
pub mod node;
pub mod normalize;
pub mod otlp_status;
pub mod pipeline;
pub mod query;
pub mod server;
pub mod severity;
pub mod storage;
pub mod tls;
pub mod ui;
