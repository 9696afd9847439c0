//! `weft.v1.SeverityControl/Watch`: a service's effective rules, streamed on every change.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::proto;
use super::proto::severity_control_server::{SeverityControl as Service, SeverityControlServer};
use crate::severity::SeverityControl;
use crate::severity::rules::Rule;

/// The service, ready to add to a tonic server.
pub fn service(
    control: Arc<SeverityControl>,
    shutdown: watch::Receiver<bool>,
) -> SeverityControlServer<Watcher> {
    SeverityControlServer::new(Watcher { control, shutdown })
}

/// Implementation of `weft.v1.SeverityControl`.
pub struct Watcher {
    control: Arc<SeverityControl>,
    shutdown: watch::Receiver<bool>,
}

fn rule(r: &Rule) -> proto::SeverityRule {
    proto::SeverityRule {
        id: r.id.clone(),
        service: r.selector.service.clone().unwrap_or_default(),
        scope: r.selector.scope.clone().unwrap_or_default(),
        event: r.selector.event.clone().unwrap_or_default(),
        min_severity: r.action.min_severity.unwrap_or(0),
        set_severity: r.action.set_severity.unwrap_or(0),
        expires_at_unix_nano: r.expires_at,
        reason: r.reason.clone(),
        created_by: r.created_by.clone(),
    }
}

struct WatchState {
    control: Arc<SeverityControl>,
    service: String,
    last: Option<String>,
    changes: watch::Receiver<u64>,
    stop: watch::Receiver<bool>,
}

type RuleStream = Pin<Box<dyn Stream<Item = Result<proto::RuleSet, Status>> + Send>>;

#[tonic::async_trait]
impl Service for Watcher {
    type WatchStream = RuleStream;

    async fn watch(
        &self,
        request: Request<proto::WatchRequest>,
    ) -> Result<Response<RuleStream>, Status> {
        let service = request.into_inner().service;
        if service.is_empty() {
            return Err(Status::invalid_argument("service is required"));
        }
        let state = WatchState {
            changes: self.control.subscribe(),
            control: self.control.clone(),
            service,
            last: None,
            stop: self.shutdown.clone(),
        };
        let stream = futures_util::stream::unfold(state, |mut s| async move {
            loop {
                s.changes.mark_unchanged();
                let (tag, rules) = s.control.effective(&s.service);
                if s.last.as_deref() != Some(tag.as_str()) {
                    s.last = Some(tag.clone());
                    let set = proto::RuleSet {
                        etag: tag,
                        rules: rules.iter().map(rule).collect(),
                    };
                    return Some((Ok(set), s));
                }
                tokio::select! {
                    changed = s.changes.changed() => {
                        if changed.is_err() {
                            return None;
                        }
                    }
                    _ = s.stop.changed() => return None,
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
