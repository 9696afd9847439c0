//! The weft process under test: started as a child (its own binary, `serve`), observed
//! through /proc, stopped with SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

/// A weft started by the benchmark.
pub struct ServerProcess {
    child: Child,
    /// Its process ID.
    pub pid: u32,
    /// gRPC address.
    pub grpc: String,
    /// HTTP address.
    pub http: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl ServerProcess {
    /// Starts `weft serve` on free ports, in `data_dir` or a temporary directory.
    pub fn start(data_dir: Option<PathBuf>) -> anyhow::Result<Self> {
        Self::start_with(data_dir, &[])
    }

    /// [`ServerProcess::start`] with environment variables (weft's `WEFT_*` settings).
    pub fn start_with(data_dir: Option<PathBuf>, env: &[(&str, String)]) -> anyhow::Result<Self> {
        let (data_dir, temp) = match data_dir {
            Some(d) => (d, None),
            None => {
                let t = tempfile::tempdir()?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let exe = std::env::current_exe().context("cannot find the weft binary")?;
        let mut child = Command::new(exe)
            .args([
                "serve",
                "--grpc-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--log-level")
            .arg("warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start weft serve")?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("weft listening ") {
                    let mut grpc = String::new();
                    let mut http = String::new();
                    for kv in rest.split(' ') {
                        if let Some(v) = kv.strip_prefix("grpc=") {
                            grpc = v.to_string();
                        }
                        if let Some(v) = kv.strip_prefix("http=") {
                            http = v.to_string();
                        }
                    }
                    let _ = tx.send((grpc, http));
                }
            }
        });
        let Ok((grpc, http)) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            bail!("weft did not report its listening addresses within 60 s");
        };
        Ok(ServerProcess {
            pid: child.id(),
            child,
            grpc,
            http,
            data_dir,
            _temp: temp,
        })
    }

    /// Kills weft with SIGKILL (no handler runs, nothing is flushed) and waits for it.
    pub fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Stops weft gracefully (SIGTERM) and waits for it.
    pub fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: kill(2) with a valid pid of our own child and a standard signal.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        let status = self.child.wait()?;
        if !status.success() {
            bail!("weft exited with {status}");
        }
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// User + system CPU seconds a process has used.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / ticks)
}

/// Peak resident memory of a process.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Samples the anonymous resident memory of `pids` every 50 ms until `stop`; the task's
/// result is the most any one of them held, `None` when none could be read. (The kernel
/// keeps a peak only of all resident memory, which also counts the index pages a process
/// maps.)
pub fn sample_peak_anon_rss(
    pids: Vec<u32>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Option<u64>> {
    tokio::spawn(async move {
        let mut peak: Option<u64> = None;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            for pid in &pids {
                if let Some(now) = rss_anon_bytes(*pid) {
                    peak = Some(peak.map_or(now, |p| p.max(now)));
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        peak
    })
}

/// Anonymous resident memory of a process now: its heap and stacks, without the index files it
/// maps (which the kernel can drop and reread at will).
pub fn rss_anon_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes of all files under a directory.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Unix time in nanoseconds.
pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// CPU model and core count, for the report.
pub fn machine_description() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} cores")
}
