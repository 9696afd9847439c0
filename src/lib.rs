//! weft: a collector and store for OpenTelemetry logs and traces, joined on trace ID.
//!
//! Layout:
//! - `config`: defaults, TOML file, `WEFT_*` environment, flags → a validated [`config::Config`].
//! - `ingest`: OTLP over gRPC (`ingest::grpc`) and HTTP (`ingest::http`), sharing one accept path.
//! - `normalize`: OTLP requests → rows (service, event ID, severity, IDs).
//! - `pipeline`: the write-ahead log (`pipeline::wal`), the group-commit WAL thread → the indexer
//!   thread, what refuses data while the disk or a thread fails (`pipeline::health`).
//! - `query`: the query layer every front end shares: log search, traces and trace search over
//!   one node or a cluster (`query::service`), the questions one node asks another
//!   (`query::node`, and how they travel: `query::wire`) and the typed JSON shapes of
//!   answers (`query::answers`).
//! - `api`: the HTTP query API: weft's (`/api/v1`, with the service map in
//!   `api::dependencies`), Jaeger's v1 (`api::jaeger`, and `/api/dependencies`) and v3
//!   (`api::jaeger_v3`), health and metrics; `grpc`: the same queries as
//!   `weft.v1.QueryService`; `metrics`: weft's own counters.
//! - `severity`: runtime severity rules (validation, expiry, audit, the compiled matcher ingest
//!   applies; `severity::store`: kept in files or shared in PostgreSQL); `cli`: `weft severity …`
//!   against a running weft.
//! - `bench`: `weft bench`, which measures a weft through its public protocols only; `inspect`:
//!   `weft inspect`, where a data directory's bytes go, per part of the format and per field.
//! - `tail`: live tail, one thread matching acknowledged rows against every subscriber's query.
//! - `ui`: the web UI's files (ui/), embedded and served at `/`.
//! - `auth`: tokens with roles, and which role each route and gRPC method needs
//!   (`auth::policy`); `tls`: certificates, reloaded when their files change; `net`: accepting
//!   plain or TLS connections for both servers.
//! - `storage`: object storage for sealed partitions (splits), the metastore that lists them,
//!   and the publisher task that uploads them and deletes what retention removed (on a
//!   search node, the follower that reads every node's list instead); `node`: this node's
//!   name and role; `cluster`: the nodes sharing a PostgreSQL metastore, by heartbeat;
//!   `fanout`: what a search node asks the live ingest nodes; `aggregation`: the catalogs
//!   and the histogram, summed over those nodes' parts and the splits; `remote_tail`: live
//!   tail on a search node, the ingest nodes' tails merged.
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
