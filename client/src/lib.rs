//! weft-client: apply weft's runtime severity rules where logs are made.
//!
//! Add [`SeverityFilter`] to a `tracing_subscriber` layer (for example the OpenTelemetry log
//! bridge that exports to weft). A background thread long-polls weft's
//! `/api/v1/severity/effective?service=…` and keeps the rules for this service; the filter
//! decides per event, so a DEBUG event is not even built until an operator asks for it, and
//! stops being built when the rule expires or is removed.
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//! let (filter, _watch) = weft_client::SeverityFilter::builder("http://127.0.0.1:4318", "checkout")
//!     .default_level(tracing::Level::INFO)
//!     .start();
//! tracing_subscriber::registry()
//!     .with(tracing_subscriber::fmt::layer().with_filter(filter))
//!     .init();
//! ```
//!
//! Against a weft with tokens and TLS, give the service's ingest token and, for a private CA,
//! its certificate: `.token(secret)`, `.ca_file("ca.pem")?`.
//!
//! Behaviour when weft is away: the last good rule set stays in force, and each rule still
//! expires on time locally. Retries back off exponentially with jitter, up to 30 s.
//! The watcher never logs through the filter it feeds, and the HTTP and export libraries' own
//! events are held at WARN and above, so the client cannot feed a loop of its own traffic.
#![deny(missing_docs)]

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tracing_core::{Interest, Level, Metadata, subscriber::Subscriber};
use tracing_subscriber::layer::{Context, Filter};

/// Crates whose events are weft's own traffic (requests to weft, OTLP export); their events
/// below WARN are never enabled, whatever the rules say.
const TRANSPORT_TARGETS: [&str; 8] = [
    "reqwest",
    "hyper",
    "hyper_util",
    "h2",
    "tonic",
    "tower",
    "opentelemetry",
    "weft_client",
];

thread_local! {
    /// Set on the watcher thread: nothing it does is ever logged through the filter.
    static ON_WATCHER: Cell<bool> = const { Cell::new(false) };
}

/// One rule as weft's effective view gives it.
#[derive(Clone, Debug, PartialEq)]
struct SourceRule {
    service: Option<String>,
    scope: Option<String>,
    event: Option<String>,
    min_severity: Option<i32>,
    set_severity: Option<i32>,
    expires_at: u64,
    created_at: u64,
}

#[derive(Deserialize)]
struct EffectiveAnswer {
    rules: Vec<RuleJson>,
}

#[derive(Deserialize)]
struct RuleJson {
    selector: SelectorJson,
    action: ActionJson,
    expires_at_unix_nano: String,
    #[serde(default)]
    created_at_unix_nano: Option<String>,
}

#[derive(Deserialize)]
struct SelectorJson {
    service: Option<String>,
    scope: Option<String>,
    event: Option<String>,
}

#[derive(Deserialize)]
struct ActionJson {
    min_severity: Option<String>,
    set_severity: Option<String>,
}

/// OTLP severity number of a severity name (`DEBUG`, `INFO2`).
fn severity_number(name: &str) -> Option<i32> {
    let upper = name.trim().to_ascii_uppercase();
    let (base, rank) = match upper.as_bytes().last() {
        Some(d @ b'2'..=b'4') => (&upper[..upper.len() - 1], i32::from(d - b'0')),
        _ => (upper.as_str(), 1),
    };
    let start = match base {
        "TRACE" => 1,
        "DEBUG" => 5,
        "INFO" => 9,
        "WARN" => 13,
        "ERROR" => 17,
        "FATAL" => 21,
        _ => return None,
    };
    Some(start + rank - 1)
}

fn level_number(level: &Level) -> i32 {
    match *level {
        Level::TRACE => 1,
        Level::DEBUG => 5,
        Level::INFO => 9,
        Level::WARN => 13,
        _ => 17,
    }
}

fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if text.len() < first.len() + last.len() || !text.starts_with(first) || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

impl SourceRule {
    fn from_json(rule: RuleJson) -> Option<Self> {
        Some(SourceRule {
            service: rule.selector.service,
            scope: rule.selector.scope,
            event: rule.selector.event,
            min_severity: match rule.action.min_severity {
                Some(s) => Some(severity_number(&s)?),
                None => None,
            },
            set_severity: match rule.action.set_severity {
                Some(s) => Some(severity_number(&s)?),
                None => None,
            },
            expires_at: rule.expires_at_unix_nano.parse().ok()?,
            created_at: rule
                .created_at_unix_nano
                .and_then(|c| c.parse().ok())
                .unwrap_or(0),
        })
    }

    /// Same precedence as weft: event > scope > service > global.
    fn specificity(&self) -> u8 {
        if self.event.is_some() {
            3
        } else if self.scope.is_some() {
            2
        } else if self.service.is_some() {
            1
        } else {
            0
        }
    }

    fn matches(&self, service: &str, scope: &str, event: Option<&str>) -> bool {
        self.service.as_deref().is_none_or(|g| glob(g, service))
            && self.scope.as_deref().is_none_or(|g| glob(g, scope))
            && self.event.as_deref().is_none_or(|e| Some(e) == event)
    }
}

/// What the filter and the watcher share.
struct Shared {
    service: String,
    default_severity: i32,
    rules: RwLock<Vec<SourceRule>>,
}

impl Shared {
    fn enabled(&self, meta: &Metadata<'_>, now: u64) -> bool {
        // tracing names unnamed events "event file:line"; only explicit `name:`s are event IDs.
        let event = Some(meta.name()).filter(|n| !n.starts_with("event "));
        self.decide(level_number(meta.level()), meta.target(), event, now)
    }

    fn decide(&self, severity: i32, target: &str, event: Option<&str>, now: u64) -> bool {
        if TRANSPORT_TARGETS.iter().any(|t| target.starts_with(t)) {
            return severity >= 13;
        }
        let rules = self.rules.read().expect("lock poisoned");
        let winner = rules
            .iter()
            .filter(|r| r.expires_at > now && r.matches(&self.service, target, event))
            .max_by_key(|r| (r.specificity(), r.created_at));
        match winner {
            None => severity >= self.default_severity,
            Some(rule) => {
                let effective = rule.set_severity.unwrap_or(severity);
                effective >= rule.min_severity.unwrap_or(self.default_severity)
            }
        }
    }
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A `tracing_subscriber` per-layer filter driven by weft's severity rules for one service.
#[derive(Clone)]
pub struct SeverityFilter {
    shared: Arc<Shared>,
}

/// Configures a [`SeverityFilter`].
pub struct Builder {
    url: String,
    service: String,
    default_level: Level,
    wait: Duration,
    token: Option<String>,
    ca: Option<reqwest::Certificate>,
}

/// A CA file that could not be used by [`Builder::ca_file`].
#[derive(Debug)]
pub struct CaFileError(String);

impl std::fmt::Display for CaFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CaFileError {}

/// Stops the watcher thread when dropped (at its next wake-up).
pub struct WatchHandle {
    stop: Arc<AtomicBool>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl SeverityFilter {
    /// A builder for the service `service` of the weft at `url` (its HTTP address).
    pub fn builder(url: &str, service: &str) -> Builder {
        Builder {
            url: url.trim_end_matches('/').to_string(),
            service: service.to_string(),
            default_level: Level::INFO,
            wait: Duration::from_secs(30),
            token: None,
            ca: None,
        }
    }

    /// What the filter decides now for an event of `level` from `target` (its scope) that
    /// names no event ID: whether an operator's rule (or the default level) lets it through.
    pub fn enabled_for(&self, level: Level, target: &str) -> bool {
        self.shared
            .decide(level_number(&level), target, None, now_nanos())
    }
}

impl Builder {
    /// The level in force where no rule applies (default INFO).
    pub fn default_level(mut self, level: Level) -> Self {
        self.default_level = level;
        self
    }

    /// How long each long-poll waits for a change (default 30 s, at most 60 s).
    pub fn poll_wait(mut self, wait: Duration) -> Self {
        self.wait = wait.min(Duration::from_secs(60));
        self
    }

    /// A token to send as `Authorization: Bearer …`: the service's ingest token (or a read
    /// token), needed when weft has tokens of that role configured.
    pub fn token(mut self, secret: impl Into<String>) -> Self {
        self.token = Some(secret.into());
        self
    }

    /// Trusts the CA certificate(s) in the PEM file `path` for an `https://` weft, in place of
    /// the system's roots.
    pub fn ca_file(mut self, path: impl AsRef<std::path::Path>) -> Result<Self, CaFileError> {
        let path = path.as_ref();
        let pem = std::fs::read(path)
            .map_err(|e| CaFileError(format!("cannot read {}: {e}", path.display())))?;
        let ca = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| CaFileError(format!("{}: not a PEM certificate: {e}", path.display())))?;
        self.ca = Some(ca);
        Ok(self)
    }

    /// Starts watching weft and returns the filter.
    pub fn start(self) -> (SeverityFilter, WatchHandle) {
        let shared = Arc::new(Shared {
            service: self.service.clone(),
            default_severity: level_number(&self.default_level),
            rules: RwLock::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        {
            let shared = shared.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("weft-severity-watch".into())
                .spawn(move || watch(self, shared, stop))
                .expect("spawning the weft severity watcher");
        }
        (SeverityFilter { shared }, WatchHandle { stop })
    }
}

/// Exponential backoff from 250 ms to 30 s, with ±50 % jitter so many services do not retry
/// in step.
fn backoff(failures: u32) -> Duration {
    let base = 250u64.saturating_mul(1 << failures.min(7)).min(30_000);
    let jitter = (now_nanos() % 1000) as f64 / 1000.0 + 0.5;
    Duration::from_millis((base as f64 * jitter) as u64)
}

fn watch(config: Builder, shared: Arc<Shared>, stop: Arc<AtomicBool>) {
    ON_WATCHER.with(|f| f.set(true));
    let Builder {
        url,
        wait,
        token,
        ca,
        ..
    } = config;
    let mut client = reqwest::blocking::Client::builder().timeout(wait + Duration::from_secs(15));
    if let Some(ca) = ca {
        client = client
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca);
    }
    let client = match client.build() {
        Ok(c) => c,
        Err(_) => return,
    };
    let endpoint = format!("{url}/api/v1/severity/effective");
    let wait_text = format!("{}s", wait.as_secs().max(1));
    let mut etag: Option<String> = None;
    let mut failures = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let mut request = client.get(&endpoint).query(&[
            ("service", shared.service.as_str()),
            ("wait", wait_text.as_str()),
        ]);
        if let Some(tag) = &etag {
            request = request.header("If-None-Match", tag);
        }
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        let outcome = request
            .send()
            .ok()
            .and_then(|response| match response.status().as_u16() {
                304 => Some(None),
                200 => {
                    let tag = response
                        .headers()
                        .get("etag")
                        .and_then(|v| v.to_str().ok())
                        .map(String::from);
                    let answer: EffectiveAnswer = response.json().ok()?;
                    let rules: Vec<SourceRule> = answer
                        .rules
                        .into_iter()
                        .filter_map(SourceRule::from_json)
                        .collect();
                    Some(Some((tag, rules)))
                }
                _ => None,
            });
        match outcome {
            Some(Some((tag, rules))) => {
                *shared.rules.write().expect("lock poisoned") = rules;
                etag = tag;
                failures = 0;
                // Events are judged each time (see `callsite_enabled`), but cached interest
                // elsewhere in the subscriber stack must be recomputed too.
                tracing_core::callsite::rebuild_interest_cache();
            }
            Some(None) => failures = 0,
            // Unreachable or refusing: keep the last good rules (they still expire on time).
            None => {
                failures = failures.saturating_add(1);
                std::thread::sleep(backoff(failures));
            }
        }
    }
}

impl<S: Subscriber> Filter<S> for SeverityFilter {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        if ON_WATCHER.with(Cell::get) {
            return false;
        }
        self.shared.enabled(meta, now_nanos())
    }

    fn callsite_enabled(&self, _meta: &'static Metadata<'static>) -> Interest {
        // Rules change at run time, so every event is asked about when it happens.
        Interest::sometimes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(rules: Vec<SourceRule>) -> Shared {
        Shared {
            service: "checkout".into(),
            default_severity: 9,
            rules: RwLock::new(rules),
        }
    }

    fn rule(
        service: Option<&str>,
        event: Option<&str>,
        min: i32,
        expires_at: u64,
        created_at: u64,
    ) -> SourceRule {
        SourceRule {
            service: service.map(String::from),
            scope: None,
            event: event.map(String::from),
            min_severity: Some(min),
            set_severity: None,
            expires_at,
            created_at,
        }
    }

    #[test]
    fn severities_and_globs() {
        assert_eq!(severity_number("debug"), Some(5));
        assert_eq!(severity_number("INFO2"), Some(10));
        assert_eq!(severity_number("loud"), None);
        assert!(glob("check*", "checkout"));
        assert!(!glob("cart", "checkout"));
    }

    #[test]
    fn decisions_follow_weft_precedence_and_expire_locally() {
        static DEBUG_META: tracing_core::Metadata<'static> = tracing_core::metadata!(
            name: "CacheMiss",
            target: "checkout::cache",
            level: Level::DEBUG,
            fields: &[],
            callsite: &CALLSITE,
            kind: tracing_core::metadata::Kind::EVENT
        );
        struct Callsite;
        impl tracing_core::Callsite for Callsite {
            fn set_interest(&self, _: Interest) {}
            fn metadata(&self) -> &Metadata<'_> {
                &DEBUG_META
            }
        }
        static CALLSITE: Callsite = Callsite;

        assert!(
            !shared(vec![]).enabled(&DEBUG_META, 0),
            "DEBUG is off by default"
        );
        let s = shared(vec![rule(Some("checkout"), None, 5, 100, 1)]);
        assert!(s.enabled(&DEBUG_META, 50), "a service rule turns DEBUG on");
        assert!(!s.enabled(&DEBUG_META, 100), "and it expires locally");
        let s = shared(vec![
            rule(Some("checkout"), None, 5, 100, 1),
            rule(None, Some("CacheMiss"), 9, 100, 0),
        ]);
        assert!(
            !s.enabled(&DEBUG_META, 50),
            "an event rule outranks a newer service rule"
        );
        let s = shared(vec![rule(Some("cart"), None, 1, 100, 1)]);
        assert!(
            !s.enabled(&DEBUG_META, 50),
            "other services' rules do not apply"
        );
    }
}
