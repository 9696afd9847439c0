//! A real PostgreSQL for the metastore tests: Debian's binaries, a cluster in a temporary
//! directory listening on a Unix socket only (no port to collide with), stopped when dropped.
//! As root (CI), the server runs as the `postgres` user, which Debian's package creates.

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

pub struct PgServer {
    dir: TempDir,
    bin: PathBuf,
    as_postgres: bool,
}

/// Where `initdb`, `pg_ctl` and `psql` are: on PATH, or in Debian's versioned directory.
fn find_bin() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            if ["initdb", "pg_ctl", "psql"]
                .iter()
                .all(|program| dir.join(program).is_file())
            {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop()
}

impl PgServer {
    /// Starts a fresh cluster; `None` (with a message) when PostgreSQL is not installed, and a
    /// failure when `POSTGRES_TESTS=required` (as in CI).
    pub fn start() -> Option<PgServer> {
        let Some(bin) = find_bin() else {
            crate::common::skip(
                "POSTGRES_TESTS",
                "PostgreSQL",
                "initdb is not installed (Debian: apt-get install postgresql)",
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: geteuid has no preconditions.
        let as_postgres = unsafe { libc::geteuid() } == 0;
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown to postgres failed");
        }
        let server = PgServer {
            dir,
            bin,
            as_postgres,
        };
        let data = server.data();
        server.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "weft",
                "--no-sync",
            ],
        );
        server.start_again();
        Some(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    fn run(&self, program: &str, args: &[&str]) {
        let program = self.bin.join(program);
        let output = if self.as_postgres {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&program)
                .args(args)
                .output()
        } else {
            Command::new(&program).args(args).output()
        }
        .unwrap();
        assert!(
            output.status.success(),
            "{} {args:?} failed:\n{}\n{}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-k {} -c listen_addresses='' -p 5432 -c fsync=off",
            self.socket_dir().display()
        );
        let log = self.dir.path().join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server as a crash or a network cut would look to weft.
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// The metastore URL of database `postgres`.
    pub fn url(&self) -> String {
        format!(
            "postgres:///postgres?host={}&port=5432&user=weft",
            self.socket_dir().display()
        )
    }

    /// Rows of `weft_splits`: ID, state and services (comma-separated), through `psql`.
    pub fn split_states(&self) -> Vec<(String, String, String)> {
        self.sql("SELECT id, state, array_to_string(services, ',') FROM weft_splits ORDER BY id")
            .iter()
            .filter_map(|l| {
                let mut fields = l.splitn(3, ' ');
                Some((
                    fields.next()?.to_string(),
                    fields.next()?.to_string(),
                    fields.next().unwrap_or_default().to_string(),
                ))
            })
            .collect()
    }

    /// The lines `query` prints through `psql` (fields separated by a space).
    pub fn sql(&self, query: &str) -> Vec<String> {
        let psql = self.bin.join("psql");
        let output = Command::new(psql)
            .args(["-h", self.socket_dir().to_str().unwrap()])
            .args([
                "-p", "5432", "-U", "weft", "-d", "postgres", "-At", "-F", " ", "-c", query,
            ])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let pid_file = self.data().join("postmaster.pid");
        if pid_file.exists() {
            let data = self.data();
            let program = self.bin.join("pg_ctl");
            let mut command = if self.as_postgres {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(&program);
                c
            } else {
                Command::new(&program)
            };
            let _ = command
                .args([
                    "-D",
                    data.to_str().unwrap_or_default(),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                ])
                .output();
        }
    }
}
