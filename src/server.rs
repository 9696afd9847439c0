//! Starting and stopping weft: open the index, recover the WAL, serve OTLP/gRPC and HTTP, and
//! on shutdown stop accepting, drain, commit, exit — in that order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use weft_index::faults::Faults;
use weft_index::{Signal, Store, StoreOptions};

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::ingest::{self, Ingest};
use crate::metrics::Metrics;
use crate::net::{Incoming, Peer};
use crate::node::Role;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::query::{QueryService, QueryServiceParts};
use crate::tls::Alpn;

/// How often expired severity rules are removed (they stop applying at once regardless).
const SEVERITY_EXPIRY_INTERVAL: Duration = Duration::from_secs(1);

/// The two listening sockets.
pub struct Listeners {
    /// OTLP/gRPC.
    pub grpc: TcpListener,
    /// OTLP/HTTP, query API, UI.
    pub http: TcpListener,
}

impl Listeners {
    /// Binds the addresses of `config` (port 0 picks a free port).
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let grpc = TcpListener::bind(config.grpc_listen)
            .await
            .with_context(|| format!("cannot listen on {} (grpc_listen)", config.grpc_listen))?;
        let http = TcpListener::bind(config.http_listen)
            .await
            .with_context(|| format!("cannot listen on {} (http_listen)", config.http_listen))?;
        Ok(Listeners { grpc, http })
    }
}

/// A running weft.
pub struct Running {
    /// Where OTLP/gRPC listens.
    pub grpc_addr: SocketAddr,
    /// Where HTTP listens.
    pub http_addr: SocketAddr,
    stop_tx: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    pipeline: Arc<Pipeline>,
    ready: Arc<AtomicBool>,
    shutdown_timeout: Duration,
}

/// What tests may replace when starting weft.
pub struct StartOptions {
    /// The clock severity rules expire by.
    pub clock: crate::severity::Clock,
    /// Faults to inject into the WAL and the index.
    pub faults: Option<Arc<Faults>>,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            clock: crate::severity::system_clock(),
            faults: None,
        }
    }
}

/// Opens the data directory, replays the WAL and starts serving on `listeners`.
pub async fn start(config: Config, listeners: Listeners) -> anyhow::Result<Running> {
    start_with(config, listeners, StartOptions::default()).await
}

/// [`start`] with a test's clock or faults.
pub async fn start_with(
    config: Config,
    listeners: Listeners,
    options: StartOptions,
) -> anyhow::Result<Running> {
    let StartOptions { clock, faults } = options;
    let faults_for_queries = faults.clone();
    let grpc_addr = listeners.grpc.local_addr()?;
    let http_addr = listeners.http.local_addr()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    let metrics = Arc::new(Metrics::default());
    let storage = match &config.storage {
        Some(url) => Some(StorageSetup::open(&config, url).await?),
        None => None,
    };
    let (store, pipeline) = {
        let config = config.clone();
        let metrics = metrics.clone();
        let faults = faults.clone();
        let runtime = tokio::runtime::Handle::current();
        let storage = storage.as_ref().map(|s| {
            (
                s.storage.clone(),
                s.published.clone(),
                s.sealing.clone(),
                s.staging.clone(),
            )
        });
        let role = config.role;
        tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let store_options = StoreOptions {
                max_open_writers: config.max_open_partitions,
                writer_memory_bytes: config.index_memory_bytes,
                faults: faults.clone(),
                object_storage: storage.is_some(),
                seal_docs: storage.is_some().then_some(config.seal_docs),
            };
            let store = Arc::new(
                Store::open_with(&config.data_dir.join("index"), store_options)
                    .context("cannot open the index")?,
            );
            let mut pipeline_config = pipeline_config(&config, faults);
            if let Some((objects, published, sealing, staging)) = storage {
                store.set_fetcher(Arc::new(crate::storage::Fetcher::new(
                    objects,
                    runtime,
                    metrics.clone(),
                )));
                if role == Role::Search {
                    // Reads every node's splits and writes nothing: no sealing, no cache.
                    if store.partition_count(Signal::Logs) + store.partition_count(Signal::Spans)
                        > 0
                    {
                        anyhow::bail!(
                            "{} holds partitions of its own, which a search node would not \
                             publish; start a search node on an empty data directory",
                            config.data_dir.display()
                        );
                    }
                    store.follow_published(&published);
                    let pipeline =
                        Pipeline::start(&config.data_dir, store.clone(), metrics, pipeline_config)
                            .context("cannot recover the write-ahead log")?;
                    return Ok((store, pipeline));
                }
                store
                    .adopt_published(&published)
                    .context("cannot take in the published splits")?;
                // Snapshots of a previous run are taken again: nothing of theirs was published.
                if staging.exists() {
                    std::fs::remove_dir_all(&staging)
                        .with_context(|| format!("cannot clear {}", staging.display()))?;
                }
                std::fs::create_dir_all(&staging)
                    .with_context(|| format!("cannot create {}", staging.display()))?;
                pipeline_config.sealing = Some(sealing);
            }
            let pipeline =
                Pipeline::start(&config.data_dir, store.clone(), metrics, pipeline_config)
                    .context("cannot recover the write-ahead log")?;
            Ok((store, pipeline))
        })
        .await??
    };
    let severity = {
        let dir = config.data_dir.join("severity");
        let limits = crate::severity::TtlLimits {
            default: config.severity_default_ttl,
            max: config.severity_max_ttl,
        };
        // With PostgreSQL as the metastore, the rules and their audit log are kept there,
        // shared by every node on it; otherwise in the data directory.
        let shared = storage.as_ref().and_then(|s| s.postgres.clone());
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            use crate::severity::store::{FileRules, RuleStore, SharedRules};
            let store: Box<dyn RuleStore> = match shared {
                Some(postgres) => Box::new(SharedRules::new(postgres, runtime)),
                None => Box::new(FileRules::open(&dir)?),
            };
            crate::severity::SeverityControl::with_store(store, limits, clock)
        })
        .await?
        .context("cannot load severity rules")?
    };
    let ready = Arc::new(AtomicBool::new(false));
    let mut ingest = Ingest::new(
        pipeline.clone(),
        metrics.clone(),
        severity.clone(),
        ingest::IngestLimits {
            max_body_bytes: config.max_body_bytes,
            retention: config.retention,
            max_future_skew: config.max_future_skew,
            body_read_timeout: config.body_read_timeout,
        },
    );
    if !config.role.ingests() {
        ingest = ingest.refusing_exports();
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = Vec::new();
    let cluster = storage.as_ref().and_then(|setup| {
        let postgres = setup.postgres.clone()?;
        let advertise = config.advertise.clone().unwrap_or_else(|| {
            let mut addr = http_addr;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            let scheme = if config.tls.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{addr}")
        });
        let cluster = Arc::new(crate::cluster::Cluster::new(
            postgres,
            setup.node.clone(),
            config.role,
            advertise,
        ));
        servers.push(tokio::spawn(cluster.clone().run(stop_rx.clone())));
        Some(cluster)
    });
    if let Some(cluster) = &cluster {
        cluster.register().await;
    }
    let mut follower = None;
    let storage_status = match storage {
        Some(setup) if config.role == Role::Search => {
            let status = Arc::new(crate::storage::publisher::StorageStatus::default());
            let following = Arc::new(crate::storage::follower::Follower {
                metastore: setup.metastore,
                store: store.clone(),
                status: status.clone(),
                metrics: metrics.clone(),
            });
            servers.push(tokio::spawn(following.clone().run(stop_rx.clone())));
            follower = Some(following);
            Some(status)
        }
        Some(setup) => {
            let status = Arc::new(crate::storage::publisher::StorageStatus::default());
            let publisher = crate::storage::publisher::Publisher {
                storage: setup.storage,
                metastore: setup.metastore,
                store: store.clone(),
                staging: setup.staging,
                metrics: metrics.clone(),
                status: status.clone(),
                node: setup.node,
                deletion_grace: config.query_timeout + crate::storage::follower::FOLLOW_INTERVAL,
            };
            servers.push(tokio::spawn(publisher.run(
                setup.jobs,
                setup.leftovers,
                stop_rx.clone(),
            )));
            Some(status)
        }
        None => None,
    };
    let fanout = match (&cluster, follower) {
        (Some(cluster), Some(follower)) => Some(Arc::new(crate::query::fanout::FanOut::new(
            cluster.clone(),
            follower,
            config.query_timeout,
            config.tls.as_ref(),
        )?)),
        _ => None,
    };
    let query = Arc::new(QueryService::new(QueryServiceParts {
        store,
        timeout: config.query_timeout,
        fanout,
        cluster: cluster.clone(),
        tail: pipeline.tail().clone(),
        shutdown: stop_rx.clone(),
        severity: severity.clone(),
        faults: faults_for_queries,
    }));
    let api_state = ApiState {
        query: query.clone(),
        storage_status,
        metrics,
        ready: ready.clone(),
        pipeline: pipeline.clone(),
        severity: severity.clone(),
        cluster,
        auth_refused: Arc::new(crate::auth::RefusalCounters::default()),
        shutdown: stop_rx.clone(),
    };
    let auth = crate::auth::AuthState {
        tokens: Arc::new(config.tokens.clone()),
        refused: api_state.auth_refused.clone(),
    };
    let tls = match &config.tls {
        Some(files) => {
            let files = files.clone();
            let tls = tokio::task::spawn_blocking(move || crate::tls::Tls::load(files))
                .await?
                .context("cannot set up TLS")?;
            crate::tls::spawn_watcher(tls.clone(), api_state.metrics.clone(), stop_rx.clone());
            Some(tls)
        }
        None => None,
    };
    let http_incoming = Incoming::start(
        listeners.http,
        tls.clone().map(|t| (t, Alpn::Http)),
        stop_rx.clone(),
    )?;
    let grpc_incoming = Incoming::start(
        listeners.grpc,
        tls.clone().map(|t| (t, Alpn::Grpc)),
        stop_rx.clone(),
    )?;

    let query_service = crate::grpc::query::service(query);
    let severity_service = crate::grpc::severity::service(severity.clone(), stop_rx.clone());
    let http_app = api::router(api_state)
        .merge(ingest::http::router(ingest.clone()))
        .merge(crate::ui::router())
        // Before anything reads a body: a refused export costs nothing.
        .layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            crate::auth::http_middleware,
        ))
        .layer(
            // A refused request is an answer, not a failure of weft's: logging each one at
            // ERROR would flood the log exactly when weft is under pressure. Conditions are
            // logged once when they start and end (pipeline::health).
            tower_http::trace::TraceLayer::new_for_http().on_failure(
                tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG),
            ),
        );
    let http_server = {
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let served = axum::serve(
                http_incoming,
                http_app.into_make_service_with_connect_info::<Peer>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stop.changed().await;
            })
            .await;
            if let Err(error) = served {
                tracing::error!(%error, "http server failed");
            }
        })
    };
    let grpc_server = {
        let mut stop = stop_rx.clone();
        let admission = ingest::admission::AdmissionLayer::new(ingest.clone());
        let (logs, traces) = ingest::grpc::services(ingest);
        tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .layer(tower::util::MapResponseLayer::new(
                    ingest::grpc::size_limit_status,
                ))
                .layer(crate::auth::GrpcAuthLayer(auth))
                .layer(admission)
                .add_service(logs)
                .add_service(traces)
                .add_service(query_service)
                .add_service(severity_service)
                .serve_with_incoming_shutdown(grpc_incoming.into_stream(), async move {
                    let _ = stop.changed().await;
                })
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "grpc server failed");
            }
        })
    };
    let expiry = {
        let mut stop = stop_rx.clone();
        let severity = severity.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SEVERITY_EXPIRY_INTERVAL);
            // Logged once per outage, not every tick.
            let mut failing = false;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => break,
                }
                let control = severity.clone();
                // Rules other nodes changed are read first, so that this node expires and
                // enforces the same set.
                let outcome =
                    tokio::task::spawn_blocking(move || control.refresh().and(control.expire()))
                        .await;
                match outcome {
                    Ok(Err(error)) if !failing => {
                        failing = true;
                        tracing::error!(%error, "refreshing or expiring severity rules failed");
                    }
                    Err(error) => tracing::error!(%error, "severity expiry task failed"),
                    Ok(Ok(_)) if failing => {
                        failing = false;
                        tracing::info!("severity rules refresh and expire again");
                    }
                    Ok(_) => {}
                }
            }
        })
    };
    ready.store(true, Ordering::Release);
    tracing::info!(
        %grpc_addr,
        %http_addr,
        data_dir = %config.data_dir.display(),
        tls = config.tls.is_some(),
        tokens = %config.tokens.summary(),
        "weft started"
    );
    Ok(Running {
        grpc_addr,
        http_addr,
        stop_tx,
        servers: {
            servers.extend([http_server, grpc_server, expiry]);
            servers
        },
        pipeline,
        ready,
        shutdown_timeout: config.shutdown_timeout,
    })
}

/// Object storage and the metastore, opened before the index so that the index knows what is
/// published.
struct StorageSetup {
    storage: crate::storage::ObjectStorage,
    metastore: Arc<dyn crate::metastore::Metastore>,
    /// The metastore again when it is PostgreSQL, which also keeps the severity rules.
    postgres: Option<Arc<crate::metastore::postgres::PostgresMetastore>>,
    /// This node's name, which its splits carry.
    node: String,
    /// Published splits, for the index.
    published: Vec<weft_index::store::PublishedSplit>,
    /// Splits a previous run left staged (never read by anyone), and marked for deletion
    /// (a search node may still read them for the deletion grace).
    leftovers: (Vec<String>, Vec<String>),
    staging: std::path::PathBuf,
    sealing: crate::pipeline::Sealing,
    jobs: tokio::sync::mpsc::UnboundedReceiver<crate::storage::publisher::Job>,
}

impl StorageSetup {
    async fn open(config: &Config, url: &crate::storage::StorageUrl) -> anyhow::Result<Self> {
        use crate::metastore::{EmbeddedMetastore, Metastore, SplitState};
        let storage = crate::storage::ObjectStorage::open(url, &config.storage_env)
            .map_err(anyhow::Error::msg)?;
        let postgres = match &config.metastore {
            Some(url) => Some(Arc::new(
                crate::metastore::postgres::PostgresMetastore::connect(url)
                    .await
                    .context("cannot open the PostgreSQL metastore")?,
            )),
            None => None,
        };
        let metastore: Arc<dyn Metastore> = match &postgres {
            Some(postgres) => postgres.clone(),
            None => Arc::new(
                EmbeddedMetastore::open(&config.data_dir.join("metastore"))
                    .context("cannot open the metastore")?,
            ),
        };
        let node = crate::node::resolve(&config.data_dir, config.node_id.as_deref())?;
        let mut published = Vec::new();
        let (mut staged, mut marked) = (Vec::new(), Vec::new());
        let mut others = 0;
        for split in metastore
            .list_splits()
            .await
            .context("cannot list splits")?
        {
            // A search node reads every node's published splits; an ingest node takes in only
            // its own. Another node's splits are never cleaned up.
            if config.role == Role::Search || !split.belongs_to(&node) {
                others += 1;
                if config.role == Role::Search {
                    published.extend(split.published());
                }
                continue;
            }
            match split.published() {
                Some(split) => published.push(split),
                // Staged: its upload may or may not have finished, and nothing counts on it.
                None if split.state == SplitState::Staged => staged.push(split.id),
                None if split.state == SplitState::MarkedForDeletion => marked.push(split.id),
                // Of a signal this weft cannot read.
                None => others += 1,
            }
        }
        let staging = config.data_dir.join("staging");
        let (jobs_tx, jobs) = tokio::sync::mpsc::unbounded_channel();
        tracing::info!(
            storage = %url,
            node = %node,
            published = published.len(),
            leftovers = staged.len() + marked.len(),
            other_nodes_splits = others,
            "object storage configured"
        );
        Ok(StorageSetup {
            storage,
            metastore,
            postgres,
            node,
            published,
            leftovers: (staged, marked),
            staging: staging.clone(),
            sealing: crate::pipeline::Sealing {
                seal_interval: config.seal_interval,
                cache_bytes: config.cache_bytes,
                staging,
                jobs: jobs_tx,
            },
            jobs,
        })
    }
}

fn pipeline_config(config: &Config, faults: Option<Arc<Faults>>) -> PipelineConfig {
    PipelineConfig {
        commit_interval: config.commit_interval,
        wal_segment_bytes: config.wal_segment_bytes,
        inflight_bytes: config.inflight_bytes,
        wal_queue: 1024,
        // Small on purpose: rows acknowledged but not yet indexed are what delays search,
        // so backpressure should reach clients before this queue holds more than a moment
        // of indexing work.
        index_queue: 8,
        retention: config.retention,
        max_disk_bytes: config.max_disk_bytes,
        retention_interval: config.retention_interval,
        min_free_disk_bytes: config.min_free_disk_bytes,
        stall_after: config.indexer_stall_timeout,
        max_tail_subscribers: config.max_tail_subscribers,
        max_concurrent_exports: config.max_concurrent_exports,
        faults,
        sealing: None,
    }
}

impl Running {
    /// The ingest pipeline (tests look at its health).
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// Stops serving and leaves the data directory as a crash would: nothing more is committed,
    /// so the next start replays the WAL. For tests of recovery.
    pub async fn crash(self) {
        self.ready.store(false, Ordering::Release);
        let _ = self.stop_tx.send(true);
        let drain = futures_util::future::join_all(self.servers);
        let _ = tokio::time::timeout(self.shutdown_timeout / 2, drain).await;
        let pipeline = self.pipeline;
        let timeout = self.shutdown_timeout;
        let _ = tokio::task::spawn_blocking(move || pipeline.abandon_blocking(timeout)).await;
    }

    /// Stops accepting, lets in-flight requests finish, writes and commits what was accepted;
    /// all within the configured `shutdown_timeout`, whatever state weft is in: half of it for
    /// requests to finish, the rest for the pipeline.
    pub async fn stop(self) {
        let started = std::time::Instant::now();
        self.ready.store(false, Ordering::Release);
        let _ = self.stop_tx.send(true);
        let drain = futures_util::future::join_all(self.servers);
        if tokio::time::timeout(self.shutdown_timeout / 2, drain)
            .await
            .is_err()
        {
            tracing::warn!("requests still running after the drain timeout; stopping anyway");
        }
        let pipeline = self.pipeline;
        let left = self.shutdown_timeout.saturating_sub(started.elapsed());
        let _ = tokio::task::spawn_blocking(move || pipeline.shutdown_blocking(left)).await;
        tracing::info!("weft stopped");
    }
}
