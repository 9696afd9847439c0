//! weft's own gRPC services (`weft.v1`), generated from proto/ at build time.

pub mod query;
pub mod severity;

/// Code generated from `proto/weft/v1/*.proto`; nothing hand-written lives here.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("weft.v1");
}
