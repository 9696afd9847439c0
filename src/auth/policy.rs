//! Which role each endpoint needs. Every route and gRPC method is decided here, in one place, so
//! a new endpoint is closed (read) unless this file says otherwise.

use axum::http::Method;

use super::Role;

/// What a request needs: a token of `role`, or of one of the roles in `also`. With no token,
/// the request passes only from loopback and only while `role` has no token configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// The role that decides whether loopback is open.
    pub role: Role,
    /// Further roles whose tokens are accepted.
    pub also: &'static [Role],
}

impl Access {
    /// OTLP export.
    pub const INGEST: Access = Access {
        role: Role::Ingest,
        also: &[],
    };
    /// Queries; admin tokens may read too.
    pub const READ: Access = Access {
        role: Role::Read,
        also: &[Role::Admin],
    };
    /// Severity rule changes.
    pub const ADMIN: Access = Access {
        role: Role::Admin,
        also: &[],
    };
    /// The effective severity rules of one service: read by the services themselves (which hold
    /// an ingest token) to filter at the source, and by readers.
    pub const RULES_FOR_SOURCE: Access = Access {
        role: Role::Read,
        also: &[Role::Admin, Role::Ingest],
    };

    /// Whether a token of `role` satisfies this.
    pub fn allows(self, role: Role) -> bool {
        self.role == role || self.also.contains(&role)
    }

    /// "a read or admin token", for messages.
    pub fn describe(self) -> String {
        let mut names = vec![self.role.name()];
        names.extend(self.also.iter().map(|r| r.name()));
        let article = if self.role == Role::Read { "a" } else { "an" };
        format!("{article} {} token", names.join(" or "))
    }
}

/// The access an HTTP request needs; `None` for what is open to everyone: health, readiness and
/// metrics (for orchestrators and scrapers) and the UI's own files (they hold no data; the UI
/// asks for a token when the API refuses it).
pub fn http(method: &Method, path: &str) -> Option<Access> {
    match path {
        "/v1/logs" | "/v1/traces" => Some(Access::INGEST),
        "/healthz" | "/readyz" | "/metrics" | "/" => None,
        "/api/v1/severity/effective" => Some(Access::RULES_FOR_SOURCE),
        "/api/v1/severity/rules" if method == Method::POST => Some(Access::ADMIN),
        _ if path.starts_with("/api/v1/severity/rules/") && method == Method::DELETE => {
            Some(Access::ADMIN)
        }
        _ if path.starts_with("/ui/") => None,
        // Everything else, known or not (an unknown path is a 404 after this): the query API
        // and the Jaeger API.
        _ => Some(Access::READ),
    }
}

/// The access a gRPC call needs, by its path (`/package.Service/Method`).
pub fn grpc(path: &str) -> Access {
    let service = path.trim_start_matches('/').split('/').next().unwrap_or("");
    match service {
        "opentelemetry.proto.collector.logs.v1.LogsService"
        | "opentelemetry.proto.collector.trace.v1.TraceService" => Access::INGEST,
        "weft.v1.SeverityControl" => Access::RULES_FOR_SOURCE,
        _ => Access::READ,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_the_role_the_docs_give_it() {
        let get = Method::GET;
        assert_eq!(http(&Method::POST, "/v1/logs"), Some(Access::INGEST));
        assert_eq!(http(&Method::POST, "/v1/traces"), Some(Access::INGEST));
        for open in ["/", "/ui/app.js", "/healthz", "/readyz", "/metrics"] {
            assert_eq!(http(&get, open), None, "{open}");
        }
        for read in [
            "/api/v1/logs",
            "/api/v1/logs/tail",
            "/api/v1/traces/abc",
            "/api/v1/services",
            "/api/v1/severity/rules",
            "/api/v1/severity/audit",
            "/api/traces",
            "/api/services",
            "/api/dependencies",
            "/api/v1/service-map",
            "/api/v1/cluster",
            "/api/v1/internal/trace/abc",
            "/api/v1/internal/logs",
            "/api/v1/logs/facets",
            "/api/v1/logs/fields",
            "/api/v1/logs/compare",
            "/api/v1/spans/facets",
            "/api/v1/spans/fields",
            "/api/v1/spans/stats",
            "/api/v1/spans/heatmap",
            "/api/v1/spans/compare",
            "/api/v3/services",
            "/api/v3/trace-summaries",
            "/api/v3/traces/abc",
            "/no/such/path",
        ] {
            assert_eq!(http(&get, read), Some(Access::READ), "{read}");
        }
        assert_eq!(
            http(&Method::POST, "/api/v1/severity/rules"),
            Some(Access::ADMIN)
        );
        assert_eq!(
            http(&Method::DELETE, "/api/v1/severity/rules/r1"),
            Some(Access::ADMIN)
        );
        assert_eq!(
            http(&get, "/api/v1/severity/effective"),
            Some(Access::RULES_FOR_SOURCE)
        );
        assert_eq!(
            grpc("/opentelemetry.proto.collector.logs.v1.LogsService/Export"),
            Access::INGEST
        );
        assert_eq!(
            grpc("/opentelemetry.proto.collector.trace.v1.TraceService/Export"),
            Access::INGEST
        );
        assert_eq!(grpc("/weft.v1.QueryService/SearchLogs"), Access::READ);
        assert_eq!(grpc("/weft.v1.QueryService/Tail"), Access::READ);
        assert_eq!(
            grpc("/weft.v1.SeverityControl/Watch"),
            Access::RULES_FOR_SOURCE
        );
        assert_eq!(grpc("/grpc.reflection.v1.Whatever/X"), Access::READ);
    }
}
