//! Accepting connections for both servers, in plain TCP or TLS.
//!
//! One accept task per listener hands finished connections to the server through a bounded
//! channel. TLS handshakes run in their own tasks, bounded in number and time, so a client that
//! opens a connection and says nothing holds neither the accept loop nor a slot for long.
//! Both the HTTP server (an axum [`Listener`](axum::serve::Listener)) and tonic (a stream of
//! connections) read the same [`Incoming`]; each connection carries its [`Peer`], which the
//! auth layers use to tell loopback from elsewhere.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::tls::{Alpn, Tls};

/// Longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes in progress at once per listener; the accept loop waits beyond this.
const MAX_HANDSHAKES: usize = 256;
/// Accepted connections not yet taken by the server.
const BACKLOG: usize = 64;

/// Who is at the other end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The client's address.
    pub remote: SocketAddr,
}

/// A connection, plain or TLS.
pub enum Conn {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A connection with its peer, as tonic takes it.
pub struct Accepted {
    conn: Conn,
    peer: Peer,
}

impl AsyncRead for Accepted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.conn).poll_read(cx, buf)
    }
}

impl AsyncWrite for Accepted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.conn).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.conn).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.conn.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.conn).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.conn).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Accepted {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer
    }
}

/// Connections accepted on one listener, ready for a server.
pub struct Incoming {
    connections: mpsc::Receiver<Accepted>,
    local: SocketAddr,
}

impl Incoming {
    /// Starts accepting on `listener` until `stop` turns true; with `tls`, each connection is
    /// handed over once its handshake is done.
    pub fn start(
        listener: TcpListener,
        tls: Option<(Arc<Tls>, Alpn)>,
        stop: watch::Receiver<bool>,
    ) -> io::Result<Incoming> {
        let local = listener.local_addr()?;
        let (tx, connections) = mpsc::channel(BACKLOG);
        tokio::spawn(accept_loop(listener, tls, tx, stop));
        Ok(Incoming { connections, local })
    }

    /// The connections as a stream, for tonic's `serve_with_incoming_shutdown`.
    pub fn into_stream(self) -> impl futures_util::Stream<Item = io::Result<Accepted>> {
        futures_util::stream::unfold(self.connections, |mut rx| async move {
            rx.recv().await.map(|conn| (Ok(conn), rx))
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<(Arc<Tls>, Alpn)>,
    tx: mpsc::Sender<Accepted>,
    mut stop: watch::Receiver<bool>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        let (stream, remote) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Out of file descriptors, say: wait rather than spin.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let peer = Peer { remote };
        let Some((tls, alpn)) = &tls else {
            if tx
                .send(Accepted {
                    conn: Conn::Plain(stream),
                    peer,
                })
                .await
                .is_err()
            {
                return;
            }
            continue;
        };
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let acceptor = tls.acceptor(*alpn);
        let tx = tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => {
                    let _ = tx
                        .send(Accepted {
                            conn: Conn::Tls(Box::new(tls_stream)),
                            peer,
                        })
                        .await;
                }
                Ok(Err(error)) => tracing::debug!(%error, %remote, "TLS handshake failed"),
                Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for Incoming {
    type Io = Accepted;
    type Addr = Peer;

    async fn accept(&mut self) -> (Accepted, Peer) {
        match self.connections.recv().await {
            Some(conn) => {
                let peer = conn.peer;
                (conn, peer)
            }
            // The accept loop ended (weft is stopping): the server stops asking once its
            // shutdown signal fires, so waiting here is all that is left to do.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Peer> {
        Ok(Peer { remote: self.local })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Incoming>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Incoming>) -> Peer {
        *stream.remote_addr()
    }
}
