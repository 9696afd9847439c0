//! Every configuration key, declared once: its name (its environment variable is `WEFT_` and
//! the name in capitals), its flag if it has one, the kind of value it takes, its default (as
//! text, read by the same parser as any other value), and what it does. The README's
//! configuration table is made from this list (a test checks it word for word), and
//! `weft.example.toml` names every key.

/// What a key's value is, and so how its text is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Text as given (empty: not set).
    Text,
    /// A file system path.
    Path,
    /// A socket address, `127.0.0.1:4317`.
    Address,
    /// A duration, `500ms`, `15m`, `7d` (`weft_index::text::duration`).
    Duration,
    /// A whole number greater than 0.
    Count,
    /// A whole number of bytes; 0 allowed (each key says what it means).
    Bytes,
    /// Tokens of one role: a TOML table `name = "secret"`, or `name=secret,…` in a variable.
    Tokens,
}

/// One configuration key.
#[derive(Debug)]
pub struct Key {
    /// The key in the file; its variable is [`Key::env`].
    pub name: &'static str,
    /// The `weft serve` flag that sets it, if any.
    pub flag: Option<&'static str>,
    /// How its value is read.
    pub kind: Kind,
    /// The default, as text (empty: not set).
    pub default: &'static str,
    /// How the README shows the default, when not as the text itself.
    pub shown: Option<&'static str>,
    /// What it does (Markdown, one line: the README's table cell).
    pub meaning: &'static str,
}

impl Key {
    /// Its environment variable: `WEFT_` and the name in capitals.
    pub fn env(&self) -> String {
        format!("WEFT_{}", self.name.to_ascii_uppercase())
    }
}

const fn key(name: &'static str, kind: Kind, default: &'static str, meaning: &'static str) -> Key {
    Key {
        name,
        flag: None,
        kind,
        default,
        shown: None,
        meaning,
    }
}

impl Key {
    const fn flag(mut self, flag: &'static str) -> Key {
        self.flag = Some(flag);
        self
    }

    const fn shown(mut self, shown: &'static str) -> Key {
        self.shown = Some(shown);
        self
    }
}

use Kind::*;

/// Every key weft reads.
pub const KEYS: &[Key] = &[
    key("data_dir", Path, "./weft-data", "where the WAL and index live").flag("--data-dir"),
    key("grpc_listen", Address, "127.0.0.1:4317", "OTLP/gRPC listener").flag("--grpc-listen"),
    key("http_listen", Address, "127.0.0.1:4318", "OTLP/HTTP and query API listener")
        .flag("--http-listen"),
    key(
        "log_level",
        Text,
        "info",
        "weft's own log filter (`RUST_LOG` syntax; `RUST_LOG` also works)",
    )
    .flag("--log-level"),
    key("commit_interval", Duration, "500ms", "longest wait from ack to searchable"),
    key("retention", Duration, "7d", "hour partitions older than this are deleted"),
    key(
        "retention_interval",
        Duration,
        "1m",
        "how often retention and the disk cap run",
    ),
    key(
        "max_disk_bytes",
        Bytes,
        "0",
        "index disk cap; oldest partitions go first",
    )
    .shown("`0` (none)"),
    key(
        "storage",
        Text,
        "",
        "object storage for sealed partitions: `s3://bucket/prefix` (any S3-compatible service), `gs://bucket/prefix`, `az://container/prefix` or `file:///path`; see [Storing data in object storage](#storing-data-in-object-storage)",
    )
    .flag("--storage")
    .shown("none (all local)"),
    key(
        "metastore",
        Text,
        "",
        "with `storage`: where splits (and, on PostgreSQL, the severity rules and their audit log) are kept, `postgres://user:password@host:port/db` (or `postgres:///db?host=/run/postgresql`); migrations are applied at start",
    )
    .flag("--metastore")
    .shown("a file under `data_dir`"),
    key(
        "node_id",
        Text,
        "",
        "with `storage`: this node's name; the splits it publishes carry it, and at start it takes in (and cleans up) only its own, so nodes may share a metastore and a bucket",
    )
    .flag("--node-id")
    .shown("made up once, kept in `data_dir/node-id`"),
    key(
        "role",
        Text,
        "all",
        "`all`: one node that ingests and answers queries. In a cluster (`storage` and a PostgreSQL `metastore` shared by every node): `ingest` takes OTLP and publishes splits; `search` takes no OTLP (501 / `UNIMPLEMENTED`) and answers queries over the splits every node published, taking each new one in within a second",
    )
    .flag("--role"),
    key(
        "advertise",
        Text,
        "",
        "with a PostgreSQL `metastore`: the URL other nodes reach this node's HTTP API at; each node writes it, its role and a heartbeat to `weft_nodes` every second, listed by `GET /api/v1/cluster`",
    )
    .flag("--advertise")
    .shown("`http_listen`'s address"),
    key(
        "seal_interval",
        Duration,
        "10m",
        "with `storage`: a partition is sealed and uploaded once its hour is over and no record has arrived for it for this long",
    ),
    key(
        "seal_docs",
        Count,
        "5000000",
        "with `storage`: records at which a partition is sealed and uploaded at once, without waiting for its hour to end; later records of that hour start its next part, so no split outgrows this",
    ),
    key(
        "cache_bytes",
        Bytes,
        "10737418240",
        "with `storage`: local disk for partitions already uploaded; the oldest beyond it are deleted locally, queries read their splits in place, and hours queries read come back into it while it has room",
    ),
    key(
        "max_body_bytes",
        Count,
        "67108864",
        "largest request after decompression (413 / `RESOURCE_EXHAUSTED`)",
    ),
    key(
        "inflight_bytes",
        Count,
        "268435456",
        "request bytes between arrival and indexing before 503 / `UNAVAILABLE`",
    ),
    key("wal_segment_bytes", Count, "67108864", "WAL segment size"),
    key("query_timeout", Duration, "30s", "longest a query may run"),
    key(
        "max_future_skew",
        Duration,
        "1h",
        "records stamped further ahead (or older than `retention`) are rejected one by one in `partial_success`",
    ),
    key(
        "body_read_timeout",
        Duration,
        "60s",
        "longest a client may take to send an export's body; slower ones are refused and their place freed",
    ),
    key(
        "max_tail_subscribers",
        Count,
        "64",
        "live tails open at once; more get 429 / `RESOURCE_EXHAUSTED`",
    ),
    key(
        "max_concurrent_exports",
        Count,
        "64",
        "export requests in progress at once; more get 503 / `UNAVAILABLE` before their body is read",
    ),
    key(
        "max_open_partitions",
        Count,
        "4",
        "partition writers open at once; others are committed and closed as needed",
    ),
    key(
        "index_memory_bytes",
        Count,
        "268435456",
        "memory the open partition writers share before flushing segments",
    ),
    key(
        "min_free_disk_bytes",
        Bytes,
        "268435456",
        "below this much free space on the data directory's file system new data is refused; `0` turns the check off",
    ),
    key(
        "shutdown_timeout",
        Duration,
        "30s",
        "longest `SIGTERM`/`SIGINT` may take, whatever state weft is in",
    ),
    key(
        "indexer_stall_timeout",
        Duration,
        "60s",
        "an indexer busy this long with one batch counts as stalled: data is refused, `/readyz` says so",
    ),
    key(
        "tls_cert",
        Path,
        "",
        "PEM certificate chain; with `tls_key`, both listeners speak TLS only",
    )
    .flag("--tls-cert")
    .shown("none"),
    key("tls_key", Path, "", "PEM private key of `tls_cert`")
        .flag("--tls-key")
        .shown("none"),
    key(
        "tls_client_ca",
        Path,
        "",
        "PEM CA bundle; clients must present a certificate it signed (mutual TLS)",
    )
    .shown("none"),
    key(
        "ingest_tokens",
        Tokens,
        "",
        "who may export (`name=secret,…` in the variable); none: loopback only",
    )
    .shown("none"),
    key(
        "read_tokens",
        Tokens,
        "",
        "who may query, tail, use the Jaeger API and the UI (`name=secret,…`); none: loopback only",
    )
    .shown("none"),
    key(
        "admin_tokens",
        Tokens,
        "",
        "who may change severity rules, and read (`name=secret[:GLOB\\|GLOB],…`: the globs limit the services its rules may select); none: loopback only",
    )
    .shown("none"),
    key(
        "severity_default_ttl",
        Duration,
        "1h",
        "TTL of a severity rule that names none",
    ),
    key(
        "severity_max_ttl",
        Duration,
        "24h",
        "longest TTL a severity rule may have",
    ),
];

/// The key named `name`.
pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// The key whose variable is `env`.
pub fn find_env(env: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.env() == env)
}

/// Of `known`, the one closest to `unknown` (a misspelling's likely intent), if any is close.
pub fn nearest<'a>(unknown: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    known
        .map(|k| (strsim::jaro_winkler(unknown, k), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

/// The README's configuration table, made from [`KEYS`] (a test holds the README to it).
#[cfg(test)]
pub fn markdown_table() -> String {
    let mut out = String::from("| key | variable | default | meaning |\n|---|---|---|---|\n");
    for k in KEYS {
        let variable = match k.flag {
            Some(flag) => format!("`{}` (or `{flag}`)", k.env()),
            None => format!("`{}`", k.env()),
        };
        let default = match k.shown {
            Some(shown) => shown.to_string(),
            None => format!("`{}`", k.default),
        };
        out.push_str(&format!(
            "| `{}` | {variable} | {default} | {} |\n",
            k.name, k.meaning
        ));
    }
    out
}
