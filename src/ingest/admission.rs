//! Admission before allocation: an export request takes its place (a slot among
//! `max_concurrent_exports`, and memory from the in-flight budget) before its body is read, and
//! grows it as the body arrives, inflates and decodes. When the budget cannot cover it, the
//! request is refused at once with a retryable answer, without reading further.
//!
//! HTTP handlers read their body here ([`read_body`]). For gRPC, tonic reads and decodes the
//! message before a handler runs, so [`AdmissionLayer`] wraps the request body of the OTLP
//! export methods: each frame grows the request's [`Reservation`], which the handler then takes
//! from the request's extensions ([`Ticket`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::BodyExt;

use super::{Ingest, IngestError};
use crate::pipeline::Reservation;

/// Memory a request needs per byte of its (inflated) body while it is decoded and normalized:
/// the body, the decoded message, the rows, the WAL encoding.
pub const DECODE_FACTOR: usize = 4;

/// A request holds its place while its body arrives, so a client trickling bytes must not hold
/// it for ever: the body has `body_read_timeout` to arrive.
fn body_too_slow(timeout: std::time::Duration) -> IngestError {
    IngestError::Slow(format!(
        "the request body did not arrive within {} (body_read_timeout)",
        humantime::format_duration(timeout)
    ))
}

/// Reads an HTTP body of at most `limit` bytes, growing `reservation` as it arrives.
pub async fn read_body(
    body: axum::body::Body,
    limit: usize,
    declared: Option<usize>,
    timeout: std::time::Duration,
    reservation: &mut Reservation,
) -> Result<Bytes, IngestError> {
    let too_large = || {
        IngestError::TooLarge(format!(
            "request body is larger than the limit of {limit} bytes (max_body_bytes)"
        ))
    };
    let mut body = body;
    let mut collected = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    let deadline = tokio::time::Instant::now() + timeout;
    while let Some(frame) = tokio::time::timeout_at(deadline, body.frame())
        .await
        .map_err(|_| body_too_slow(timeout))?
    {
        let frame =
            frame.map_err(|e| IngestError::Malformed(format!("reading the body failed: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > limit {
                return Err(too_large());
            }
            reservation.grow_to(collected.len() + data.len())?;
            collected.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(collected))
}

/// Inflates a gzip body, refusing to grow past `limit` (a small body can inflate enormously)
/// and growing `reservation` (which already covers the compressed body) as it inflates.
pub fn gunzip(
    body: &[u8],
    limit: usize,
    mut reservation: Option<&mut Reservation>,
) -> Result<Vec<u8>, IngestError> {
    use std::io::Read;
    const CHUNK: usize = 256 * 1024;
    let mut out = Vec::with_capacity((body.len() * 4).min(limit));
    let mut decoder = flate2::read::GzDecoder::new(body).take(limit as u64 + 1);
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let n = match decoder.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(IngestError::Malformed(format!(
                    "gzip body does not inflate: {e}"
                )));
            }
        };
        if out.len() + n > limit {
            return Err(IngestError::TooLarge(format!(
                "request body inflates past the limit of {limit} bytes (max_body_bytes)"
            )));
        }
        if let Some(reservation) = reservation.as_deref_mut() {
            reservation.grow_to(body.len() + out.len() + n)?;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    Ok(out)
}

/// A gRPC export's reservation, left in the request's extensions for its handler.
#[derive(Clone, Debug)]
pub struct Ticket(Arc<Mutex<Option<Reservation>>>);

impl Ticket {
    /// Takes the reservation (once).
    pub fn take(&self) -> Option<Reservation> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// The OTLP export methods, whose bodies are admitted; other gRPC calls pass through.
fn is_export(path: &str) -> bool {
    path.starts_with("/opentelemetry.proto.collector.")
}

/// Admits gRPC export requests before tonic reads them.
#[derive(Clone)]
pub struct AdmissionLayer {
    ingest: Ingest,
}

impl AdmissionLayer {
    /// Admission for `ingest`'s pipeline.
    pub fn new(ingest: Ingest) -> Self {
        AdmissionLayer { ingest }
    }
}

impl<S> tower::Layer<S> for AdmissionLayer {
    type Service = Admission<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Admission {
            inner,
            ingest: self.ingest.clone(),
        }
    }
}

/// See [`AdmissionLayer`].
#[derive(Clone)]
pub struct Admission<S> {
    inner: S,
    ingest: Ingest,
}

type GrpcRequest = http::Request<tonic::body::Body>;
type GrpcResponse = http::Response<tonic::body::Body>;

impl<S> tower::Service<GrpcRequest> for Admission<S>
where
    S: tower::Service<GrpcRequest, Response = GrpcResponse>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = GrpcResponse;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<GrpcResponse, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: GrpcRequest) -> Self::Future {
        if !is_export(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        let reservation = match self.ingest.reserve(0) {
            Ok(r) => r,
            Err(error) => {
                let response = super::grpc::status(&error).into_http();
                return Box::pin(std::future::ready(Ok(response)));
            }
        };
        let timeout = self.ingest.body_read_timeout();
        let ticket = Ticket(Arc::new(Mutex::new(Some(reservation))));
        request.extensions_mut().insert(ticket.clone());
        let request = request.map(|body| {
            tonic::body::Body::new(AdmittedBody {
                inner: body,
                ticket,
                read: 0,
                timeout,
                deadline: Box::pin(tokio::time::sleep(timeout)),
            })
        });
        Box::pin(self.inner.call(request))
    }
}

/// A gRPC request body that grows its request's reservation with every frame.
struct AdmittedBody {
    inner: tonic::body::Body,
    ticket: Ticket,
    read: usize,
    timeout: std::time::Duration,
    /// When the whole body must have arrived.
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for AdmittedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Pending => {
                if self.deadline.as_mut().poll(cx).is_ready() {
                    self.ticket.take();
                    let error = body_too_slow(self.timeout);
                    return Poll::Ready(Some(Err(super::grpc::status(&error))));
                }
                return Poll::Pending;
            }
            other => return other,
        };
        if let Some(data) = frame.data_ref() {
            self.read += data.len();
            let wanted = self.read.saturating_mul(DECODE_FACTOR);
            let mut slot = self.ticket.0.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(reservation) = slot.as_mut()
                && let Err(error) = reservation.grow_to(wanted)
            {
                // Refused mid-body: the rest is not read, and tonic answers with this status.
                slot.take();
                return Poll::Ready(Some(Err(super::grpc::status(&IngestError::Pipeline(
                    error,
                )))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
