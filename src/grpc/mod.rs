//! weft's own gRPC services (`weft.v1`), generated from proto/ at build time: `query`
//! (`weft.v1.QueryService`, an adapter over `crate::query::QueryService`), `severity`
//! (`weft.v1.SeverityControl`), and `status`, where query errors become gRPC codes.

pub mod query;
pub mod severity;
mod status;

/// Code generated from `proto/weft/v1/*.proto`; nothing hand-written lives here.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("weft.v1");
}
