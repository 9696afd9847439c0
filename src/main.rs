//! The `weft` command: parses flags, loads configuration, sets up logging, binds the listeners
//! and hands over to `weft::server`.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use weft::config::{Config, Overrides};
use weft::server::{self, Listeners};

// Indexing allocates and frees many small buffers per record; mimalloc cut the allocator's
// share of weft's CPU under load (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "weft",
    version,
    about = "Collector and store for OpenTelemetry logs and traces"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Receive OTLP, store it durably, answer queries.
    Serve(ServeArgs),
    /// Measure a weft: ingest rate and CPU, ack-to-searchable delay, query latency, footprint.
    Bench(weft::bench::BenchArgs),
    /// Where a data directory's bytes go: per signal, per part of the index format and per field.
    Inspect {
        /// The data directory (as given to `serve`).
        #[arg(long, default_value = "./weft-data")]
        data_dir: PathBuf,
    },
    /// Change log severity at runtime on a running weft: set, list, rm, audit.
    Severity {
        #[command(flatten)]
        connection: weft::cli::Connection,
        #[command(subcommand)]
        command: weft::cli::SeverityCommand,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file (see weft.example.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory [env: WEFT_DATA_DIR] [default: ./weft-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// OTLP/gRPC listen address [env: WEFT_GRPC_LISTEN] [default: 127.0.0.1:4317].
    #[arg(long)]
    grpc_listen: Option<String>,
    /// HTTP listen address [env: WEFT_HTTP_LISTEN] [default: 127.0.0.1:4318].
    #[arg(long)]
    http_listen: Option<String>,
    /// Log filter, e.g. `info` or `weft=debug` [env: WEFT_LOG_LEVEL, or RUST_LOG].
    #[arg(long)]
    log_level: Option<String>,
    /// PEM certificate chain; with --tls-key, both listeners speak TLS [env: WEFT_TLS_CERT].
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert [env: WEFT_TLS_KEY].
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Object storage for sealed partitions, e.g. s3://bucket/prefix or file:///path
    /// [env: WEFT_STORAGE] [default: none, all local].
    #[arg(long)]
    storage: Option<String>,
    /// Where splits are listed, e.g. postgres://weft@db/weft [env: WEFT_METASTORE]
    /// [default: a file under the data directory].
    #[arg(long)]
    metastore: Option<String>,
    /// This node's name in the metastore [env: WEFT_NODE_ID] [default: made up once and kept
    /// in the data directory].
    #[arg(long)]
    node_id: Option<String>,
    /// all, ingest or search [env: WEFT_ROLE] [default: all]; ingest and search are for a
    /// cluster on shared storage and a PostgreSQL metastore.
    #[arg(long)]
    role: Option<String>,
    /// The URL other nodes reach this node's HTTP API at [env: WEFT_ADVERTISE] [default:
    /// http_listen's address].
    #[arg(long)]
    advertise: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Bench(args) => weft::bench::run(args),
        Command::Inspect { data_dir } => {
            print!("{}", weft::inspect::report(&data_dir)?);
            Ok(())
        }
        Command::Severity {
            connection,
            command,
        } => weft::cli::severity(connection, command),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let path = |p: Option<PathBuf>| p.map(|p| p.to_string_lossy().into_owned());
    let overrides = Overrides::default()
        .set_some("data_dir", path(args.data_dir))
        .set_some("grpc_listen", args.grpc_listen)
        .set_some("http_listen", args.http_listen)
        .set_some("log_level", args.log_level)
        .set_some("tls_cert", path(args.tls_cert))
        .set_some("tls_key", path(args.tls_key))
        .set_some("storage", args.storage)
        .set_some("metastore", args.metastore)
        .set_some("node_id", args.node_id)
        .set_some("role", args.role)
        .set_some("advertise", args.advertise);
    let config = Config::load(args.config.as_deref(), &env, &overrides)?;
    init_logging(&config, &env, overrides.has("log_level"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("weft-rt")
        .build()
        .context("cannot start the async runtime")?;
    let stopped = runtime.block_on(async move {
        let listeners = Listeners::bind(&config).await?;
        let running = server::start(config, listeners).await?;
        // Scripts and tests read this line to learn the ports chosen for port 0.
        println!(
            "weft listening grpc={} http={}",
            running.grpc_addr, running.http_addr
        );
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        running.stop().await;
        Ok(())
    });
    // A query or decode still running on the blocking pool must not hold the exit: everything
    // acknowledged is in the write-ahead log.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    stopped
}

fn init_logging(config: &Config, env: &HashMap<String, String>, flag_given: bool) {
    // The flag wins; otherwise RUST_LOG, then the configured level.
    let filter = match env.get("RUST_LOG") {
        Some(rust_log) if !flag_given => rust_log.clone(),
        _ => config.log_level.clone(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
