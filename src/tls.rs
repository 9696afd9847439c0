//! TLS for both listeners (rustls with the ring provider): the certificate, key and optional
//! client CA come from PEM files, and are loaded again when the files change or on SIGHUP.
//!
//! A reload builds new server configurations and swaps them in; connections already open keep
//! the configuration they started with, so nothing in flight is dropped. A reload that fails (a
//! key that does not match the new certificate, say, because only one file was replaced yet)
//! keeps the previous configuration and is logged once per change of the files.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// How often the files are checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// The PEM files TLS is configured from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA bundle client certificates must chain to; `None` accepts clients without one.
    pub client_ca: Option<PathBuf>,
}

/// Why TLS could not be configured; names the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the kind needed.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the combination (a key that does not match the certificate, say).
    #[error("TLS configuration refused: {0}")]
    Rustls(String),
}

/// Which protocols a listener offers through ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// OTLP/gRPC: HTTP/2 only.
    Grpc,
    /// OTLP/HTTP, query API and UI: HTTP/1.1.
    Http,
}

struct Loaded {
    grpc: Arc<ServerConfig>,
    http: Arc<ServerConfig>,
}

/// The current TLS configuration of both listeners, reloadable.
pub struct Tls {
    files: TlsFiles,
    current: RwLock<Loaded>,
    /// The files' modification times and sizes when last looked at.
    seen: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            message: format!("not a PEM certificate file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            message: "no CERTIFICATE found".into(),
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        message: format!("no private key found (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(files: &TlsFiles, alpn: Alpn) -> Result<ServerConfig, TlsError> {
    let certs = certificates(&files.cert)?;
    let key = private_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(path)? {
                roots.add(cert).map_err(|e| TlsError::Pem {
                    path: path.clone(),
                    message: format!("not a usable CA certificate: {e}"),
                })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.into(),
                provider(),
            )
            .build()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        TlsError::Rustls(format!(
            "{e} ({} with {})",
            files.cert.display(),
            files.key.display()
        ))
    })?;
    config.alpn_protocols = match alpn {
        Alpn::Grpc => vec![b"h2".to_vec()],
        Alpn::Http => vec![b"http/1.1".to_vec()],
    };
    Ok(config)
}

fn load(files: &TlsFiles) -> Result<Loaded, TlsError> {
    Ok(Loaded {
        grpc: Arc::new(server_config(files, Alpn::Grpc)?),
        http: Arc::new(server_config(files, Alpn::Http)?),
    })
}

fn stamps(files: &TlsFiles) -> Vec<Option<(SystemTime, u64)>> {
    [
        Some(&files.cert),
        Some(&files.key),
        files.client_ca.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|path| {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    })
    .collect()
}

impl Tls {
    /// Loads the files; an error here stops weft from starting.
    pub fn load(files: TlsFiles) -> Result<Arc<Tls>, TlsError> {
        let seen = stamps(&files);
        let current = load(&files)?;
        Ok(Arc::new(Tls {
            files,
            current: RwLock::new(current),
            seen: Mutex::new(seen),
        }))
    }

    /// The acceptor for a new connection, with the configuration in force now.
    pub fn acceptor(&self, alpn: Alpn) -> TlsAcceptor {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        TlsAcceptor::from(match alpn {
            Alpn::Grpc => current.grpc.clone(),
            Alpn::Http => current.http.clone(),
        })
    }

    /// Loads the files again and, if they are valid, uses them for new connections.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = load(&self.files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = loaded;
        Ok(())
    }

    /// Reloads if any file's modification time or size changed since last looked at. Returns
    /// whether a new configuration is in force.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamps(&self.files);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == now {
                return Ok(false);
            }
            // Remembered before trying, so a bad file is reported once, not every interval;
            // fixing it changes the stamp again.
            *seen = now;
        }
        self.reload().map(|()| true)
    }
}

/// Reloads `tls` when its files change or weft gets SIGHUP, until `stop` turns true.
pub fn spawn_watcher(
    tls: Arc<Tls>,
    metrics: Arc<crate::metrics::Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use std::sync::atomic::Ordering;
    // Taken before returning, so SIGHUP reloads (rather than ends) weft from the moment it serves.
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let forced = tokio::select! {
                _ = tick.tick() => false,
                Some(()) = async { match hangups.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                } } => true,
                _ = stop.changed() => return,
            };
            let tls = tls.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                if forced {
                    tls.reload().map(|()| true)
                } else {
                    tls.reload_if_changed()
                }
            })
            .await;
            match outcome {
                Ok(Ok(true)) => {
                    metrics.tls_reloads.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(forced, "TLS certificate reloaded");
                }
                Ok(Ok(false)) => {}
                Ok(Err(error)) => {
                    metrics.tls_reload_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(
                    %error,
                    "TLS files changed but cannot be loaded; still serving the previous certificate"
                    );
                }
                Err(error) => tracing::error!(%error, "TLS reload task failed"),
            }
        }
    });
}
