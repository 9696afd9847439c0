//! The catalogs: services (span and log counts, last seen), a service's operations (span names
//! with their kinds), and event IDs (with the severity rule in force for each). Counted from the
//! index's columns, summed over the cluster on a search node (`super::aggregation`), so a
//! service or an event seen only in an ingest node's newest rows is listed within a second of
//! its ack.

use std::collections::{BTreeMap, BTreeSet};

use weft_index::aggregate::{EventStats, ServiceStats};
use weft_index::clock::ClockOffset;

use super::aggregation::Aggregation;
use super::{Answer, Error, QueryService};
use crate::severity::rules::Rule;

/// The services seen, and each one's clock offset where weft has an estimate.
#[derive(Debug, Default)]
pub struct Services {
    pub stats: BTreeMap<String, ServiceStats>,
    pub clock: BTreeMap<String, ClockOffset>,
}

/// An event ID in the catalog, with the newest unexpired rule that names it.
#[derive(Debug)]
pub struct CatalogEvent {
    pub event: String,
    pub stats: EventStats,
    pub rule: Option<Rule>,
}

impl QueryService {
    /// Services seen in `[start, end)`, with their clock offsets.
    pub async fn services(
        &self,
        (start, end): (u64, u64),
        authorization: Option<&str>,
    ) -> Result<Answer<Services>, Error> {
        let aggregation = Aggregation::Services {
            start_unix_nano: start,
            end_unix_nano: end,
        };
        Ok(self
            .aggregate(aggregation, authorization)
            .await?
            .map(|found| Services {
                stats: found.services,
                clock: found.clock,
            }))
    }

    /// Services with spans in `[start, end)` (the services a trace search can name).
    pub async fn traced_services(
        &self,
        range: (u64, u64),
        authorization: Option<&str>,
    ) -> Result<Answer<Vec<String>>, Error> {
        let found = self.services(range, authorization).await?;
        Ok(found.map(|services| {
            services
                .stats
                .into_iter()
                .filter(|(_, s)| s.spans > 0)
                .map(|(name, _)| name)
                .collect()
        }))
    }

    /// `service`'s span names in `[start, end)`, each with its span kinds (`server`, `client`,
    /// …, `unspecified`).
    pub async fn operations(
        &self,
        service: &str,
        (start, end): (u64, u64),
        authorization: Option<&str>,
    ) -> Result<Answer<BTreeMap<String, BTreeSet<String>>>, Error> {
        let aggregation = Aggregation::Operations {
            service: service.to_string(),
            start_unix_nano: start,
            end_unix_nano: end,
        };
        Ok(self
            .aggregate(aggregation, authorization)
            .await?
            .map(|found| found.operations))
    }

    /// `service`'s operations ever seen, as (span name, span kind) pairs, sorted: of kind
    /// `wanted` only, when given. Jaeger names the unspecified kind differently in each API
    /// (v1 `""`, v3 `"internal"`): `unspecified` is named so.
    pub async fn operation_kinds(
        &self,
        service: &str,
        wanted: Option<&str>,
        unspecified: &str,
        authorization: Option<&str>,
    ) -> Result<Answer<Vec<(String, String)>>, Error> {
        let range = super::requests::catalog_range(None, None)?;
        let found = self.operations(service, range, authorization).await?;
        Ok(found.map(|operations| {
            let pairs: BTreeSet<(String, String)> = operations
                .into_iter()
                .flat_map(|(name, kinds)| kinds.into_iter().map(move |k| (name.clone(), k)))
                .map(|(name, kind)| match kind.as_str() {
                    "unspecified" => (name, unspecified.to_string()),
                    _ => (name, kind),
                })
                .filter(|(_, kind)| wanted.is_none_or(|w| w == kind))
                .collect();
            pairs.into_iter().collect()
        }))
    }

    /// Event IDs seen in `[start, end)` (of `service`, or of all), most frequent first, each
    /// with the severity rule in force for it.
    pub async fn events(
        &self,
        service: Option<&str>,
        (start, end): (u64, u64),
        authorization: Option<&str>,
    ) -> Result<Answer<Vec<CatalogEvent>>, Error> {
        let aggregation = Aggregation::Events {
            service: service.map(str::to_string),
            start_unix_nano: start,
            end_unix_nano: end,
        };
        let found = self.aggregate(aggregation, authorization).await?;
        let mut events: Vec<(String, EventStats)> = found.value.events.into_iter().collect();
        events.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(&b.0)));
        let rules = self.severity.rules();
        let now = self.severity.now();
        let events = events
            .into_iter()
            .map(|(event, stats)| CatalogEvent {
                rule: rule_in_force(&rules, &event, now).cloned(),
                event,
                stats,
            })
            .collect();
        Ok(Answer::missing(events, found.missing_nodes))
    }

    /// The runtime severity rules, to render a catalog's rules as the severity API lists them.
    pub fn severity(&self) -> &crate::severity::SeverityControl {
        &self.severity
    }
}

/// The newest unexpired rule that names this event ID.
fn rule_in_force<'a>(rules: &'a [Rule], event: &str, now: u64) -> Option<&'a Rule> {
    rules
        .iter()
        .filter(|r| r.selector.event.as_deref() == Some(event) && r.expires_at > now)
        .max_by_key(|r| r.created_at)
}
