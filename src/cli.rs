//! `weft severity …`: the runtime severity API from the command line, against a running weft.

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// Where and as whom to talk to weft.
#[derive(clap::Args, Debug, Clone)]
pub struct Connection {
    /// Base URL of weft's HTTP listener.
    #[arg(
        long,
        env = "WEFT_URL",
        default_value = "http://127.0.0.1:4318",
        global = true
    )]
    pub url: String,
    /// Token secret: an admin token to change rules; a read (or admin) token to list them and
    /// read the audit log. Needed when weft has tokens of that role configured.
    #[arg(long, env = "WEFT_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// PEM CA certificate to trust for an https:// URL (a private CA), instead of the system's.
    #[arg(long, env = "WEFT_CA_FILE", global = true)]
    pub ca_file: Option<std::path::PathBuf>,
}

fn http_client(connection: &Connection) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder();
    if let Some(path) = &connection.ca_file {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the CA file {}", path.display()))?;
        let ca = reqwest::Certificate::from_pem(&pem)
            .with_context(|| format!("{} is not a PEM certificate", path.display()))?;
        builder = builder
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca);
    }
    Ok(builder.build()?)
}

/// `weft severity` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum SeverityCommand {
    /// Create a rule: `weft severity set --service checkout --min debug --ttl 15m --reason INC-42`.
    Set {
        /// Service name glob.
        #[arg(long)]
        service: Option<String>,
        /// Scope (logger) name glob.
        #[arg(long)]
        scope: Option<String>,
        /// Exact event ID.
        #[arg(long)]
        event: Option<String>,
        /// Drop records below this severity.
        #[arg(long)]
        min: Option<String>,
        /// Give matching records this severity.
        #[arg(long = "set")]
        set_severity: Option<String>,
        /// How long the rule lasts.
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// Why (recorded in the audit log).
        #[arg(long, default_value = "")]
        reason: String,
        /// Allow a rule with no selector to drop records of every service.
        #[arg(long)]
        force: bool,
    },
    /// List the rules in force.
    List,
    /// Delete a rule.
    Rm {
        /// Rule ID.
        id: String,
        /// Why (recorded in the audit log).
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Show the audit log, newest first.
    Audit,
}

/// Runs a severity subcommand and prints the result.
pub fn severity(connection: Connection, command: SeverityCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let client = http_client(&connection)?;
        let base = connection.url.trim_end_matches('/').to_string();
        let auth = |request: reqwest::RequestBuilder| match &connection.token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        let (status, body) = match command {
            SeverityCommand::Set {
                service,
                scope,
                event,
                min,
                set_severity,
                ttl,
                reason,
                force,
            } => {
                let body = json!({
                    "selector": {"service": service, "scope": scope, "event": event},
                    "action": {"min_severity": min, "set_severity": set_severity},
                    "ttl": ttl, "reason": reason, "force": force,
                });
                send(auth(
                    client
                        .post(format!("{base}/api/v1/severity/rules"))
                        .json(&body),
                ))
                .await?
            }
            SeverityCommand::List => {
                send(auth(client.get(format!("{base}/api/v1/severity/rules")))).await?
            }
            SeverityCommand::Rm { id, reason } => {
                send(auth(
                    client
                        .delete(format!("{base}/api/v1/severity/rules/{id}"))
                        .query(&[("reason", reason)]),
                ))
                .await?
            }
            SeverityCommand::Audit => {
                send(auth(client.get(format!("{base}/api/v1/severity/audit")))).await?
            }
        };
        if !status.is_success() {
            bail!(
                "weft refused ({status}): {}",
                body["error"].as_str().unwrap_or(&body.to_string())
            );
        }
        print_result(&body);
        Ok(())
    })
}

async fn send(request: reqwest::RequestBuilder) -> anyhow::Result<(reqwest::StatusCode, Value)> {
    let response = request.send().await.context("cannot reach weft")?;
    let status = response.status();
    let text = response.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

fn rule_line(rule: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let selector = &rule["selector"];
    let what: Vec<String> = ["service", "scope", "event"]
        .iter()
        .filter_map(|k| selector[k].as_str().map(|v| format!("{k}={v}")))
        .collect();
    let mut action = Vec::new();
    if let Some(m) = rule["action"]["min_severity"].as_str() {
        action.push(format!("min={m}"));
    }
    if let Some(m) = rule["action"]["set_severity"].as_str() {
        action.push(format!("set={m}"));
    }
    format!(
        "{:<6} {:<40} {:<20} {:>6}s left  dropped={:<8} by {} — {}",
        s(&rule["id"]),
        if what.is_empty() {
            "(all)".into()
        } else {
            what.join(" ")
        },
        action.join(" "),
        rule["time_left_seconds"],
        rule["dropped"],
        s(&rule["created_by"]),
        s(&rule["reason"]),
    )
}

fn print_result(body: &Value) {
    if let Some(rules) = body["rules"].as_array() {
        if rules.is_empty() {
            println!("no rules in force");
        }
        for r in rules {
            println!("{}", rule_line(r));
        }
    } else if let Some(entries) = body["entries"].as_array() {
        for e in entries {
            let at = e["at_unix_nano"]
                .as_str()
                .and_then(|n| n.parse::<i128>().ok())
                .and_then(|n| time::OffsetDateTime::from_unix_timestamp_nanos(n).ok())
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
            let reason = e["reason"].as_str().unwrap_or("");
            // A create's reason is the rule's own, already on the rule line.
            let why = if e["action"] == "create" || reason.is_empty() {
                String::new()
            } else {
                format!(" ({reason})")
            };
            println!(
                "{at} {:<7} by {:<10} {}{why}",
                e["action"].as_str().unwrap_or(""),
                e["by"].as_str().unwrap_or(""),
                rule_line(&e["rule"]),
            );
        }
    } else if body["id"].is_string() {
        println!("{}", rule_line(body));
    } else {
        println!("{body}");
    }
}
