//! Who may do what: bearer tokens with roles, checked on both listeners.
//!
//! - `mod.rs` (here): roles, the token table, and the one decision every request goes through
//!   ([`Tokens::authorize`]).
//! - `policy.rs`: which role each HTTP route and gRPC method needs; the whole policy is there.
//! - `layer.rs`: the axum middleware and the tower layer (for tonic) that apply it before a
//!   request's body is read.
//!
//! Three roles: `ingest` (OTLP export), `read` (queries, tail, Jaeger API, the UI's data) and
//! `admin` (severity rule changes; an admin token may also read). A role with no token
//! configured is open over loopback and refused elsewhere, so a weft on 127.0.0.1 needs no setup.
//! An admin token may carry a scope (`team-a=s3cret:checkout*|cart`): the services its rules may
//! select. Secrets are compared by digest in constant time and never logged; requests carry the
//! token's name (a [`Principal`]) and the audit log records it.

mod layer;
pub mod policy;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};

pub use layer::{AuthState, GrpcAuthLayer, http_middleware, http_refusal};
pub use policy::Access;

/// What a token may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// OTLP export over gRPC and HTTP.
    Ingest,
    /// The query API, Jaeger API, gRPC `QueryService`, tail, the UI's data.
    Read,
    /// Severity rule changes (and everything `Read` may do).
    Admin,
}

impl Role {
    /// Every role, in the order metrics list them.
    pub const ALL: [Role; 3] = [Role::Ingest, Role::Read, Role::Admin];

    /// The name used in configuration keys, messages and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Read => "read",
            Role::Admin => "admin",
        }
    }

    fn config_key(self) -> &'static str {
        match self {
            Role::Ingest => "ingest_tokens",
            Role::Read => "read_tokens",
            Role::Admin => "admin_tokens",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Role::Ingest => "exporting",
            Role::Read => "reading",
            Role::Admin => "changing severity rules",
        }
    }
}

/// Why a request was refused; also the `reason` label of `weft_auth_refused_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// No bearer token, and the role is not open to this peer.
    MissingToken,
    /// A bearer token that matches no configured token.
    UnknownToken,
    /// A valid token of a role that may not do this.
    WrongRole,
    /// An admin token whose scope does not cover the services a rule selects.
    OutOfScope,
}

impl Reason {
    /// Every reason, in the order metrics list them.
    pub const ALL: [Reason; 4] = [
        Reason::MissingToken,
        Reason::UnknownToken,
        Reason::WrongRole,
        Reason::OutOfScope,
    ];

    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            Reason::MissingToken => "missing_token",
            Reason::UnknownToken => "unknown_token",
            Reason::WrongRole => "wrong_role",
            Reason::OutOfScope => "out_of_scope",
        }
    }
}

/// A refusal: HTTP 401 / gRPC `UNAUTHENTICATED` when the caller is not known, 403 /
/// `PERMISSION_DENIED` when it is known but may not do this.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Denied {
    /// The role the request needed.
    pub role: Role,
    /// Why it was refused.
    pub reason: Reason,
    /// What the caller should do, never containing a secret.
    pub message: String,
}

impl Denied {
    /// True for 401 / `UNAUTHENTICATED`, false for 403 / `PERMISSION_DENIED`.
    pub fn unauthenticated(&self) -> bool {
        matches!(self.reason, Reason::MissingToken | Reason::UnknownToken)
    }
}

/// The services an admin token's rules may select: globs (`*` matches any run of characters).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope(Vec<String>);

impl Scope {
    /// Parses `GLOB|GLOB…`.
    pub fn parse(text: &str) -> Result<Scope, String> {
        let globs: Vec<String> = text
            .split('|')
            .map(|g| g.trim().to_string())
            .filter(|g| !g.is_empty())
            .collect();
        if globs.is_empty() {
            return Err(format!(
                "scope '{text}' names no service; write GLOB|GLOB, e.g. checkout*|cart"
            ));
        }
        Ok(Scope(globs))
    }

    /// Whether every service the rule's service glob can select is inside this scope.
    ///
    /// Sound without solving glob inclusion: a scope glob's literal parts hold no `*`, so if it
    /// matches the rule's glob read as plain text, each of those parts sits in a literal part of
    /// the rule's glob, and stays in place whatever the rule's `*`s expand to.
    pub fn covers(&self, service_glob: &str) -> bool {
        self.0
            .iter()
            .any(|g| weft_index::query::glob_match(g, service_glob))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("|"))
    }
}

/// Who a request runs as, for handlers and the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The token's name, or `loopback` when the role was open to a loopback peer.
    pub name: String,
    /// The token's role; `None` for open loopback access.
    pub role: Option<Role>,
    /// For a scoped admin token, the services its rules may select.
    pub scope: Option<Scope>,
}

impl Principal {
    /// Refuses a severity rule selecting `service` (a glob; `None` selects every service) that
    /// lies outside this principal's scope.
    pub fn check_scope(&self, service: Option<&str>) -> Result<(), Denied> {
        let Some(scope) = &self.scope else {
            return Ok(());
        };
        match service {
            Some(glob) if scope.covers(glob) => Ok(()),
            _ => Err(Denied {
                role: Role::Admin,
                reason: Reason::OutOfScope,
                message: format!(
                    "token '{}' may only change rules for services matching {scope}; this rule \
                     selects {}",
                    self.name,
                    service.map_or("every service".to_string(), |s| format!("service '{s}'"))
                ),
            }),
        }
    }
}

/// A configured token: its role, name, the digest of its secret, and an admin token's scope.
#[derive(Clone)]
struct Token {
    name: String,
    role: Role,
    digest: [u8; 32],
    scope: Option<Scope>,
}

/// Every configured token, by role.
#[derive(Clone, Default)]
pub struct Tokens {
    tokens: Vec<Token>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names and roles only: a secret's digest is no business of a log line either.
        f.debug_list()
            .entries(self.tokens.iter().map(|t| (t.role.name(), &t.name)))
            .finish()
    }
}

/// Shortest secret weft accepts.
pub const MIN_SECRET_LEN: usize = 8;

fn digest(secret: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, secret);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Tokens {
    /// Adds the tokens of one configuration key: `name → secret`, where an admin secret may end
    /// with `:GLOB|GLOB…`. Errors name the key and the token, never the secret.
    pub fn add_role(
        &mut self,
        role: Role,
        entries: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        for (name, value) in entries {
            let name = name.trim();
            let (secret, scope) = match (role, value.split_once(':')) {
                (Role::Admin, Some((secret, scope))) => (secret, Some(Scope::parse(scope)?)),
                _ => (value.as_str(), None),
            };
            let secret = secret.trim();
            if name.is_empty() || name.contains(['=', ',', ':']) {
                return Err(format!(
                    "{}: token name '{name}' must be non-empty, without '=', ',' or ':'",
                    role.config_key()
                ));
            }
            if secret.len() < MIN_SECRET_LEN {
                return Err(format!(
                    "{}: the secret of token '{name}' must have at least {MIN_SECRET_LEN} \
                     characters (e.g. from `openssl rand -hex 24`)",
                    role.config_key()
                ));
            }
            let digest = digest(secret.as_bytes());
            if let Some(other) = self.tokens.iter().find(|t| same_digest(&t.digest, &digest)) {
                return Err(format!(
                    "{}: token '{name}' has the same secret as {} token '{}'; each token needs \
                     its own secret, so that a request names one token and one role",
                    role.config_key(),
                    other.role.name(),
                    other.name
                ));
            }
            if self.tokens.iter().any(|t| t.role == role && t.name == name) {
                return Err(format!(
                    "{}: token '{name}' is listed twice",
                    role.config_key()
                ));
            }
            self.tokens.push(Token {
                name: name.to_string(),
                role,
                digest,
                scope,
            });
        }
        Ok(())
    }

    /// Whether any token of `role` is configured.
    pub fn has(&self, role: Role) -> bool {
        self.tokens.iter().any(|t| t.role == role)
    }

    /// The configured token names per role, for the startup log.
    pub fn summary(&self) -> String {
        Role::ALL
            .iter()
            .map(|&role| {
                let n = self.tokens.iter().filter(|t| t.role == role).count();
                if n == 0 {
                    format!("{}: open on loopback only", role.name())
                } else {
                    format!("{}: {n} token(s)", role.name())
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The token whose secret is `presented`, comparing against every token so the time taken
    /// does not depend on which one matched.
    fn find(&self, presented: &str) -> Option<&Token> {
        let presented = digest(presented.as_bytes());
        let mut found = None;
        for token in &self.tokens {
            if same_digest(&token.digest, &presented) {
                found = Some(token);
            }
        }
        found
    }

    /// The one decision: may a peer at `peer`, presenting `bearer` (the text after `Bearer `),
    /// do what `access` needs?
    pub fn authorize(
        &self,
        access: policy::Access,
        peer: Option<SocketAddr>,
        bearer: Option<&str>,
    ) -> Result<Principal, Denied> {
        let role = access.role;
        let Some(presented) = bearer.map(str::trim).filter(|b| !b.is_empty()) else {
            if !self.has(role) && peer.is_some_and(|p| is_loopback(p.ip())) {
                return Ok(Principal {
                    name: "loopback".into(),
                    role: None,
                    scope: None,
                });
            }
            let message = if self.has(role) {
                format!(
                    "{} needs Authorization: Bearer <{} token>",
                    role.what(),
                    role.name()
                )
            } else {
                format!(
                    "no {} tokens are configured, so {} is open over loopback only; set {} \
                     (name=secret) and send Authorization: Bearer <secret>",
                    role.name(),
                    role.what(),
                    role.config_key()
                )
            };
            return Err(Denied {
                role,
                reason: Reason::MissingToken,
                message,
            });
        };
        let Some(token) = self.find(presented) else {
            // A stray header does not lock a loopback user out of an open role.
            if !self.has(role) && peer.is_some_and(|p| is_loopback(p.ip())) {
                return Ok(Principal {
                    name: "loopback".into(),
                    role: None,
                    scope: None,
                });
            }
            return Err(Denied {
                role,
                reason: Reason::UnknownToken,
                message: "the bearer token is not one weft knows".into(),
            });
        };
        if access.allows(token.role) {
            return Ok(Principal {
                name: token.name.clone(),
                role: Some(token.role),
                scope: token.scope.clone(),
            });
        }
        Err(Denied {
            role,
            reason: Reason::WrongRole,
            message: format!(
                "token '{}' is {} {} token; {} needs {}",
                token.name,
                article(token.role),
                token.role.name(),
                role.what(),
                access.describe()
            ),
        })
    }
}

fn article(role: Role) -> &'static str {
    match role {
        Role::Ingest | Role::Admin => "an",
        Role::Read => "a",
    }
}

/// Loopback, including IPv4 loopback seen through an IPv6 socket (`::ffff:127.0.0.1`).
fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Refusals counted by role and reason: `weft_auth_refused_total{role, reason}`.
#[derive(Default, Debug)]
pub struct RefusalCounters([[AtomicU64; 4]; 3]);

impl RefusalCounters {
    /// Counts one refusal.
    pub fn count(&self, denied: &Denied) {
        let role = Role::ALL
            .iter()
            .position(|r| *r == denied.role)
            .unwrap_or(0);
        let reason = Reason::ALL
            .iter()
            .position(|r| *r == denied.reason)
            .unwrap_or(0);
        self.0[role][reason].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts as Prometheus text (`weft_auth_refused_total`).
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write;
        let mut out = String::from(
            "# HELP weft_auth_refused_total Requests refused for want of a token or of the right one, by the role needed and why.\n# TYPE weft_auth_refused_total counter\n",
        );
        for role in Role::ALL {
            for reason in Reason::ALL {
                let _ = writeln!(
                    out,
                    "weft_auth_refused_total{{role=\"{}\",reason=\"{}\"}} {}",
                    role.name(),
                    reason.name(),
                    self.get(role, reason)
                );
            }
        }
        out
    }

    /// Refusals so far of `role` for `reason`.
    pub fn get(&self, role: Role, reason: Reason) -> u64 {
        let r = Role::ALL.iter().position(|x| *x == role).unwrap_or(0);
        let why = Reason::ALL.iter().position(|x| *x == reason).unwrap_or(0);
        self.0[r][why].load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::policy::Access;
    use super::*;

    const LOOPBACK: &str = "127.0.0.1:5000";
    const REMOTE: &str = "10.1.2.3:5000";

    fn peer(addr: &str) -> Option<SocketAddr> {
        Some(addr.parse().unwrap())
    }

    fn tokens(entries: &[(Role, &str, &str)]) -> Tokens {
        let mut tokens = Tokens::default();
        for (role, name, secret) in entries {
            let map = BTreeMap::from([(name.to_string(), secret.to_string())]);
            tokens.add_role(*role, &map).unwrap();
        }
        tokens
    }

    #[test]
    fn an_unconfigured_role_is_open_on_loopback_only() {
        let none = Tokens::default();
        let p = none
            .authorize(Access::INGEST, peer(LOOPBACK), None)
            .unwrap();
        assert_eq!(p.name, "loopback");
        let p = none
            .authorize(Access::READ, peer("[::ffff:127.0.0.1]:1"), None)
            .unwrap();
        assert_eq!(p.name, "loopback");
        let e = none
            .authorize(Access::READ, peer(REMOTE), None)
            .unwrap_err();
        assert_eq!(e.reason, Reason::MissingToken);
        assert!(e.message.contains("read_tokens"), "{}", e.message);
        assert!(none.authorize(Access::ADMIN, None, None).is_err());
    }

    #[test]
    fn a_configured_role_needs_its_token_even_on_loopback() {
        let t = tokens(&[
            (Role::Ingest, "collector", "ingest-secret-0001"),
            (Role::Read, "grafana", "read-secret-000001"),
            (Role::Admin, "alice", "admin-secret-00001"),
        ]);
        let e = t
            .authorize(Access::INGEST, peer(LOOPBACK), None)
            .unwrap_err();
        assert_eq!(e.reason, Reason::MissingToken);
        assert!(e.unauthenticated());
        let e = t
            .authorize(Access::INGEST, peer(LOOPBACK), Some("nope-nope-nope-nope"))
            .unwrap_err();
        assert_eq!(e.reason, Reason::UnknownToken);
        let p = t
            .authorize(Access::INGEST, peer(REMOTE), Some("ingest-secret-0001"))
            .unwrap();
        assert_eq!((p.name.as_str(), p.role), ("collector", Some(Role::Ingest)));
        // A read token may not export or change rules; an admin token may read.
        let e = t
            .authorize(Access::INGEST, peer(REMOTE), Some("read-secret-000001"))
            .unwrap_err();
        assert_eq!(e.reason, Reason::WrongRole);
        assert!(!e.unauthenticated());
        assert!(
            e.message.contains("'grafana' is a read token"),
            "{}",
            e.message
        );
        assert!(
            t.authorize(Access::ADMIN, peer(REMOTE), Some("read-secret-000001"))
                .is_err()
        );
        let p = t
            .authorize(Access::READ, peer(REMOTE), Some("admin-secret-00001"))
            .unwrap();
        assert_eq!(p.name, "alice");
        // An ingest token may not read, but may fetch its service's effective rules.
        assert!(
            t.authorize(Access::READ, peer(REMOTE), Some("ingest-secret-0001"))
                .is_err()
        );
        assert!(
            t.authorize(
                Access::RULES_FOR_SOURCE,
                peer(REMOTE),
                Some("ingest-secret-0001")
            )
            .is_ok()
        );
    }

    #[test]
    fn a_stray_token_does_not_lock_loopback_out_of_an_open_role() {
        let t = tokens(&[(Role::Admin, "alice", "admin-secret-00001")]);
        assert!(
            t.authorize(Access::INGEST, peer(LOOPBACK), Some("whatever-whatever"))
                .is_ok()
        );
        let e = t
            .authorize(Access::INGEST, peer(REMOTE), Some("whatever-whatever"))
            .unwrap_err();
        assert_eq!(e.reason, Reason::UnknownToken);
    }

    #[test]
    fn configuration_errors_name_the_token_not_the_secret() {
        let mut t = Tokens::default();
        let short = BTreeMap::from([("bob".to_string(), "short".to_string())]);
        let e = t.add_role(Role::Read, &short).unwrap_err();
        assert!(e.contains("read_tokens") && e.contains("'bob'") && !e.contains("short"));
        let a = BTreeMap::from([("a".to_string(), "same-secret-000001".to_string())]);
        t.add_role(Role::Read, &a).unwrap();
        let e = t.add_role(Role::Ingest, &a).unwrap_err();
        assert!(e.contains("same secret"), "{e}");
        let empty_scope = BTreeMap::from([("c".to_string(), "other-secret-00001:".to_string())]);
        assert!(t.add_role(Role::Admin, &empty_scope).is_err());
        assert!(!format!("{t:?}").contains("same-secret"));
    }

    #[test]
    fn scopes_cover_only_rules_inside_them() {
        let scope = Scope::parse("checkout*|cart").unwrap();
        assert!(scope.covers("checkout"));
        assert!(scope.covers("checkout-api"));
        assert!(scope.covers("checkout-*"));
        assert!(scope.covers("cart"));
        assert!(!scope.covers("carts"));
        assert!(!scope.covers("*"));
        assert!(!scope.covers("c*"));
        assert!(!scope.covers("payments"));
        let mut t = Tokens::default();
        let entry = BTreeMap::from([(
            "team-a".to_string(),
            "team-a-secret-0001:checkout*|cart".to_string(),
        )]);
        t.add_role(Role::Admin, &entry).unwrap();
        let p = t
            .authorize(Access::ADMIN, peer(REMOTE), Some("team-a-secret-0001"))
            .unwrap();
        assert!(p.check_scope(Some("checkout-v2")).is_ok());
        let e = p.check_scope(Some("payments")).unwrap_err();
        assert_eq!(e.reason, Reason::OutOfScope);
        assert!(e.message.contains("checkout*|cart"), "{}", e.message);
        assert!(p.check_scope(None).is_err());
    }
}
