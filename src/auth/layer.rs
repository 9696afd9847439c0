//! Applying the policy: an axum middleware for the HTTP listener and a tower layer for tonic.
//! Both run before a request's body is read, so a refused export costs no memory, and both put
//! the [`Principal`] into the request's extensions for handlers (severity changes) to use.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Denied, Principal, Tokens, policy};
use crate::net::Peer;

/// The text after `Bearer ` in `Authorization` (the scheme is case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// What both layers share.
#[derive(Clone)]
pub struct AuthState {
    /// The configured tokens.
    pub tokens: Arc<Tokens>,
    /// Where refusals are counted (`weft_auth_refused_total`).
    pub refused: Arc<super::RefusalCounters>,
}

impl AuthState {
    fn decide(
        &self,
        access: policy::Access,
        peer: Option<SocketAddr>,
        headers: &HeaderMap,
    ) -> Result<Principal, Denied> {
        self.tokens
            .authorize(access, peer, bearer(headers))
            .inspect_err(|denied| {
                self.refused.count(denied);
                tracing::debug!(
                    role = denied.role.name(),
                    reason = denied.reason.name(),
                    ?peer,
                    "request refused"
                );
            })
    }
}

/// The HTTP answer to a refusal: 401 with `WWW-Authenticate` or 403, a JSON `{"error": …}`
/// body; OTLP export paths answer a `google.rpc.Status` in the request's format instead.
pub fn http_refusal(denied: &Denied, path: &str, headers: &HeaderMap) -> Response {
    let status = if denied.unauthenticated() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::FORBIDDEN
    };
    let mut response = if matches!(path, "/v1/logs" | "/v1/traces") {
        let code = if denied.unauthenticated() {
            tonic::Code::Unauthenticated
        } else {
            tonic::Code::PermissionDenied
        };
        crate::otlp_status::status_response(status, code, denied.message.clone(), headers)
    } else {
        (
            status,
            axum::Json(serde_json::json!({"error": denied.message})),
        )
            .into_response()
    };
    if denied.unauthenticated() {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"weft\""),
        );
    }
    response
}

/// The HTTP middleware: decides by method and path ([`policy::http`]).
pub async fn http_middleware(
    State(auth): State<AuthState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(access) = policy::http(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let peer = request
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|c| c.0.remote);
    match auth.decide(access, peer, request.headers()) {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(denied) => http_refusal(&denied, request.uri().path(), request.headers()),
    }
}

/// The tower layer in front of every gRPC service: decides by method path ([`policy::grpc`]).
#[derive(Clone)]
pub struct GrpcAuthLayer(pub AuthState);

impl<S> tower::Layer<S> for GrpcAuthLayer {
    type Service = GrpcAuth<S>;

    fn layer(&self, inner: S) -> GrpcAuth<S> {
        GrpcAuth {
            inner,
            auth: self.0.clone(),
        }
    }
}

/// See [`GrpcAuthLayer`].
#[derive(Clone)]
pub struct GrpcAuth<S> {
    inner: S,
    auth: AuthState,
}

type GrpcRequest = http::Request<tonic::body::Body>;
type GrpcResponse = http::Response<tonic::body::Body>;

impl<S> tower::Service<GrpcRequest> for GrpcAuth<S>
where
    S: tower::Service<GrpcRequest, Response = GrpcResponse>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = GrpcResponse;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<GrpcResponse, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: GrpcRequest) -> Self::Future {
        let access = policy::grpc(request.uri().path());
        let peer = request.extensions().get::<Peer>().map(|p| p.remote);
        match self.auth.decide(access, peer, request.headers()) {
            Ok(principal) => {
                request.extensions_mut().insert(principal);
                Box::pin(self.inner.call(request))
            }
            Err(denied) => {
                let status = if denied.unauthenticated() {
                    tonic::Status::unauthenticated(denied.message)
                } else {
                    tonic::Status::permission_denied(denied.message)
                };
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_nothing_else_counts() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  abc "),
        );
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
    }
}
