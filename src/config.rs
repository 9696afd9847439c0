//! Configuration: defaults, then a TOML file, then `WEFT_*` environment variables, then flags.
//!
//! Every key, its variable and its default are listed in [`KEYS`]; `weft.example.toml` and the
//! README show the same list. A key weft does not know is an error that names it, in the file
//! and in the environment alike.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Errors found while loading configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for weft (unknown keys are reported here by name).
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An environment variable weft does not know.
    #[error("unknown environment variable {0}; known: {known}", known = env_names().join(", "))]
    UnknownEnv(String),
    /// A value that does not parse or is out of range.
    #[error("invalid value for {key}: {message}")]
    Invalid {
        /// The key or variable.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Every configuration key: name, environment variable, default, meaning.
pub const KEYS: &[(&str, &str, &str, &str)] = &[
    (
        "data_dir",
        "WEFT_DATA_DIR",
        "./weft-data",
        "where the WAL and index live",
    ),
    (
        "grpc_listen",
        "WEFT_GRPC_LISTEN",
        "127.0.0.1:4317",
        "OTLP/gRPC listener; port 0 picks one",
    ),
    (
        "http_listen",
        "WEFT_HTTP_LISTEN",
        "127.0.0.1:4318",
        "OTLP/HTTP, query API and UI listener",
    ),
    (
        "log_level",
        "WEFT_LOG_LEVEL",
        "info",
        "weft's own log filter (RUST_LOG syntax)",
    ),
    (
        "commit_interval",
        "WEFT_COMMIT_INTERVAL",
        "500ms",
        "longest wait from ack to searchable",
    ),
    ("retention", "WEFT_RETENTION", "7d", "how long data is kept"),
    (
        "retention_interval",
        "WEFT_RETENTION_INTERVAL",
        "1m",
        "how often retention runs",
    ),
    (
        "max_disk_bytes",
        "WEFT_MAX_DISK_BYTES",
        "0",
        "index disk cap in bytes; 0 means none",
    ),
    (
        "storage",
        "WEFT_STORAGE",
        "",
        "object storage for sealed partitions: s3://bucket/prefix (any S3-compatible service), gs://bucket/prefix, az://container/prefix or file:///path; none keeps everything on the local disk. Each reads its standard variables: AWS_* (AWS_ENDPOINT_URL, AWS_REGION, AWS_ALLOW_HTTP, keys), GOOGLE_* (GOOGLE_SERVICE_ACCOUNT), AZURE_* (AZURE_STORAGE_ACCOUNT_NAME, AZURE_STORAGE_ACCOUNT_KEY)",
    ),
    (
        "metastore",
        "WEFT_METASTORE",
        "",
        "with storage: where splits are listed; postgres://user:password@host:port/db (or postgres:///db?host=/run/postgresql); none keeps the list in a file under data_dir",
    ),
    (
        "node_id",
        "WEFT_NODE_ID",
        "",
        "with storage: this node's name; the splits it publishes carry it, and at start it takes in only its own. None: one is made up and kept in data_dir/node-id",
    ),
    (
        "role",
        "WEFT_ROLE",
        "all",
        "all: one node that ingests and answers queries. In a cluster (storage and a PostgreSQL metastore shared by every node), ingest: takes OTLP and publishes splits; search: takes no OTLP and answers queries over the splits every node published",
    ),
    (
        "advertise",
        "WEFT_ADVERTISE",
        "",
        "with a PostgreSQL metastore: the URL other nodes reach this node's HTTP API at, e.g. http://10.0.0.5:4318; none: http_listen's address (127.0.0.1 in place of 0.0.0.0)",
    ),
    (
        "seal_interval",
        "WEFT_SEAL_INTERVAL",
        "10m",
        "with storage: a partition is sealed and uploaded once its hour is over and no record has arrived for it for this long",
    ),
    (
        "seal_docs",
        "WEFT_SEAL_DOCS",
        "5000000",
        "with storage: records at which a partition is sealed and uploaded at once, without waiting for its hour to end; later records of that hour start the hour's next part. Bounds a split's size whatever an hour receives",
    ),
    (
        "cache_bytes",
        "WEFT_CACHE_BYTES",
        "10737418240",
        "with storage: local disk kept for partitions already in object storage; beyond it the oldest are deleted locally and fetched back when a query needs them",
    ),
    (
        "max_body_bytes",
        "WEFT_MAX_BODY_BYTES",
        "67108864",
        "largest request after decompression",
    ),
    (
        "inflight_bytes",
        "WEFT_INFLIGHT_BYTES",
        "268435456",
        "request bytes between arrival and indexing before 503",
    ),
    (
        "wal_segment_bytes",
        "WEFT_WAL_SEGMENT_BYTES",
        "67108864",
        "size at which a WAL segment is closed",
    ),
    (
        "query_timeout",
        "WEFT_QUERY_TIMEOUT",
        "30s",
        "longest a query may run",
    ),
    (
        "max_future_skew",
        "WEFT_MAX_FUTURE_SKEW",
        "1h",
        "records stamped further ahead of weft's clock are rejected one by one (partial_success); so are records older than the retention",
    ),
    (
        "max_open_partitions",
        "WEFT_MAX_OPEN_PARTITIONS",
        "4",
        "partition writers open at once (each has threads and an arena); more are committed and closed as needed",
    ),
    (
        "index_memory_bytes",
        "WEFT_INDEX_MEMORY_BYTES",
        "268435456",
        "memory the open partition writers share before they flush segments",
    ),
    (
        "body_read_timeout",
        "WEFT_BODY_READ_TIMEOUT",
        "60s",
        "longest a client may take to send an export's body; slower ones are refused (503 / UNAVAILABLE) and their place freed",
    ),
    (
        "max_tail_subscribers",
        "WEFT_MAX_TAIL_SUBSCRIBERS",
        "64",
        "live tails open at once (HTTP and gRPC); more are refused with 429 / RESOURCE_EXHAUSTED",
    ),
    (
        "max_concurrent_exports",
        "WEFT_MAX_CONCURRENT_EXPORTS",
        "64",
        "export requests being read, decoded or written at once; more are refused with 503 / UNAVAILABLE before their body is read",
    ),
    (
        "min_free_disk_bytes",
        "WEFT_MIN_FREE_DISK_BYTES",
        "268435456",
        "below this many free bytes on the data directory's file system, new data is refused (503 / UNAVAILABLE); 0 turns the check off",
    ),
    (
        "shutdown_timeout",
        "WEFT_SHUTDOWN_TIMEOUT",
        "30s",
        "longest SIGTERM/SIGINT may take to stop weft, whatever state it is in",
    ),
    (
        "indexer_stall_timeout",
        "WEFT_INDEXER_STALL_TIMEOUT",
        "60s",
        "an indexer busy with one batch or commit for longer counts as stalled: data is refused and /readyz says so",
    ),
    (
        "tls_cert",
        "WEFT_TLS_CERT",
        "",
        "PEM certificate chain; with tls_key, both listeners speak TLS only. Reloaded when the file changes or on SIGHUP",
    ),
    (
        "tls_key",
        "WEFT_TLS_KEY",
        "",
        "PEM private key of tls_cert (both or neither)",
    ),
    (
        "tls_client_ca",
        "WEFT_TLS_CLIENT_CA",
        "",
        "PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS)",
    ),
    (
        "ingest_tokens",
        "WEFT_INGEST_TOKENS",
        "",
        "tokens for OTLP export, name=secret,name=secret; none: export is open over loopback only",
    ),
    (
        "read_tokens",
        "WEFT_READ_TOKENS",
        "",
        "tokens for queries, tail, the Jaeger API and the UI's data; none: open over loopback only",
    ),
    (
        "admin_tokens",
        "WEFT_ADMIN_TOKENS",
        "",
        "tokens for severity rule changes (and reading); a secret may end with :GLOB|GLOB to limit the services its rules select; none: open over loopback only",
    ),
];

fn env_names() -> Vec<&'static str> {
    KEYS.iter().map(|k| k.1).collect()
}

/// The file format: every key optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    data_dir: Option<PathBuf>,
    grpc_listen: Option<String>,
    http_listen: Option<String>,
    log_level: Option<String>,
    commit_interval: Option<String>,
    retention: Option<String>,
    retention_interval: Option<String>,
    max_disk_bytes: Option<u64>,
    storage: Option<String>,
    metastore: Option<String>,
    node_id: Option<String>,
    role: Option<String>,
    advertise: Option<String>,
    seal_interval: Option<String>,
    seal_docs: Option<u64>,
    cache_bytes: Option<u64>,
    max_body_bytes: Option<u64>,
    inflight_bytes: Option<u64>,
    wal_segment_bytes: Option<u64>,
    query_timeout: Option<String>,
    min_free_disk_bytes: Option<u64>,
    max_future_skew: Option<String>,
    body_read_timeout: Option<String>,
    max_tail_subscribers: Option<u64>,
    max_concurrent_exports: Option<u64>,
    max_open_partitions: Option<u64>,
    index_memory_bytes: Option<u64>,
    shutdown_timeout: Option<String>,
    indexer_stall_timeout: Option<String>,
    admin_tokens: Option<std::collections::BTreeMap<String, String>>,
    ingest_tokens: Option<std::collections::BTreeMap<String, String>>,
    read_tokens: Option<std::collections::BTreeMap<String, String>>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    severity_default_ttl: Option<String>,
    severity_max_ttl: Option<String>,
}

/// Values given on the command line; they win over everything else.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--grpc-listen`.
    pub grpc_listen: Option<String>,
    /// `--http-listen`.
    pub http_listen: Option<String>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`.
    pub tls_key: Option<PathBuf>,
    /// `--storage`.
    pub storage: Option<String>,
    /// `--metastore`.
    pub metastore: Option<String>,
    /// `--node-id`.
    pub node_id: Option<String>,
    /// `--role`.
    pub role: Option<String>,
    /// `--advertise`.
    pub advertise: Option<String>,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the WAL and index live.
    pub data_dir: PathBuf,
    /// OTLP/gRPC listener.
    pub grpc_listen: SocketAddr,
    /// HTTP listener.
    pub http_listen: SocketAddr,
    /// weft's own log filter.
    pub log_level: String,
    /// Longest wait from ack to searchable.
    pub commit_interval: Duration,
    /// How long data is kept.
    pub retention: Duration,
    /// How often retention runs.
    pub retention_interval: Duration,
    /// Index disk cap.
    pub max_disk_bytes: Option<u64>,
    /// Object storage for sealed partitions; `None` keeps everything local.
    pub storage: Option<crate::storage::StorageUrl>,
    /// Where splits are listed: PostgreSQL's URL, or `None` for the embedded file.
    pub metastore: Option<String>,
    /// This node's name, checked; `None`: the one kept in the data directory.
    pub node_id: Option<String>,
    /// What this node does in a cluster.
    pub role: crate::node::Role,
    /// Where other nodes reach this one's HTTP API; `None`: derived from the address bound.
    pub advertise: Option<String>,
    /// How long a partition stays open after its hour ends.
    pub seal_interval: Duration,
    /// Records at which a partition is sealed at once, its hour continuing in a new part.
    pub seal_docs: u64,
    /// Local bytes kept for partitions already in object storage.
    pub cache_bytes: u64,
    /// The `AWS_*`, `GOOGLE_*` and `AZURE_*` variables, for the object storage client
    /// (endpoint, region, credentials).
    pub storage_env: Vec<(String, String)>,
    /// Largest request body after decompression.
    pub max_body_bytes: usize,
    /// Request bytes in flight before weft refuses more.
    pub inflight_bytes: usize,
    /// WAL segment size.
    pub wal_segment_bytes: u64,
    /// Longest a query may run.
    pub query_timeout: Duration,
    /// Records stamped further ahead than this are rejected.
    pub max_future_skew: Duration,
    /// Longest a client may take to send an export's body.
    pub body_read_timeout: Duration,
    /// Live tails open at once.
    pub max_tail_subscribers: usize,
    /// Export requests in progress at once.
    pub max_concurrent_exports: usize,
    /// Partition writers open at once.
    pub max_open_partitions: usize,
    /// Memory the open writers share.
    pub index_memory_bytes: usize,
    /// Free bytes below which new data is refused; 0 turns the check off.
    pub min_free_disk_bytes: u64,
    /// Longest a graceful stop may take.
    pub shutdown_timeout: Duration,
    /// How long the indexer may be busy with one piece of work before it counts as stalled.
    pub indexer_stall_timeout: Duration,
    /// Tokens of every role (`ingest_tokens`, `read_tokens`, `admin_tokens`); a role with
    /// none is open over loopback only.
    pub tokens: crate::auth::Tokens,
    /// TLS for both listeners; `None` serves plain TCP.
    pub tls: Option<crate::tls::TlsFiles>,
    /// TTL of a severity rule that names none.
    pub severity_default_ttl: Duration,
    /// Longest TTL a severity rule may have.
    pub severity_max_ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config::resolve(RawConfig::default()).expect("defaults are valid")
    }
}

impl Config {
    /// Loads configuration from an optional file, the environment (as a map, so tests pass
    /// their own) and command-line overrides.
    pub fn load(
        file: Option<&Path>,
        env: &HashMap<String, String>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut raw = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                toml::from_str::<RawConfig>(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: e.message().to_string(),
                })?
            }
            None => RawConfig::default(),
        };
        apply_env(&mut raw, env)?;
        let mut storage_env: Vec<(String, String)> = env
            .iter()
            .filter(|(k, _)| {
                ["AWS_", "GOOGLE_", "AZURE_"]
                    .iter()
                    .any(|p| k.starts_with(p))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        storage_env.sort();
        if let Some(v) = &overrides.data_dir {
            raw.data_dir = Some(v.clone());
        }
        if let Some(v) = &overrides.grpc_listen {
            raw.grpc_listen = Some(v.clone());
        }
        if let Some(v) = &overrides.http_listen {
            raw.http_listen = Some(v.clone());
        }
        if let Some(v) = &overrides.log_level {
            raw.log_level = Some(v.clone());
        }
        if let Some(v) = &overrides.tls_cert {
            raw.tls_cert = Some(v.clone());
        }
        if let Some(v) = &overrides.tls_key {
            raw.tls_key = Some(v.clone());
        }
        if let Some(v) = &overrides.storage {
            raw.storage = Some(v.clone());
        }
        if let Some(v) = &overrides.metastore {
            raw.metastore = Some(v.clone());
        }
        if let Some(v) = &overrides.node_id {
            raw.node_id = Some(v.clone());
        }
        if let Some(v) = &overrides.role {
            raw.role = Some(v.clone());
        }
        if let Some(v) = &overrides.advertise {
            raw.advertise = Some(v.clone());
        }
        let mut config = Config::resolve(raw)?;
        config.storage_env = storage_env;
        Ok(config)
    }

    fn resolve(raw: RawConfig) -> Result<Config, ConfigError> {
        let tokens = tokens(&raw)?;
        let tls = tls_files(&raw)?;
        let listen = |key: &str, value: Option<String>, default: &str| {
            let text = value.unwrap_or_else(|| default.to_string());
            text.parse::<SocketAddr>()
                .map_err(|e| ConfigError::Invalid {
                    key: key.to_string(),
                    message: format!("'{text}' is not an address like 127.0.0.1:4317 ({e})"),
                })
        };
        let duration = |key: &str, value: Option<String>, default: &str| {
            let text = value.unwrap_or_else(|| default.to_string());
            parse_duration(&text).map_err(|message| ConfigError::Invalid {
                key: key.to_string(),
                message,
            })
        };
        let positive = |key: &str, value: u64| {
            if value == 0 {
                Err(ConfigError::Invalid {
                    key: key.to_string(),
                    message: "must be greater than 0".to_string(),
                })
            } else {
                Ok(value)
            }
        };
        let role = match raw.role.as_deref().map(str::trim) {
            None | Some("") => crate::node::Role::All,
            Some(name) => {
                crate::node::Role::parse(name).map_err(|message| ConfigError::Invalid {
                    key: "role".into(),
                    message,
                })?
            }
        };
        let shares_a_metastore = raw
            .metastore
            .as_deref()
            .is_some_and(|m| !m.trim().is_empty());
        if role != crate::node::Role::All
            && (raw.storage.as_deref().is_none_or(|s| s.trim().is_empty()) || !shares_a_metastore)
        {
            return Err(ConfigError::Invalid {
                key: "role".into(),
                message: format!(
                    "role {} is for a cluster: set storage and a PostgreSQL metastore shared by every node",
                    role.name()
                ),
            });
        }
        let commit_interval = duration("commit_interval", raw.commit_interval, "500ms")?;
        if commit_interval.is_zero() {
            return Err(ConfigError::Invalid {
                key: "commit_interval".into(),
                message: "must be greater than 0".into(),
            });
        }
        Ok(Config {
            data_dir: raw.data_dir.unwrap_or_else(|| PathBuf::from("./weft-data")),
            grpc_listen: listen("grpc_listen", raw.grpc_listen, "127.0.0.1:4317")?,
            http_listen: listen("http_listen", raw.http_listen, "127.0.0.1:4318")?,
            log_level: raw.log_level.unwrap_or_else(|| "info".to_string()),
            commit_interval,
            retention: duration("retention", raw.retention, "7d")?,
            retention_interval: duration("retention_interval", raw.retention_interval, "1m")?,
            max_disk_bytes: raw.max_disk_bytes.filter(|b| *b > 0),
            storage: match raw.storage.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(text) => Some(crate::storage::StorageUrl::parse(text).map_err(|message| {
                    ConfigError::Invalid {
                        key: "storage".into(),
                        message,
                    }
                })?),
            },
            metastore: match raw.metastore.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                    if raw.storage.as_deref().is_none_or(|s| s.trim().is_empty()) {
                        return Err(ConfigError::Invalid {
                            key: "metastore".into(),
                            message: "lists splits in object storage; set storage too".into(),
                        });
                    }
                    Some(url.to_string())
                }
                Some(_) => {
                    return Err(ConfigError::Invalid {
                        key: "metastore".into(),
                        message: "expected postgres://user:password@host:port/database".into(),
                    });
                }
            },
            node_id: match raw.node_id.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(id) => {
                    Some(
                        crate::node::check(id).map_err(|message| ConfigError::Invalid {
                            key: "node_id".into(),
                            message,
                        })?,
                    )
                }
            },
            role,
            advertise: match raw.advertise.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                    Some(url.trim_end_matches('/').to_string())
                }
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        key: "advertise".into(),
                        message: format!("'{other}' is not a URL like http://10.0.0.5:4318"),
                    });
                }
            },
            seal_interval: duration("seal_interval", raw.seal_interval, "10m")?,
            seal_docs: positive("seal_docs", raw.seal_docs.unwrap_or(5_000_000))?,
            cache_bytes: raw.cache_bytes.unwrap_or(10 << 30),
            storage_env: Vec::new(),
            max_body_bytes: positive("max_body_bytes", raw.max_body_bytes.unwrap_or(64 << 20))?
                as usize,
            inflight_bytes: positive("inflight_bytes", raw.inflight_bytes.unwrap_or(256 << 20))?
                as usize,
            wal_segment_bytes: positive(
                "wal_segment_bytes",
                raw.wal_segment_bytes.unwrap_or(64 << 20),
            )?,
            query_timeout: duration("query_timeout", raw.query_timeout, "30s")?,
            min_free_disk_bytes: raw.min_free_disk_bytes.unwrap_or(256 << 20),
            max_future_skew: duration("max_future_skew", raw.max_future_skew, "1h")?,
            body_read_timeout: duration("body_read_timeout", raw.body_read_timeout, "60s")?,
            max_tail_subscribers: positive(
                "max_tail_subscribers",
                raw.max_tail_subscribers.unwrap_or(64),
            )? as usize,
            max_concurrent_exports: positive(
                "max_concurrent_exports",
                raw.max_concurrent_exports.unwrap_or(64),
            )? as usize,
            max_open_partitions: positive(
                "max_open_partitions",
                raw.max_open_partitions.unwrap_or(4),
            )? as usize,
            index_memory_bytes: positive(
                "index_memory_bytes",
                raw.index_memory_bytes.unwrap_or(256 << 20),
            )? as usize,
            shutdown_timeout: duration("shutdown_timeout", raw.shutdown_timeout, "30s")?,
            indexer_stall_timeout: duration(
                "indexer_stall_timeout",
                raw.indexer_stall_timeout,
                "60s",
            )?,
            tokens,
            tls,
            severity_default_ttl: duration("severity_default_ttl", raw.severity_default_ttl, "1h")?,
            severity_max_ttl: duration("severity_max_ttl", raw.severity_max_ttl, "24h")?,
        })
    }
}

fn apply_env(raw: &mut RawConfig, env: &HashMap<String, String>) -> Result<(), ConfigError> {
    let number = |key: &str, value: &str| {
        value
            .trim()
            .parse::<u64>()
            .map_err(|_| ConfigError::Invalid {
                key: key.to_string(),
                message: format!("'{value}' is not a whole number"),
            })
    };
    for (key, value) in env {
        if !key.starts_with("WEFT_") || crate::cli::CLIENT_ENV.contains(&key.as_str()) {
            continue;
        }
        let value = value.clone();
        match key.as_str() {
            "WEFT_DATA_DIR" => raw.data_dir = Some(PathBuf::from(value)),
            "WEFT_GRPC_LISTEN" => raw.grpc_listen = Some(value),
            "WEFT_HTTP_LISTEN" => raw.http_listen = Some(value),
            "WEFT_LOG_LEVEL" => raw.log_level = Some(value),
            "WEFT_COMMIT_INTERVAL" => raw.commit_interval = Some(value),
            "WEFT_RETENTION" => raw.retention = Some(value),
            "WEFT_RETENTION_INTERVAL" => raw.retention_interval = Some(value),
            "WEFT_STORAGE" => raw.storage = Some(value),
            "WEFT_SEAL_INTERVAL" => raw.seal_interval = Some(value),
            "WEFT_METASTORE" => raw.metastore = Some(value),
            "WEFT_NODE_ID" => raw.node_id = Some(value),
            "WEFT_ROLE" => raw.role = Some(value),
            "WEFT_ADVERTISE" => raw.advertise = Some(value),
            "WEFT_SEAL_DOCS" => raw.seal_docs = Some(number(key, &value)?),
            "WEFT_CACHE_BYTES" => raw.cache_bytes = Some(number(key, &value)?),
            "WEFT_QUERY_TIMEOUT" => raw.query_timeout = Some(value),
            "WEFT_SHUTDOWN_TIMEOUT" => raw.shutdown_timeout = Some(value),
            "WEFT_MAX_FUTURE_SKEW" => raw.max_future_skew = Some(value),
            "WEFT_BODY_READ_TIMEOUT" => raw.body_read_timeout = Some(value),
            "WEFT_INDEXER_STALL_TIMEOUT" => raw.indexer_stall_timeout = Some(value),
            "WEFT_SEVERITY_DEFAULT_TTL" => raw.severity_default_ttl = Some(value),
            "WEFT_SEVERITY_MAX_TTL" => raw.severity_max_ttl = Some(value),
            "WEFT_ADMIN_TOKENS" => raw.admin_tokens = Some(token_list(key, &value)?),
            "WEFT_INGEST_TOKENS" => raw.ingest_tokens = Some(token_list(key, &value)?),
            "WEFT_READ_TOKENS" => raw.read_tokens = Some(token_list(key, &value)?),
            "WEFT_TLS_CERT" => raw.tls_cert = Some(PathBuf::from(value)),
            "WEFT_TLS_KEY" => raw.tls_key = Some(PathBuf::from(value)),
            "WEFT_TLS_CLIENT_CA" => raw.tls_client_ca = Some(PathBuf::from(value)),
            "WEFT_MAX_DISK_BYTES" => raw.max_disk_bytes = Some(number(key, &value)?),
            "WEFT_MAX_BODY_BYTES" => raw.max_body_bytes = Some(number(key, &value)?),
            "WEFT_INFLIGHT_BYTES" => raw.inflight_bytes = Some(number(key, &value)?),
            "WEFT_WAL_SEGMENT_BYTES" => raw.wal_segment_bytes = Some(number(key, &value)?),
            "WEFT_MIN_FREE_DISK_BYTES" => raw.min_free_disk_bytes = Some(number(key, &value)?),
            "WEFT_MAX_OPEN_PARTITIONS" => raw.max_open_partitions = Some(number(key, &value)?),
            "WEFT_MAX_TAIL_SUBSCRIBERS" => raw.max_tail_subscribers = Some(number(key, &value)?),
            "WEFT_MAX_CONCURRENT_EXPORTS" => {
                raw.max_concurrent_exports = Some(number(key, &value)?)
            }
            "WEFT_INDEX_MEMORY_BYTES" => raw.index_memory_bytes = Some(number(key, &value)?),
            _ => return Err(ConfigError::UnknownEnv(key.clone())),
        }
    }
    Ok(())
}

/// `name=secret,name=secret` (the form of every `WEFT_*_TOKENS` variable).
fn token_list(
    key: &str,
    value: &str,
) -> Result<std::collections::BTreeMap<String, String>, ConfigError> {
    let mut tokens = std::collections::BTreeMap::new();
    for pair in value.split(',').filter(|p| !p.trim().is_empty()) {
        let (name, secret) = pair.split_once('=').ok_or_else(|| ConfigError::Invalid {
            key: key.to_string(),
            message: "expected name=secret pairs separated by commas".into(),
        })?;
        tokens.insert(name.trim().to_string(), secret.trim().to_string());
    }
    Ok(tokens)
}

fn tokens(raw: &RawConfig) -> Result<crate::auth::Tokens, ConfigError> {
    use crate::auth::Role;
    let mut tokens = crate::auth::Tokens::default();
    for (role, key, entries) in [
        (Role::Ingest, "ingest_tokens", &raw.ingest_tokens),
        (Role::Read, "read_tokens", &raw.read_tokens),
        (Role::Admin, "admin_tokens", &raw.admin_tokens),
    ] {
        if let Some(entries) = entries {
            tokens
                .add_role(role, entries)
                .map_err(|message| ConfigError::Invalid {
                    key: key.into(),
                    message,
                })?;
        }
    }
    Ok(tokens)
}

fn tls_files(raw: &RawConfig) -> Result<Option<crate::tls::TlsFiles>, ConfigError> {
    let set = |p: &Option<PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
    match (set(&raw.tls_cert), set(&raw.tls_key)) {
        (Some(cert), Some(key)) => Ok(Some(crate::tls::TlsFiles {
            cert,
            key,
            client_ca: set(&raw.tls_client_ca),
        })),
        (None, None) if set(&raw.tls_client_ca).is_some() => Err(ConfigError::Invalid {
            key: "tls_client_ca".into(),
            message: "needs tls_cert and tls_key: client certificates are checked over TLS".into(),
        }),
        (None, None) => Ok(None),
        (cert, _) => Err(ConfigError::Invalid {
            key: if cert.is_some() {
                "tls_key"
            } else {
                "tls_cert"
            }
            .into(),
            message: "tls_cert and tls_key go together: set both (PEM files) or neither".into(),
        }),
    }
}

/// A duration setting: `500ms`, `15m`, `7d` (weft's one duration syntax,
/// `weft_index::text::duration`, shared with every API parameter and the query language).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    weft_index::text::duration(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn defaults_need_no_file() {
        let c = Config::load(None, &HashMap::new(), &Overrides::default()).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("./weft-data"));
        assert_eq!(c.grpc_listen.to_string(), "127.0.0.1:4317");
        assert_eq!(c.http_listen.to_string(), "127.0.0.1:4318");
        assert_eq!(c.retention, Duration::from_secs(7 * 86_400));
        assert_eq!(c.commit_interval, Duration::from_millis(500));
        assert_eq!(c.max_body_bytes, 64 << 20);
        assert_eq!(c.max_disk_bytes, None);
    }

    #[test]
    fn misspelled_key_is_rejected_by_name() {
        let f = file("data_dir = \"/tmp/x\"\nretension = \"1d\"\n");
        let err = Config::load(Some(f.path()), &HashMap::new(), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("retension"), "{err}");
    }

    #[test]
    fn unknown_env_is_rejected_by_name() {
        let err = Config::load(None, &env(&[("WEFT_DATADIR", "/x")]), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("WEFT_DATADIR"), "{err}");
        assert!(err.contains("WEFT_DATA_DIR"), "{err}");
    }

    #[test]
    fn precedence_is_file_then_env_then_flags() {
        let f =
            file("data_dir = \"/from/file\"\nretention = \"2d\"\ngrpc_listen = \"127.0.0.1:1\"\n");
        let e = env(&[
            ("WEFT_DATA_DIR", "/from/env"),
            ("WEFT_GRPC_LISTEN", "127.0.0.1:2"),
        ]);
        let o = Overrides {
            grpc_listen: Some("127.0.0.1:3".into()),
            ..Default::default()
        };
        let c = Config::load(Some(f.path()), &e, &o).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/from/env"));
        assert_eq!(c.retention, Duration::from_secs(2 * 86_400));
        assert_eq!(c.grpc_listen.port(), 3);
    }

    #[test]
    fn roles_other_than_all_need_storage_and_a_shared_metastore() {
        let load = |vars: &[(&str, &str)], role: Option<&str>| {
            Config::load(
                None,
                &env(vars),
                &Overrides {
                    role: role.map(str::to_string),
                    ..Default::default()
                },
            )
        };
        assert_eq!(load(&[], None).unwrap().role, crate::node::Role::All);
        let cluster = [
            ("WEFT_STORAGE", "s3://bucket/weft"),
            ("WEFT_METASTORE", "postgres://weft@db/weft"),
        ];
        assert_eq!(
            load(&[&cluster[..], &[("WEFT_ROLE", "ingest")]].concat(), None)
                .unwrap()
                .role,
            crate::node::Role::Ingest
        );
        assert_eq!(
            load(&cluster, Some("search")).unwrap().role,
            crate::node::Role::Search
        );
        let alone = load(&cluster[..1], Some("search")).unwrap_err().to_string();
        assert!(alone.contains("PostgreSQL metastore"), "{alone}");
        let unknown = load(&cluster, Some("query")).unwrap_err().to_string();
        assert!(unknown.contains("all, ingest or search"), "{unknown}");
    }

    #[test]
    fn object_storage_settings_and_the_aws_variables() {
        let c = Config::load(
            None,
            &env(&[
                ("WEFT_STORAGE", "s3://bucket/weft"),
                ("WEFT_METASTORE", "postgres://weft@db/weft"),
                ("WEFT_SEAL_INTERVAL", "30s"),
                ("WEFT_SEAL_DOCS", "20000"),
                ("WEFT_CACHE_BYTES", "1000"),
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
                ("HOME", "/root"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.storage.unwrap().to_string(), "s3://bucket/weft");
        assert_eq!(c.metastore.as_deref(), Some("postgres://weft@db/weft"));
        assert_eq!(c.seal_interval, Duration::from_secs(30));
        assert_eq!(c.seal_docs, 20_000);
        assert_eq!(c.cache_bytes, 1000);
        assert_eq!(
            c.storage_env,
            [(
                "AWS_ENDPOINT_URL".to_string(),
                "http://127.0.0.1:9000".to_string()
            )]
        );
        assert!(Config::default().storage.is_none(), "all local by default");

        for (vars, says) in [
            (vec![("WEFT_STORAGE", "bucket")], "storage"),
            (
                vec![("WEFT_METASTORE", "postgres://weft@db/weft")],
                "set storage too",
            ),
            (
                vec![
                    ("WEFT_STORAGE", "file:///x"),
                    ("WEFT_METASTORE", "mysql://x"),
                ],
                "postgres://",
            ),
        ] {
            let err = Config::load(None, &env(&vars), &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{vars:?}: {err}");
        }
    }

    #[test]
    fn bad_values_say_which_key() {
        let err = Config::load(
            None,
            &env(&[("WEFT_RETENTION", "forever")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("retention"), "{err}");
        let f = file("max_body_bytes = 0\n");
        let err = Config::load(Some(f.path()), &HashMap::new(), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_body_bytes"), "{err}");
    }

    #[test]
    fn tokens_from_file_and_env() {
        use crate::auth::{Access, Role};
        let f = file(
            "[admin_tokens]\nalice = \"correct horse\"\n[ingest_tokens]\ncollector = \"battery staple\"\n",
        );
        let c = Config::load(Some(f.path()), &HashMap::new(), &Overrides::default()).unwrap();
        let remote = Some("10.0.0.1:1".parse().unwrap());
        let alice = c
            .tokens
            .authorize(Access::ADMIN, remote, Some("correct horse"));
        assert_eq!(alice.unwrap().name, "alice");
        let collector = c
            .tokens
            .authorize(Access::INGEST, remote, Some("battery staple"));
        assert_eq!(collector.unwrap().name, "collector");
        assert!(!c.tokens.has(Role::Read));
        let c = Config::load(
            None,
            &env(&[
                ("WEFT_ADMIN_TOKENS", "a=12345678,b=abcdefgh:checkout*|cart"),
                ("WEFT_READ_TOKENS", "grafana=read-secret-1"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        let b = c
            .tokens
            .authorize(Access::ADMIN, remote, Some("abcdefgh"))
            .unwrap();
        assert!(b.check_scope(Some("cart")).is_ok());
        assert!(b.check_scope(Some("payments")).is_err());
        assert!(c.tokens.has(Role::Read));
        let err = Config::load(
            None,
            &env(&[("WEFT_ADMIN_TOKENS", "a=short")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("8 characters"), "{err}");
    }

    #[test]
    fn durations_that_would_overflow_are_refused_not_a_panic() {
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration(" 999999999y ").unwrap(),
            Duration::from_secs(999_999_999 * 31_557_600)
        );
        for text in [
            "1.5s1.5s1.5s018446744073709551611.5s1.5s1.5s1.5s1.5s",
            "18446744073709551615s",
            "1000000000y",
            &"1s".repeat(40),
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains("at most"), "{err}");
        }
    }

    #[test]
    fn tls_needs_both_files() {
        let err = Config::load(
            None,
            &env(&[("WEFT_TLS_CERT", "/etc/weft/cert.pem")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("tls_key") && err.contains("both"), "{err}");
        let o = Overrides {
            tls_cert: Some("/c.pem".into()),
            tls_key: Some("/k.pem".into()),
            ..Default::default()
        };
        let c = Config::load(None, &env(&[("WEFT_TLS_CLIENT_CA", "/ca.pem")]), &o).unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert, PathBuf::from("/c.pem"));
        assert_eq!(tls.client_ca, Some(PathBuf::from("/ca.pem")));
        let err = Config::load(
            None,
            &env(&[("WEFT_TLS_CLIENT_CA", "/ca.pem")]),
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("tls_client_ca"), "{err}");
    }

    #[test]
    fn the_example_file_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("weft.example.toml");
        Config::load(Some(&path), &HashMap::new(), &Overrides::default()).unwrap();
    }
}
