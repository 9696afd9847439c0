//! The query layer: what weft answers, apart from how a question arrives. The HTTP API
//! (`crate::api`), gRPC's `weft.v1.QueryService` (`crate::grpc::query`) and Jaeger's APIs
//! parse their requests into the index's typed searches, call [`service`], and render what it
//! returns; none of them knows whether the answer came from one node or a whole cluster.
//!
//! - `service`: log search, a trace, trace search and Jaeger's whole traces, over this
//!   node's store or, on a search node, over the published splits plus every live ingest
//!   node's part (the catalogs and aggregations follow the same pattern in
//!   `crate::aggregation`).
//! - `node`: [`node::NodeQueries`], the questions a search node asks each ingest node about
//!   its rows not yet published. [`node::LocalNode`] answers them from this node's store;
//!   `crate::fanout::RemoteNode` asks them of another node over HTTP, whose
//!   `crate::api::internal` routes are thin adapters over its own `LocalNode`.
//! - `wire`: how those questions and answers travel between nodes.
//! - `answers`: the JSON shapes of the answers, as typed `Serialize` structs.

pub mod answers;
pub mod node;
pub mod service;
pub mod wire;
