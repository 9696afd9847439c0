//! What stops weft from taking data right now, and why.
//!
//! The WAL thread, the indexer and the disk check each set and clear their own [`Condition`].
//! While any is set, ingest refuses new data at once with a retryable answer, `/readyz` answers
//! 503 with every reason, and `/metrics` shows which conditions hold. Each condition clears
//! itself when its cause goes away (space freed, a write succeeding again); a dead thread does
//! not come back, so `/healthz` reports it too and an orchestrator restarts weft.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// A reason not to take data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Condition {
    /// Free space on the data directory's file system is below the watermark.
    DiskLow,
    /// Writing or fsyncing the write-ahead log failed and has not succeeded since.
    WalFailing,
    /// Indexing or committing failed; the indexer is retrying from the WAL.
    IndexFailing,
    /// The WAL thread stopped.
    WalThreadDead,
    /// The indexer thread stopped.
    IndexerDead,
    /// weft is stopping.
    Stopping,
}

impl Condition {
    /// Every condition, for metrics.
    pub const ALL: [Condition; 6] = [
        Condition::DiskLow,
        Condition::WalFailing,
        Condition::IndexFailing,
        Condition::WalThreadDead,
        Condition::IndexerDead,
        Condition::Stopping,
    ];

    /// The label used in `/metrics` and `/readyz`.
    pub fn name(self) -> &'static str {
        match self {
            Condition::DiskLow => "disk_low",
            Condition::WalFailing => "wal_failing",
            Condition::IndexFailing => "index_failing",
            Condition::WalThreadDead => "wal_thread_dead",
            Condition::IndexerDead => "indexer_dead",
            Condition::Stopping => "stopping",
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }

    /// Whether the condition means weft cannot recover without a restart.
    pub fn is_fatal(self) -> bool {
        matches!(self, Condition::WalThreadDead | Condition::IndexerDead)
    }
}

/// The conditions that hold now, with their reasons.
#[derive(Debug, Default)]
pub struct Health {
    /// One bit per condition: the hot path reads this and nothing else.
    set: AtomicU32,
    reasons: Mutex<BTreeMap<Condition, String>>,
    /// Unix nanoseconds at which the indexer started its current piece of work; 0 when idle.
    indexer_busy_since: AtomicU64,
    /// How long the indexer may work on one piece before it counts as stalled (nanoseconds).
    stall_after_nanos: AtomicU64,
    /// Whether the current stall was logged: a stall is found by whoever asks (an export,
    /// `/readyz`), so the first to find it logs it and the indexer's next step logs its end.
    stall_logged: AtomicBool,
    /// Export requests refused because a condition held, per condition (as [`Condition::ALL`]).
    refused: [AtomicU64; Condition::ALL.len()],
}

impl Health {
    /// Health with a stall threshold for the indexer.
    pub fn new(stall_after: Duration) -> Self {
        let health = Health::default();
        health
            .stall_after_nanos
            .store(stall_after.as_nanos() as u64, Ordering::Relaxed);
        health
    }

    fn reasons(&self) -> std::sync::MutexGuard<'_, BTreeMap<Condition, String>> {
        self.reasons.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets a condition (or updates its reason).
    pub fn set(&self, condition: Condition, reason: impl Into<String>) {
        let reason = reason.into();
        let mut reasons = self.reasons();
        if !reasons.contains_key(&condition) {
            if condition == Condition::Stopping {
                tracing::info!(%reason, "weft refuses new data");
            } else {
                tracing::warn!(condition = condition.name(), %reason, "weft refuses new data");
            }
        }
        reasons.insert(condition, reason);
        self.set.fetch_or(condition.bit(), Ordering::SeqCst);
    }

    /// Clears a condition.
    pub fn clear(&self, condition: Condition) {
        if self.set.load(Ordering::Relaxed) & condition.bit() == 0 {
            return;
        }
        let mut reasons = self.reasons();
        if reasons.remove(&condition).is_some() {
            tracing::info!(condition = condition.name(), "condition cleared");
        }
        self.set.fetch_and(!condition.bit(), Ordering::SeqCst);
    }

    /// Whether a condition holds.
    pub fn is_set(&self, condition: Condition) -> bool {
        self.set.load(Ordering::Relaxed) & condition.bit() != 0
    }

    /// Marks the indexer busy (with the time it started) or idle (`None`).
    pub fn indexer_busy(&self, since_unix_nano: Option<u64>) {
        self.indexer_busy_since
            .store(since_unix_nano.unwrap_or(0), Ordering::Relaxed);
        if self.stall_logged.load(Ordering::Relaxed)
            && self.stall_logged.swap(false, Ordering::SeqCst)
        {
            tracing::info!(
                condition = Condition::IndexFailing.name(),
                "condition cleared: the indexer moves again"
            );
        }
    }

    fn stalled_for(&self, now_unix_nano: u64) -> Option<Duration> {
        let since = self.indexer_busy_since.load(Ordering::Relaxed);
        let stalled = now_unix_nano.saturating_sub(since);
        let stalled = (since != 0 && stalled > self.stall_after_nanos.load(Ordering::Relaxed))
            .then(|| Duration::from_nanos(stalled))?;
        if !self.stall_logged.load(Ordering::Relaxed)
            && !self.stall_logged.swap(true, Ordering::SeqCst)
        {
            tracing::warn!(
                condition = Condition::IndexFailing.name(),
                reason = "the indexer makes no progress",
                "weft refuses new data"
            );
        }
        Some(stalled)
    }

    /// Why data is refused now, if it is: the first reason (conditions in declaration order).
    pub fn refusal(&self, now_unix_nano: u64) -> Option<(Condition, String)> {
        if self.set.load(Ordering::Relaxed) != 0
            && let Some((c, r)) = self.reasons().iter().next()
        {
            return Some((*c, r.clone()));
        }
        self.stalled_for(now_unix_nano).map(|d| {
            (
                Condition::IndexFailing,
                format!("the indexer has made no progress for {}s", d.as_secs()),
            )
        })
    }

    /// Every reason that holds, for `/readyz`.
    pub fn all_reasons(&self, now_unix_nano: u64) -> Vec<(Condition, String)> {
        let mut all: Vec<(Condition, String)> = self
            .reasons()
            .iter()
            .map(|(c, r)| (*c, r.clone()))
            .collect();
        if let Some(d) = self.stalled_for(now_unix_nano) {
            all.push((
                Condition::IndexFailing,
                format!("the indexer has made no progress for {}s", d.as_secs()),
            ));
        }
        all
    }

    /// Counts a request refused because `condition` held.
    pub fn count_refusal(&self, condition: Condition) {
        if let Some(i) = Condition::ALL.iter().position(|c| *c == condition) {
            self.refused[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The conditions as Prometheus text: whether each holds now (`weft_condition`), and how
    /// many requests each refused (`weft_requests_refused_by_condition_total`).
    pub fn render_metrics(&self, now_unix_nano: u64) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(1024);
        let holding: Vec<Condition> = self
            .all_reasons(now_unix_nano)
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        let _ = writeln!(
            out,
            "# HELP weft_condition Whether a condition that refuses new data holds (1) or not (0).\n# TYPE weft_condition gauge"
        );
        for c in Condition::ALL {
            let _ = writeln!(
                out,
                "weft_condition{{condition=\"{}\"}} {}",
                c.name(),
                u8::from(holding.contains(&c))
            );
        }
        let _ = writeln!(
            out,
            "# HELP weft_requests_refused_by_condition_total Export requests refused because a condition held.\n# TYPE weft_requests_refused_by_condition_total counter"
        );
        for (c, refused) in Condition::ALL.iter().zip(&self.refused) {
            let _ = writeln!(
                out,
                "weft_requests_refused_by_condition_total{{condition=\"{}\"}} {}",
                c.name(),
                refused.load(Ordering::Relaxed)
            );
        }
        out
    }

    /// Whether a thread weft cannot do without has died (for `/healthz`).
    pub fn fatal(&self) -> Option<String> {
        self.reasons()
            .iter()
            .find(|(c, _)| c.is_fatal())
            .map(|(_, r)| r.clone())
    }
}

/// Sets a condition when dropped during a panic, so a thread that dies is noticed.
pub struct DeathWatch<'a> {
    health: &'a Health,
    condition: Condition,
    what: &'static str,
}

impl<'a> DeathWatch<'a> {
    /// Watches the current thread.
    pub fn new(health: &'a Health, condition: Condition, what: &'static str) -> Self {
        DeathWatch {
            health,
            condition,
            what,
        }
    }
}

impl Drop for DeathWatch<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(thread = self.what, "thread panicked; weft refuses new data");
            self.health.set(
                self.condition,
                format!(
                    "the {} thread stopped after a panic; restart weft",
                    self.what
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_refuse_until_cleared() {
        let health = Health::new(Duration::from_secs(5));
        assert_eq!(health.refusal(1), None);
        health.set(Condition::IndexFailing, "disk error");
        health.set(Condition::DiskLow, "12 MB free");
        let (c, r) = health.refusal(1).unwrap();
        assert_eq!((c, r.as_str()), (Condition::DiskLow, "12 MB free"));
        assert_eq!(health.all_reasons(1).len(), 2);
        health.clear(Condition::DiskLow);
        assert_eq!(health.refusal(1).unwrap().0, Condition::IndexFailing);
        health.clear(Condition::IndexFailing);
        assert_eq!(health.refusal(1), None);
        assert!(health.fatal().is_none());
    }

    #[test]
    fn a_busy_indexer_counts_as_stalled_after_the_threshold() {
        let health = Health::new(Duration::from_secs(5));
        health.indexer_busy(Some(1_000_000_000));
        assert_eq!(health.refusal(2_000_000_000), None);
        let (c, r) = health.refusal(10_000_000_000).unwrap();
        assert_eq!(c, Condition::IndexFailing);
        assert!(r.contains("no progress for 9s"), "{r}");
        health.indexer_busy(None);
        assert_eq!(health.refusal(10_000_000_000), None);
    }

    /// Captures what `work` logs, one line per event.
    fn logged(work: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Lines(std::sync::Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, work);
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_string).collect()
    }

    /// How many lines say a condition started, and how many that one cleared.
    fn starts_and_clears(lines: &[String]) -> (usize, usize) {
        let count = |text: &str| lines.iter().filter(|l| l.contains(text)).count();
        (count("weft refuses new data"), count("condition cleared"))
    }

    /// A condition set again and again (the disk check runs every 250 ms, each time with the
    /// free space of the moment) is logged once when it starts and once when it clears.
    #[test]
    fn a_condition_is_logged_once_when_it_starts_and_once_when_it_clears() {
        let health = Health::new(Duration::from_secs(5));
        let lines = logged(|| {
            for free in 0..100 {
                health.set(Condition::DiskLow, format!("{free} bytes free"));
            }
            for _ in 0..100 {
                health.clear(Condition::DiskLow);
            }
        });
        assert_eq!(starts_and_clears(&lines), (1, 1), "{lines:#?}");
        assert!(
            lines[0].contains("disk_low") && lines[0].contains("0 bytes free"),
            "{lines:#?}"
        );
    }

    /// The indexer's stall is found by whoever asks; it is logged once however often it is
    /// asked about, and once when the indexer moves again.
    #[test]
    fn a_stall_is_logged_once_when_found_and_once_when_it_ends() {
        let health = Health::new(Duration::from_secs(5));
        let lines = logged(|| {
            health.indexer_busy(Some(1_000_000_000));
            for now in 0..100u64 {
                assert!(health.refusal(10_000_000_000 + now).is_some());
                assert_eq!(health.all_reasons(10_000_000_000 + now).len(), 1);
            }
            health.indexer_busy(None);
            health.indexer_busy(Some(20_000_000_000));
            assert_eq!(health.refusal(20_000_000_001), None);
        });
        assert_eq!(starts_and_clears(&lines), (1, 1), "{lines:#?}");
        assert!(lines[0].contains("index_failing"), "{lines:#?}");
    }

    #[test]
    fn a_panicking_thread_is_noticed() {
        let health = std::sync::Arc::new(Health::new(Duration::from_secs(5)));
        let watched = health.clone();
        let _ = std::thread::spawn(move || {
            let _watch = DeathWatch::new(&watched, Condition::IndexerDead, "indexer");
            panic!("boom");
        })
        .join();
        assert!(health.is_set(Condition::IndexerDead));
        assert!(health.fatal().unwrap().contains("indexer thread stopped"));
    }
}
