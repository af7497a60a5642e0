//! Live service metrics, served at `GET /metrics` in the Prometheus (OpenMetrics) text
//! format. Labels carry partner, plugin, version, placement and reason codes: never a
//! subject, a profile field or an offer id (an offer id is partner-chosen and unbounded).
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `offerhost_slate_seconds` | `placement` | slate latency, request in to answer out |
//! | `offerhost_slates_total` | `placement`, `result` (`served`, `empty`, `suppressed`) | slates answered |
//! | `offerhost_plugin_call_seconds` | `partner`, `plugin`, `version`, `arm` | one plugin call as the slate saw it |
//! | `offerhost_plugin_fuel` | `partner`, `plugin`, `version`, `arm` | fuel one call used |
//! | `offerhost_plugin_calls_total` | `partner`, `plugin`, `version`, `arm`, `outcome` | calls by outcome kind |
//! | `offerhost_bids_total` | `partner`, `plugin`, `version` | bids returned by live calls |
//! | `offerhost_bids_dropped_total` | `partner`, `reason` | bids not shown, by reason code |
//! | `offerhost_offers_served_total` | `partner`, `placement` | offers in slates |
//! | `offerhost_caps_hit_total` | `partner`, `placement` | offers withheld by a frequency cap |
//! | `offerhost_events_total` | `type`, `recorded` (`new`, `duplicate`) | app events ingested |
//! | `offerhost_registry_changes_total` | `action` | committed registry changes |
//! | `offerhost_quarantines_total` | `partner`, `plugin` | automatic quarantines |
//!
//! `arm` is `active`, `canary` or `shadow`. Counters end in `_total` in the output.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of one plugin version in one arm.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ArmLabels {
    /// Partner id.
    pub partner: String,
    /// Plugin name.
    pub plugin: String,
    /// Version.
    pub version: String,
    /// `active`, `canary` or `shadow`.
    pub arm: &'static str,
}

/// [`ArmLabels`] plus the call's outcome kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// Partner id.
    pub partner: String,
    /// Plugin name.
    pub plugin: String,
    /// Version.
    pub version: String,
    /// `active`, `canary` or `shadow`.
    pub arm: &'static str,
    /// Outcome kind (`ok`, `deadline`, `fuel-exhausted`, ...).
    pub outcome: &'static str,
}

/// Labels of one plugin version.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    /// Partner id.
    pub partner: String,
    /// Plugin name.
    pub plugin: String,
    /// Version.
    pub version: String,
}

/// A partner and a reason code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Partner id.
    pub partner: String,
    /// Reason code.
    pub reason: &'static str,
}

/// A partner in a placement.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlacementLabels {
    /// Partner id.
    pub partner: String,
    /// Placement id.
    pub placement: String,
}

/// A placement and how the slate ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SlateLabels {
    /// Placement id.
    pub placement: String,
    /// `served`, `empty` or `suppressed`.
    pub result: &'static str,
}

/// A placement.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlacementOnly {
    /// Placement id.
    pub placement: String,
}

/// An event type and whether it was new.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// `impression`, `click` or `conversion`.
    pub r#type: &'static str,
    /// `new` or `duplicate`.
    pub recorded: &'static str,
}

/// A registry action.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    /// The audit log's action name.
    pub action: String,
}

/// A plugin.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    /// Partner id.
    pub partner: String,
    /// Plugin name.
    pub plugin: String,
}

type Hist<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_buckets() -> Histogram {
    // 50 µs .. ~1.6 s, doubling.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_05, 2.0, 16,
    ))
}

fn fuel_buckets() -> Histogram {
    // 1k .. ~16M units, doubling twice a step.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        1_000.0, 4.0, 13,
    ))
}

/// Every metric the service keeps.
pub struct Metrics {
    registry: Registry,
    /// Slate latency, seconds.
    pub slate_seconds: Hist<PlacementOnly>,
    /// Slates answered.
    pub slates: Family<SlateLabels, Counter>,
    /// Plugin call latency as the slate saw it, seconds.
    pub call_seconds: Hist<ArmLabels>,
    /// Fuel per call.
    pub call_fuel: Hist<ArmLabels>,
    /// Calls by outcome.
    pub calls: Family<OutcomeLabels, Counter>,
    /// Bids returned by live calls.
    pub bids: Family<VersionLabels, Counter>,
    /// Bids dropped, by reason.
    pub bids_dropped: Family<ReasonLabels, Counter>,
    /// Offers served.
    pub offers_served: Family<PlacementLabels, Counter>,
    /// Offers withheld by a frequency cap.
    pub caps_hit: Family<PlacementLabels, Counter>,
    /// Events ingested.
    pub events: Family<EventLabels, Counter>,
    /// Registry changes.
    pub registry_changes: Family<ActionLabels, Counter>,
    /// Automatic quarantines.
    pub quarantines: Family<PluginLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("offerhost");
        let slate_seconds = Hist::new_with_constructor(latency_buckets as fn() -> Histogram);
        let call_seconds = Hist::new_with_constructor(latency_buckets as fn() -> Histogram);
        let call_fuel = Hist::new_with_constructor(fuel_buckets as fn() -> Histogram);
        let m = Metrics {
            slate_seconds,
            slates: Family::default(),
            call_seconds,
            call_fuel,
            calls: Family::default(),
            bids: Family::default(),
            bids_dropped: Family::default(),
            offers_served: Family::default(),
            caps_hit: Family::default(),
            events: Family::default(),
            registry_changes: Family::default(),
            quarantines: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "slate_seconds",
            "Slate latency, request in to answer out",
            m.slate_seconds.clone(),
        );
        registry.register("slates", "Slates answered", m.slates.clone());
        registry.register(
            "plugin_call_seconds",
            "One plugin call as the slate saw it",
            m.call_seconds.clone(),
        );
        registry.register(
            "plugin_fuel",
            "Fuel one plugin call used",
            m.call_fuel.clone(),
        );
        registry.register(
            "plugin_calls",
            "Plugin calls by outcome kind",
            m.calls.clone(),
        );
        registry.register("bids", "Bids returned by live plugin calls", m.bids.clone());
        registry.register(
            "bids_dropped",
            "Bids not shown, by reason code",
            m.bids_dropped.clone(),
        );
        registry.register("offers_served", "Offers in slates", m.offers_served.clone());
        registry.register(
            "caps_hit",
            "Offers withheld by a frequency cap",
            m.caps_hit.clone(),
        );
        registry.register("events", "App events ingested", m.events.clone());
        registry.register(
            "registry_changes",
            "Committed registry changes by action",
            m.registry_changes.clone(),
        );
        registry.register(
            "quarantines",
            "Plugins quarantined automatically",
            m.quarantines.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Every outcome kind a call can end in (`Outcome::kind`).
const OUTCOME_KINDS: [&str; 10] = [
    "ok",
    "fuel-exhausted",
    "deadline",
    "memory-limit",
    "log-limit",
    "trap",
    "invalid-output",
    "plugin-error",
    "instantiation-failed",
    "late",
];

/// The metric handles of one plugin version in one arm, labelled once when a deployment
/// snapshot is built, so a plugin call updates them without building label sets.
pub struct CallMetrics {
    /// Call latency, seconds.
    pub call_seconds: Histogram,
    /// Fuel per call.
    pub fuel: Histogram,
    /// Bids returned.
    pub bids: Counter,
    outcomes: Family<OutcomeLabels, Counter>,
    labels: ArmLabels,
    by_outcome: [std::sync::OnceLock<Counter>; OUTCOME_KINDS.len()],
    bids_dropped: Family<ReasonLabels, Counter>,
    by_reason: [std::sync::OnceLock<Counter>; DROP_REASONS],
    offers_served: Family<PlacementLabels, Counter>,
    /// This partner's `offers_served` handles by placement, made on first use: a slate
    /// counts up to a few offers, and finding a handle in the family costs two strings
    /// and a hash each time.
    served_in: std::sync::Mutex<Vec<(String, Counter)>>,
}

/// How many [`DropReason`](crate::model::DropReason)s there are.
const DROP_REASONS: usize = crate::model::DropReason::Outranked as usize + 1;

impl CallMetrics {
    /// Counts one call that ended in `kind`.
    pub fn outcome(&self, kind: &'static str) {
        let Some(i) = OUTCOME_KINDS.iter().position(|k| *k == kind) else {
            return;
        };
        // Created on first use, so only outcomes that happened appear in the output.
        self.by_outcome[i]
            .get_or_init(|| {
                self.outcomes
                    .get_or_create(&OutcomeLabels {
                        partner: self.labels.partner.clone(),
                        plugin: self.labels.plugin.clone(),
                        version: self.labels.version.clone(),
                        arm: self.labels.arm,
                        outcome: kind,
                    })
                    .clone()
            })
            .inc();
    }

    /// Counts one offer of this plugin's partner served in `placement`.
    pub fn served(&self, placement: &str) {
        let mut handles = self.served_in.lock().unwrap_or_else(|e| e.into_inner());
        match handles.iter().find(|(p, _)| p == placement) {
            Some((_, counter)) => {
                counter.inc();
            }
            None => {
                let counter = self
                    .offers_served
                    .get_or_create(&PlacementLabels {
                        partner: self.labels.partner.clone(),
                        placement: placement.to_string(),
                    })
                    .clone();
                counter.inc();
                handles.push((placement.to_string(), counter));
            }
        }
    }

    /// Counts `n` bids of this plugin's partner dropped for `reason`.
    pub fn dropped(&self, reason: crate::model::DropReason, n: u64) {
        // Created on first use, like the outcome counters.
        self.by_reason[reason as usize]
            .get_or_init(|| {
                self.bids_dropped
                    .get_or_create(&ReasonLabels {
                        partner: self.labels.partner.clone(),
                        reason: reason.code(),
                    })
                    .clone()
            })
            .inc_by(n);
    }
}

impl Metrics {
    /// The handles of `labels`.
    pub fn call_metrics(&self, labels: ArmLabels) -> CallMetrics {
        CallMetrics {
            call_seconds: self.call_seconds.get_or_create(&labels).clone(),
            fuel: self.call_fuel.get_or_create(&labels).clone(),
            bids: self
                .bids
                .get_or_create(&VersionLabels {
                    partner: labels.partner.clone(),
                    plugin: labels.plugin.clone(),
                    version: labels.version.clone(),
                })
                .clone(),
            outcomes: self.calls.clone(),
            labels,
            by_outcome: Default::default(),
            bids_dropped: self.bids_dropped.clone(),
            by_reason: Default::default(),
            offers_served: self.offers_served.clone(),
            served_in: Default::default(),
        }
    }
}

/// The content type of [`Metrics::encode`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
