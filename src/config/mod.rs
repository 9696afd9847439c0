//! Configuration: defaults, then a TOML file, then `WEFT_*` environment variables, then flags.
//!
//! - `keys`: every key, declared once ([`KEYS`]): its variable, flag, kind, default and meaning;
//!   the README's table is made from it.
//! - this file: the layers gathered into one text value per key, each read by one parser per
//!   kind into the validated [`Config`], with the checks across keys. A key or `WEFT_*`
//!   variable weft does not know is an error that names it and the nearest one it knows.
//! - `storage_url`: the `storage` setting.
//!
//! A leaf among weft's modules: it names only the auth tokens and TLS files it builds.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod keys;
mod storage_url;

pub use keys::{KEYS, Key, Kind};
pub use storage_url::{StorageKind, StorageUrl};

/// The environment variables of `weft severity` (`crate::cli`), which `weft serve`'s
/// configuration accepts (and ignores) so that a shell set up for one can run the other.
pub const CLIENT_ENV: [&str; 3] = ["WEFT_URL", "WEFT_TOKEN", "WEFT_CA_FILE"];

fn hint(nearest: &Option<String>) -> String {
    nearest
        .as_ref()
        .map(|n| format!("; did you mean {n}?"))
        .unwrap_or_default()
}

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
    /// A key (in the file) or an environment variable weft does not know, and the nearest one
    /// it knows.
    #[error("unknown {what} {name}{}", hint(.nearest))]
    Unknown {
        /// `key` or `environment variable`.
        what: &'static str,
        /// What was given.
        name: String,
        /// The closest known name.
        nearest: Option<String>,
    },
    /// A value that does not parse or is out of range.
    #[error("invalid value for {key}: {message}")]
    Invalid {
        /// The key or variable.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Values given on the command line, by key; they win over everything else.
#[derive(Debug, Default, Clone)]
pub struct Overrides(Vec<(&'static str, String)>);

impl Overrides {
    /// `key` set to `value` (the text a flag took).
    pub fn set(mut self, key: &'static str, value: impl Into<String>) -> Self {
        debug_assert!(keys::find(key).is_some(), "{key} is not a key");
        self.0.push((key, value.into()));
        self
    }

    /// `key` set to `value` when there is one.
    pub fn set_some(self, key: &'static str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(value) => self.set(key, value),
            None => self,
        }
    }

    /// Whether `key` was given.
    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| *k == key)
    }
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
    pub storage: Option<StorageUrl>,
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
        Config::resolve(&Values::defaults()).expect("defaults are valid")
    }
}

/// One value per key, as text (tokens as a table), from whichever layer set it last.
struct Values(BTreeMap<&'static str, Value>);

/// A key's value before it is read by its kind's parser.
#[derive(Clone, Debug)]
enum Value {
    Text(String),
    Tokens(BTreeMap<String, String>),
}

impl Values {
    fn defaults() -> Values {
        Values(
            KEYS.iter()
                .map(|k| {
                    let value = match k.kind {
                        Kind::Tokens => Value::Tokens(BTreeMap::new()),
                        _ => Value::Text(k.default.to_string()),
                    };
                    (k.name, value)
                })
                .collect(),
        )
    }

    /// Takes the keys of a TOML file.
    fn read_file(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let parse_error = |message: String| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        };
        let table: toml::Table =
            toml::from_str(text).map_err(|e| parse_error(e.message().to_string()))?;
        for (name, value) in table {
            let key = keys::find(&name).ok_or_else(|| ConfigError::Unknown {
                what: "key",
                nearest: keys::nearest(&name, KEYS.iter().map(|k| k.name)).map(str::to_string),
                name: name.clone(),
            })?;
            let value = match (key.kind, value) {
                (Kind::Tokens, toml::Value::Table(entries)) => Value::Tokens(
                    entries
                        .into_iter()
                        .map(|(n, secret)| match secret {
                            toml::Value::String(secret) => Ok((n, secret)),
                            other => Err(parse_error(format!(
                                "{}: the secret of {n} must be a string, not {}",
                                key.name,
                                other.type_str()
                            ))),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                (Kind::Tokens, other) => {
                    return Err(parse_error(format!(
                        "{} must be a table of name = \"secret\", not {}",
                        key.name,
                        other.type_str()
                    )));
                }
                (_, toml::Value::String(text)) => Value::Text(text),
                (_, toml::Value::Integer(n)) => Value::Text(n.to_string()),
                (_, other) => {
                    return Err(parse_error(format!(
                        "{} must be a string or a number, not {}",
                        key.name,
                        other.type_str()
                    )));
                }
            };
            self.0.insert(key.name, value);
        }
        Ok(())
    }

    /// Takes the `WEFT_*` variables (but the client's).
    fn read_env(&mut self, env: &HashMap<String, String>) -> Result<(), ConfigError> {
        // In name order, so that the first unknown one reported does not depend on the map's.
        let mut names: Vec<&String> = env.keys().collect();
        names.sort();
        for name in names {
            if !name.starts_with("WEFT_") || CLIENT_ENV.contains(&name.as_str()) {
                continue;
            }
            let key = keys::find_env(name).ok_or_else(|| {
                // Compared without the prefix every variable shares.
                let bare = name.trim_start_matches("WEFT_").to_ascii_lowercase();
                ConfigError::Unknown {
                    what: "environment variable",
                    nearest: keys::nearest(&bare, KEYS.iter().map(|k| k.name))
                        .and_then(keys::find)
                        .map(Key::env),
                    name: name.clone(),
                }
            })?;
            let text = &env[name];
            let value = match key.kind {
                Kind::Tokens => Value::Tokens(token_list(&key.env(), text)?),
                _ => Value::Text(text.clone()),
            };
            self.0.insert(key.name, value);
        }
        Ok(())
    }

    /// Takes the flags given.
    fn read_flags(&mut self, overrides: &Overrides) {
        for (name, value) in &overrides.0 {
            self.0.insert(name, Value::Text(value.clone()));
        }
    }

    fn text(&self, name: &str) -> &str {
        debug_assert!(keys::find(name).is_some(), "{name} is not a key");
        match self.0.get(name) {
            Some(Value::Text(text)) => text,
            _ => "",
        }
    }

    /// The value, trimmed; `None` when empty.
    fn optional(&self, name: &str) -> Option<&str> {
        Some(self.text(name).trim()).filter(|t| !t.is_empty())
    }

    fn path(&self, name: &str) -> Option<PathBuf> {
        self.optional(name).map(PathBuf::from)
    }

    fn address(&self, name: &str) -> Result<SocketAddr, ConfigError> {
        let text = self.text(name).trim();
        text.parse().map_err(|e| {
            invalid(
                name,
                format!("'{text}' is not an address like 127.0.0.1:4317 ({e})"),
            )
        })
    }

    fn duration(&self, name: &str) -> Result<Duration, ConfigError> {
        parse_duration(self.text(name)).map_err(|message| invalid(name, message))
    }

    fn bytes(&self, name: &str) -> Result<u64, ConfigError> {
        let text = self.text(name).trim();
        text.parse::<u64>()
            .map_err(|_| invalid(name, format!("'{text}' is not a whole number")))
    }

    fn count(&self, name: &str) -> Result<u64, ConfigError> {
        match self.bytes(name)? {
            0 => Err(invalid(name, "must be greater than 0".to_string())),
            n => Ok(n),
        }
    }

    fn tokens(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        match self.0.get(name) {
            Some(Value::Tokens(entries)) if !entries.is_empty() => Some(entries),
            _ => None,
        }
    }
}

fn invalid(key: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message,
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
        let mut values = Values::defaults();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            values.read_file(path, &text)?;
        }
        values.read_env(env)?;
        values.read_flags(overrides);
        let mut config = Config::resolve(&values)?;
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
        config.storage_env = storage_env;
        Ok(config)
    }

    fn resolve(v: &Values) -> Result<Config, ConfigError> {
        let role = match v.optional("role") {
            None => crate::node::Role::All,
            Some(name) => crate::node::Role::parse(name).map_err(|m| invalid("role", m))?,
        };
        let storage = v
            .optional("storage")
            .map(StorageUrl::parse)
            .transpose()
            .map_err(|m| invalid("storage", m))?;
        let metastore = match v.optional("metastore") {
            None => None,
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                if storage.is_none() {
                    return Err(invalid(
                        "metastore",
                        "lists splits in object storage; set storage too".into(),
                    ));
                }
                Some(url.to_string())
            }
            Some(_) => {
                return Err(invalid(
                    "metastore",
                    "expected postgres://user:password@host:port/database".into(),
                ));
            }
        };
        if role != crate::node::Role::All && (storage.is_none() || metastore.is_none()) {
            return Err(invalid(
                "role",
                format!(
                    "role {} is for a cluster: set storage and a PostgreSQL metastore shared by every node",
                    role.name()
                ),
            ));
        }
        let commit_interval = v.duration("commit_interval")?;
        if commit_interval.is_zero() {
            return Err(invalid("commit_interval", "must be greater than 0".into()));
        }
        Ok(Config {
            data_dir: v
                .path("data_dir")
                .ok_or_else(|| invalid("data_dir", "must name a directory".into()))?,
            grpc_listen: v.address("grpc_listen")?,
            http_listen: v.address("http_listen")?,
            log_level: v.optional("log_level").unwrap_or("info").to_string(),
            commit_interval,
            retention: v.duration("retention")?,
            retention_interval: v.duration("retention_interval")?,
            max_disk_bytes: Some(v.bytes("max_disk_bytes")?).filter(|b| *b > 0),
            storage,
            metastore,
            node_id: v
                .optional("node_id")
                .map(crate::node::check)
                .transpose()
                .map_err(|m| invalid("node_id", m))?,
            role,
            advertise: match v.optional("advertise") {
                None => None,
                Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                    Some(url.trim_end_matches('/').to_string())
                }
                Some(other) => {
                    return Err(invalid(
                        "advertise",
                        format!("'{other}' is not a URL like http://10.0.0.5:4318"),
                    ));
                }
            },
            seal_interval: v.duration("seal_interval")?,
            seal_docs: v.count("seal_docs")?,
            cache_bytes: v.bytes("cache_bytes")?,
            storage_env: Vec::new(),
            max_body_bytes: v.count("max_body_bytes")? as usize,
            inflight_bytes: v.count("inflight_bytes")? as usize,
            wal_segment_bytes: v.count("wal_segment_bytes")?,
            query_timeout: v.duration("query_timeout")?,
            min_free_disk_bytes: v.bytes("min_free_disk_bytes")?,
            max_future_skew: v.duration("max_future_skew")?,
            body_read_timeout: v.duration("body_read_timeout")?,
            max_tail_subscribers: v.count("max_tail_subscribers")? as usize,
            max_concurrent_exports: v.count("max_concurrent_exports")? as usize,
            max_open_partitions: v.count("max_open_partitions")? as usize,
            index_memory_bytes: v.count("index_memory_bytes")? as usize,
            shutdown_timeout: v.duration("shutdown_timeout")?,
            indexer_stall_timeout: v.duration("indexer_stall_timeout")?,
            tokens: tokens(v)?,
            tls: tls_files(v)?,
            severity_default_ttl: v.duration("severity_default_ttl")?,
            severity_max_ttl: v.duration("severity_max_ttl")?,
        })
    }
}

/// `name=secret,name=secret` (the form of every `WEFT_*_TOKENS` variable).
fn token_list(key: &str, value: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut tokens = BTreeMap::new();
    for pair in value.split(',').filter(|p| !p.trim().is_empty()) {
        let (name, secret) = pair
            .split_once('=')
            .ok_or_else(|| invalid(key, "expected name=secret pairs separated by commas".into()))?;
        tokens.insert(name.trim().to_string(), secret.trim().to_string());
    }
    Ok(tokens)
}

fn tokens(v: &Values) -> Result<crate::auth::Tokens, ConfigError> {
    use crate::auth::Role;
    let mut tokens = crate::auth::Tokens::default();
    for (role, key) in [
        (Role::Ingest, "ingest_tokens"),
        (Role::Read, "read_tokens"),
        (Role::Admin, "admin_tokens"),
    ] {
        if let Some(entries) = v.tokens(key) {
            tokens
                .add_role(role, entries)
                .map_err(|message| invalid(key, message))?;
        }
    }
    Ok(tokens)
}

fn tls_files(v: &Values) -> Result<Option<crate::tls::TlsFiles>, ConfigError> {
    match (v.path("tls_cert"), v.path("tls_key")) {
        (Some(cert), Some(key)) => Ok(Some(crate::tls::TlsFiles {
            cert,
            key,
            client_ca: v.path("tls_client_ca"),
        })),
        (None, None) if v.path("tls_client_ca").is_some() => Err(invalid(
            "tls_client_ca",
            "needs tls_cert and tls_key: client certificates are checked over TLS".into(),
        )),
        (None, None) => Ok(None),
        (cert, _) => Err(invalid(
            if cert.is_some() {
                "tls_key"
            } else {
                "tls_cert"
            },
            "tls_cert and tls_key go together: set both (PEM files) or neither".into(),
        )),
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

    /// The error of loading with these variables only, as text.
    fn refused(vars: &[(&str, &str)]) -> String {
        Config::load(None, &env(vars), &Overrides::default())
            .unwrap_err()
            .to_string()
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
        let err = refused(&[("WEFT_DATADIR", "/x")]);
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
        let o = Overrides::default().set("grpc_listen", "127.0.0.1:3");
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
                &Overrides::default().set_some("role", role),
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
            let err = refused(&vars);
            assert!(err.contains(says), "{vars:?}: {err}");
        }
    }

    #[test]
    fn bad_values_say_which_key() {
        let err = refused(&[("WEFT_RETENTION", "forever")]);
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
        let err = refused(&[("WEFT_ADMIN_TOKENS", "a=short")]);
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
        let err = refused(&[("WEFT_TLS_CERT", "/etc/weft/cert.pem")]);
        assert!(err.contains("tls_key") && err.contains("both"), "{err}");
        let o = Overrides::default()
            .set("tls_cert", "/c.pem")
            .set("tls_key", "/k.pem");
        let c = Config::load(None, &env(&[("WEFT_TLS_CLIENT_CA", "/ca.pem")]), &o).unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.cert, PathBuf::from("/c.pem"));
        assert_eq!(tls.client_ca, Some(PathBuf::from("/ca.pem")));
        let err = refused(&[("WEFT_TLS_CLIENT_CA", "/ca.pem")]);
        assert!(err.contains("tls_client_ca"), "{err}");
    }

    #[test]
    fn unknown_names_are_refused_with_the_nearest_known_one() {
        let f = file("commit_intervall = \"1s\"\n");
        let err = Config::load(Some(f.path()), &HashMap::new(), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("commit_intervall") && err.contains("did you mean commit_interval?"),
            "{err}"
        );
        let err = refused(&[("WEFT_RETENSION", "1d")]);
        assert!(err.contains("did you mean WEFT_RETENTION?"), "{err}");
        let err = refused(&[("WEFT_ZZZ", "1")]);
        assert!(!err.contains("did you mean"), "nothing is near: {err}");
        // The client's variables are left alone.
        Config::load(
            None,
            &env(&[("WEFT_URL", "http://x")]),
            &Overrides::default(),
        )
        .unwrap();
    }

    /// Every key takes the same text from the file and from its variable: one parser per kind.
    #[test]
    fn file_and_environment_read_each_key_alike() {
        for (key, text) in [
            ("commit_interval", "250ms"),
            ("max_body_bytes", "1048576"),
            ("data_dir", "/srv/weft"),
            ("grpc_listen", "127.0.0.1:9"),
            ("role", "all"),
        ] {
            let quoted = if text.bytes().all(|b| b.is_ascii_digit()) {
                text.to_string()
            } else {
                format!("\"{text}\"")
            };
            let f = file(&format!("{key} = {quoted}\n"));
            let from_file =
                Config::load(Some(f.path()), &HashMap::new(), &Overrides::default()).unwrap();
            let variable = keys::find(key).unwrap().env();
            let from_env =
                Config::load(None, &env(&[(&variable, text)]), &Overrides::default()).unwrap();
            assert_eq!(format!("{from_file:?}"), format!("{from_env:?}"), "{key}");
        }
    }

    /// The README's configuration table is the one [`KEYS`] makes: a key added, renamed or
    /// given another default shows there, or this fails.
    #[test]
    fn the_readme_table_is_the_key_list() {
        let readme =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
                .unwrap();
        let table = keys::markdown_table();
        assert!(
            readme.contains(&table),
            "README.md's configuration table differs from config::KEYS; it should read:\n{table}"
        );
    }

    /// `weft.example.toml` names every key (set, or commented out), with its variable.
    #[test]
    fn the_example_file_names_every_key() {
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("weft.example.toml"),
        )
        .unwrap();
        for key in KEYS {
            let named = text.lines().any(|line| {
                let line = line.trim_start_matches(['#', ' ']);
                line.starts_with(&format!("{} =", key.name))
                    || line.starts_with(&format!("[{}]", key.name))
            });
            assert!(named, "weft.example.toml does not name {}", key.name);
            assert!(
                text.contains(&key.env()),
                "weft.example.toml does not name {}",
                key.env()
            );
        }
        // Every default the file sets is the default itself.
        let table: toml::Table = toml::from_str(&text).unwrap();
        for (name, value) in table {
            let key = keys::find(&name).unwrap();
            if let toml::Value::String(v) = &value {
                assert_eq!(v, key.default, "{name}");
            } else if let toml::Value::Integer(n) = value {
                assert_eq!(n.to_string(), key.default, "{name}");
            }
        }
    }

    #[test]
    fn the_example_file_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("weft.example.toml");
        Config::load(Some(&path), &HashMap::new(), &Overrides::default()).unwrap();
    }
}
