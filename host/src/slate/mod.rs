//! One slate from door to door: derive features, fan out to the plugins, screen the
//! bids, apply policy and caps, rank.
//!
//! Ranking: every bid that survives validation and policy gets an expected value
//!
//! ```text
//! score = value_minor × relevance × partner weight
//! ```
//!
//! and offers are taken in descending score, ties broken by higher `value_minor`, then
//! partner id, then offer id (so the same bids always give the same slate). An offer is
//! skipped when its partner already has `max_per_partner` offers in the slate or when a
//! frequency cap would be broken counting the offers already taken; taking stops when
//! the slots are full.

pub mod caps;
pub mod deployment;
mod fanout;
mod pool;
pub mod profile;
mod rank;
mod records;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::Clock;
use crate::config::{Config, PlacementConfig};
use crate::metrics::{EventLabels, Metrics, PlacementLabels, PlacementOnly, SlateLabels};
use crate::model::{DropReason, FieldError, Offer};
use crate::registry::Registry;
use crate::report::{Aggregator, Cell, field};
use crate::sandbox::{LogLine, Outcome};
use crate::store::{
    Recorded, Reservation, ServedOffer, ServedOfferRef, SlateReads, SlateRecord, SlateRecordRef,
    Store, SubjectKey,
};
use caps::{CapCheck, CappedOffer, Retention};
use fanout::{Call, Done};
use profile::Profile;

/// `POST /v1/slates` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlateRequest {
    /// Placement id.
    pub placement: String,
    /// Pseudonymous subject id: used inside the host for caps and bucketing only.
    pub subject: String,
    /// Offers wanted; default the placement's `slots`.
    #[serde(default)]
    pub slots: Option<u32>,
    /// The customer's profile; when absent the stored profile is used.
    #[serde(default)]
    pub profile: Option<Profile>,
    /// Include per-plugin diagnostics.
    #[serde(default)]
    pub debug: bool,
}

/// One offer in a slate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SlateOffer {
    /// 1-based position.
    pub rank: u32,
    /// Partner id.
    pub partner: String,
    /// Plugin name.
    pub plugin: String,
    /// Plugin version.
    pub plugin_version: String,
    /// The offer.
    pub offer: Offer,
    /// Expected value used for ranking.
    pub score: f64,
    /// What the partner pays per impression, minor units.
    pub value_minor: u64,
}

/// A dropped bid, for diagnostics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DroppedBid {
    /// Offer id.
    pub offer_id: String,
    /// Reason code.
    pub reason: DropReason,
    /// Detail.
    pub detail: String,
}

/// What one plugin did for this slate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PluginDiagnostics {
    /// Partner id.
    pub partner: String,
    /// Plugin name.
    pub plugin: String,
    /// Plugin version.
    pub plugin_version: String,
    /// A shadow call: logged and compared, never shown.
    #[serde(default)]
    pub shadow: bool,
    /// How the call ended.
    pub outcome: Outcome,
    /// Wall time of the call as the slate saw it, microseconds.
    pub latency_us: u64,
    /// The plugin's own time (instantiation and call, as the sandbox measured it),
    /// microseconds; `latency_us` minus this is time spent waiting for a thread.
    pub exec_us: u64,
    /// Fuel used.
    pub fuel_used: u64,
    /// Bids returned.
    pub bids: u32,
    /// Every bid not in the slate, with its reason.
    pub dropped: Vec<DroppedBid>,
    /// What the plugin logged.
    pub logs: Vec<LogLine>,
}

/// The answer to a slate request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Slate {
    /// Id for events.
    pub slate_id: String,
    /// Placement.
    pub placement: String,
    /// Offers in rank order.
    pub offers: Vec<SlateOffer>,
    /// Why partner offers were withheld entirely, if they were (`no-marketing-consent`,
    /// `no-profile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed: Option<String>,
    /// Degradations the app or ops should know about (for example `caps-unavailable`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Per-plugin diagnostics, when asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnostics: Option<Vec<PluginDiagnostics>>,
}

/// Kinds of event the app reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EventType {
    /// The offer was shown.
    Impression,
    /// The customer opened it.
    Click,
    /// The customer took it up.
    Conversion,
}

/// `POST /v1/events` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventRequest {
    /// The app's unique id for this event: sending it again changes nothing.
    pub event_id: String,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The slate the offer was in.
    pub slate_id: String,
    /// The offer's partner.
    pub partner: String,
    /// The offer id.
    pub offer_id: String,
}

/// The answer to an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventAck {
    /// `new` or `duplicate`.
    pub recorded: Recorded,
    /// Whether it counted toward frequency caps.
    pub counted_for_caps: bool,
}

/// What can go wrong with a request (everything else is degraded, not failed).
#[derive(Debug, thiserror::Error)]
pub enum SlateError {
    /// A request field is invalid.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// Something the request refers to does not exist.
    #[error("{0}")]
    NotFound(FieldError),
    /// The request contradicts one made before (an event id used for another event).
    #[error("{0}")]
    Conflict(FieldError),
    /// The store failed where no fallback is safe.
    #[error("store unavailable: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// Everything a slate needs, shared by all requests.
pub struct SlateService {
    pub(crate) config: Config,
    pub(crate) registry: Arc<Registry>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    retention: Retention,
    /// Whether some cap counts impressions ever (then caps are read by key, with totals).
    lifetime_caps: bool,
    /// Whether a slate asks for the subject's cap record before its plugins run: there
    /// are caps, and none counts impressions ever.
    reads_cap_record: bool,
    holidays: Vec<time::Date>,
    fanout: Arc<fanout::Fanout>,
    /// Slate records not yet written (embedded store only; see [`records`]).
    pending_slates: Option<records::PendingSlates>,
    pub(crate) metrics: Arc<Metrics>,
    /// Each configured placement's slate metrics, looked up once.
    placement_metrics: HashMap<String, PlacementMetrics>,
    pub(crate) aggregates: Arc<Aggregator>,
    pub(crate) noise_secret: std::sync::OnceLock<Vec<u8>>,
    /// One [`SlateService::settle`] at a time.
    settling: tokio::sync::Mutex<()>,
    /// One aggregate write at a time (see [`SlateService::flush_aggregates`]).
    flushing: tokio::sync::Mutex<()>,
}

/// Longest [`SlateService::settle`] waits.
const SETTLE_MAX: Duration = Duration::from_secs(1);

impl SlateService {
    /// A service over `deployment`.
    pub fn new(
        config: Config,
        registry: Arc<Registry>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        let holidays = config
            .holidays
            .iter()
            .filter_map(|d| time::Date::parse(d, format).ok())
            .collect();
        let metrics = registry.metrics().clone();
        let placement_metrics = (config.placements.iter())
            .map(|p| (p.id.clone(), PlacementMetrics::new(&metrics, &p.id)))
            .collect();
        let aggregates = Arc::<Aggregator>::default();
        SlateService {
            metrics,
            placement_metrics,
            noise_secret: std::sync::OnceLock::new(),
            settling: tokio::sync::Mutex::new(()),
            flushing: tokio::sync::Mutex::new(()),
            retention: Retention::for_caps(&config.caps),
            lifetime_caps: caps::has_lifetime_cap(&config.caps),
            reads_cap_record: !config.caps.is_empty() && !caps::has_lifetime_cap(&config.caps),
            config,
            // Enough pool threads that plugins hanging until the slate deadline in
            // several slates at once still leave threads for everyone else.
            fanout: Arc::new(fanout::Fanout::new(
                registry.sandbox().clone(),
                fanout::Accountant {
                    registry: registry.clone(),
                    aggregates: aggregates.clone(),
                },
                (cores() * 8).max(16),
                cores(),
            )),
            registry,
            aggregates,
            pending_slates: (!store.is_remote())
                .then(|| records::PendingSlates::start(store.clone(), clock.clone()))
                .transpose()
                .expect("the slate writer thread starts"),
            store,
            clock,
            holidays,
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Runs a store operation: inline for the embedded store (microseconds), on a
    /// blocking thread for a networked one, so a slow or unreachable server never stalls
    /// the async runtime (and request timeouts still fire).
    pub async fn io<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, crate::store::StoreError> {
        if !self.store.is_remote() {
            return f(self.store.as_ref());
        }
        let store = self.store.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| f(store.as_ref())))
            .await
            .map_err(|e| crate::store::StoreError::Backend(format!("store task failed: {e}")))?
    }

    /// How long impressions are kept for the caps: the longest cap window.
    pub fn cap_retention(&self) -> Retention {
        self.retention
    }

    /// The plugin registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The subject's store key.
    pub fn subject_key(&self, subject: &str) -> SubjectKey {
        SubjectKey::new(&self.config.subject_salt, subject)
    }

    /// Placement `id`, or an error naming the configured ones.
    pub(crate) fn placement(&self, id: &str) -> Result<&PlacementConfig, SlateError> {
        self.config.placement(id).ok_or_else(|| {
            let known: Vec<&str> = self
                .config
                .placements
                .iter()
                .map(|p| p.id.as_str())
                .collect();
            SlateError::Invalid(FieldError::new(
                "placement",
                format!("unknown placement {id:?}; configured: {}", known.join(", ")),
            ))
        })
    }

    /// Validates a request without side effects.
    pub fn validate(&self, req: &SlateRequest) -> Result<(), SlateError> {
        let placement = self.placement(&req.placement)?;
        let _ = placement;
        if req.subject.is_empty() || req.subject.len() > 128 {
            return Err(FieldError::new("subject", "must be 1..=128 bytes").into());
        }
        if let Some(slots) = req.slots
            && (slots == 0 || slots > self.config.slate.max_slots)
        {
            return Err(FieldError::new(
                "slots",
                format!("{slots} is outside 1..={}", self.config.slate.max_slots),
            )
            .into());
        }
        if let Some(p) = &req.profile {
            p.validate("profile.")?;
        }
        Ok(())
    }

    /// The service's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Waits for the counts of the slates already answered, which a fan-out thread adds
    /// just after each answer (microseconds; longer when it is busy with a helper turn
    /// first): call it before reading metrics or aggregates. Gives up after
    /// [`SETTLE_MAX`], with a warning.
    pub async fn settle(&self) {
        let _one = self.settling.lock().await;
        let slot = self.fanout.turn_chores();
        let until = Instant::now() + SETTLE_MAX;
        let mut turns = 0u32;
        while !self.fanout.chores_drained(slot) {
            if Instant::now() >= until {
                tracing::warn!(
                    "slate counts still being added after {SETTLE_MAX:?}; reading without them"
                );
                return;
            }
            // Yield to other tasks while the wait is short, then sleep.
            turns += 1;
            if turns < 100 {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }

    /// Builds a slate.
    pub async fn slate(&self, req: SlateRequest) -> Result<Slate, SlateError> {
        let started = Instant::now();
        let slate = self.build_slate(req).await?;
        let elapsed = started.elapsed().as_secs_f64();
        match self.placement_metrics.get(&slate.placement) {
            Some(m) => m.observe(&slate, elapsed),
            // Every slate answered is for a configured placement; any other would only
            // cost the lookups.
            None => PlacementMetrics::new(&self.metrics, &slate.placement).observe(&slate, elapsed),
        }
        Ok(slate)
    }

    /// `now` in the customers' local time (`utc_offset_minutes`).
    pub fn local_time(&self, now: time::OffsetDateTime) -> time::OffsetDateTime {
        let offset = time::UtcOffset::from_whole_seconds(self.config.utc_offset_minutes * 60)
            .unwrap_or(time::UtcOffset::UTC);
        now.to_offset(offset)
    }

    /// The issuer-local day of `now`, `YYYY-MM-DD`.
    fn local_day(&self, now: time::OffsetDateTime) -> String {
        day_string(self.local_time(now).date())
    }

    /// [`SlateService::io`] for a request: while a networked store answers, the request
    /// is not counted as working (see [`fanout::Busy`]).
    async fn io_for<T: Send + 'static>(
        &self,
        busy: &mut fanout::Busy<'_>,
        f: impl FnOnce(&dyn Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    ) -> Result<T, crate::store::StoreError> {
        if !self.store.is_remote() {
            return self.io(f).await;
        }
        busy.idle();
        let result = self.io(f).await;
        busy.working();
        result
    }

    async fn build_slate(&self, req: SlateRequest) -> Result<Slate, SlateError> {
        let mut busy = self.fanout.busy();
        self.validate(&req)?;
        let placement = self.placement(&req.placement)?;
        let subject = self.subject_key(&req.subject);
        let now = self.clock.now();
        let slate_id = new_slate_id(&subject, now.unix_timestamp_nanos());
        let mut slate = Slate {
            slate_id: slate_id.clone(),
            placement: placement.id.clone(),
            offers: Vec::new(),
            suppressed: None,
            warnings: Vec::new(),
            diagnostics: req.debug.then(Vec::new),
        };

        // The stored profile, and from a networked store the subject's cap record when it
        // keeps one and no cap needs lifetime totals: read together, in one round trip,
        // before the plugins run. (A store on this machine is asked for the record after
        // them, only when some plugin bid.)
        let remote = self.store.is_remote();
        let (need_profile, need_record) = (req.profile.is_none(), self.reads_cap_record && remote);
        let reads = if need_profile || need_record {
            let who = subject.clone();
            let reads = self.io_for(&mut busy, move |s| {
                Ok(s.slate_reads(&who, need_profile, need_record))
            });
            reads.await.unwrap_or_else(|e| SlateReads {
                profile: Some(Err(e)),
                caps: None,
            })
        } else {
            SlateReads::default()
        };
        let stored = match req.profile {
            Some(p) => Ok(Some(p)),
            None => reads.profile.unwrap_or(Ok(None)),
        };
        let profile = match stored {
            Ok(Some(p)) => p,
            Ok(None) => {
                slate.suppressed = Some("no-profile".into());
                return Ok(slate);
            }
            Err(e) => {
                tracing::error!(error = %e, "profile lookup failed");
                slate.suppressed = Some("profile-unavailable".into());
                return Ok(slate);
            }
        };
        if !profile.marketing_consent {
            slate.suppressed = Some("no-marketing-consent".into());
            return Ok(slate);
        }

        let local = self.local_time(now);
        let local = time::PrimitiveDateTime::new(local.date(), local.time());
        let derived = profile::derive(
            &profile,
            &self.config.rfm,
            local,
            self.holidays.contains(&local.date()),
        );

        let deployment = self.registry.deployment();
        let mut calls = Vec::with_capacity(deployment.plugins.len());
        for p in deployment
            .plugins
            .iter()
            .filter(|p| p.serves(&placement.id))
        {
            let variant = p.variant_for(&subject);
            // Skip a plugin whose every category is excluded here.
            let categories = &variant.info.categories;
            if !categories.is_empty()
                && categories
                    .iter()
                    .all(|c| placement.excluded_categories.contains(c))
            {
                continue;
            }
            if let Some(shadow) = &p.shadow {
                calls.push(Call {
                    plugin: p.clone(),
                    variant: shadow.clone(),
                    shadow: true,
                });
            }
            calls.push(Call {
                plugin: p.clone(),
                variant: variant.clone(),
                shadow: false,
            });
        }
        let derived = Arc::new(derived);
        let fanout::Fanned {
            calls: finished,
            quarantine,
        } = (self.fan_out(calls, &derived, placement, now.unix_timestamp() as u64)).await;
        for (key, reason) in quarantine {
            let registry = self.registry.clone();
            tracing::warn!(plugin = %key, %reason, "quarantining plugin");
            let span = tracing::Span::current();
            tokio::task::spawn_blocking(move || {
                let _in_request = span.enter();
                if let Err(e) = registry.quarantine(&key, &reason) {
                    tracing::error!(plugin = %key, error = %e, "quarantine failed");
                    registry.reset_health(&key);
                }
            });
        }

        let slots = req.slots.unwrap_or(placement.slots) as usize;
        let mut runs = Vec::with_capacity(finished.len());
        let mut shadows = Vec::new();
        for (call, done) in finished {
            if call.shadow {
                shadows.push((call, done));
                continue;
            }
            runs.push(rank::PluginRun {
                plugin: call.plugin,
                variant: call.variant,
                top_offer: None,
                outcome: done.report.outcome,
                latency: done.latency,
                fuel_used: done.report.cost.fuel_used,
                exec_us: done.report.cost.wall_time_us,
                returned: done.returned,
                bids: done.bids,
                dropped: done
                    .rejected
                    .into_iter()
                    .map(|r| DroppedBid {
                        offer_id: r.offer_id,
                        reason: r.reason,
                        detail: r.detail,
                    })
                    .collect(),
                logs: done.report.logs,
            });
        }

        // The subject's counters: the record read above or, from a store on this machine,
        // now; or, from a store that reads by key (or under a lifetime cap), each key the
        // offers touch under the caps, once.
        let caps = &self.config.caps;
        let cap_now = now.unix_timestamp() as u64;
        let lifetime = self.lifetime_caps;
        let read = if caps.is_empty() || runs.iter().all(|r| r.bids.is_empty()) {
            Ok(CapCheck::new(caps, cap_now, Vec::new()))
        } else if let Some(record) = (reads.caps).or_else(|| {
            (self.reads_cap_record && !remote)
                .then(|| self.store.cap_record(&subject))
                .flatten()
        }) {
            record.map(|record| CapCheck::new(caps, cap_now, record))
        } else {
            let offers = (runs.iter())
                .flat_map(|run| (run.bids.iter()).map(|b| CappedOffer::of(&run.plugin.partner, b)));
            // Not empty: there are caps and offers.
            let keys = caps::keys_to_read(caps, offers);
            let (who, wanted) = (subject.clone(), keys.len());
            let read = self.io_for(&mut busy, move |s| {
                let histories = s.cap_histories(&who, &keys, lifetime)?;
                Ok((keys, histories))
            });
            read.await
                .and_then(|(keys, histories)| match histories.len() {
                    n if n == wanted => {
                        Ok(CapCheck::from_histories(caps, cap_now, keys, histories))
                    }
                    n => Err(crate::store::StoreError::Backend(format!(
                        "{n} histories for {wanted} keys"
                    ))),
                })
        };
        let cap_check = match read {
            Ok(check) => Some(check),
            Err(error) => {
                tracing::error!(%error, "cap store unreadable; failing closed");
                slate
                    .warnings
                    .push("caps-unavailable: capped offers are not shown".into());
                None
            }
        };

        // Counting on serve reserves each impression atomically against every cap, so
        // replicas serving the same subject at once never overshoot.
        let served_at = now.unix_timestamp() as u64;
        let mut reserve = |offer: CappedOffer<'_>| {
            let limits: Vec<(String, Option<u64>, u32)> = self
                .config
                .caps
                .iter()
                .map(|c| (offer.key(c.scope), c.window.seconds(), c.max))
                .collect();
            let event_id = format!("{slate_id}|serve|{}/{}", offer.partner, offer.offer_id);
            let made = self.store.try_reserve(
                &event_id,
                "serve",
                &subject,
                &limits,
                &offer.all_keys(),
                served_at,
                self.retention,
            )?;
            Ok(made == Reservation::Made)
        };
        let reserve: Option<&mut rank::Reserve<'_>> = if self.config.slate.count_on_serve {
            Some(&mut reserve)
        } else {
            None
        };
        let explain = slate.diagnostics.is_some();
        let picked = rank::rank(&mut runs, placement, slots, explain, cap_check, reserve);

        let tier = derived.tier.map_or(UNKNOWN, crate::model::Tier::name);
        let stage = derived
            .lifecycle
            .map_or(UNKNOWN, crate::model::LifecycleStage::name);
        let record = SlateRecordRef {
            slate_id: &slate_id,
            subject: &subject,
            placement: &placement.id,
            served_at,
            expires_at: served_at + self.config.slate.retention_hours * 3600,
            offers: (picked.iter())
                .map(|(i, bid, _)| {
                    let run = &runs[*i];
                    ServedOfferRef {
                        partner: &run.plugin.partner,
                        plugin: &run.variant.info.name,
                        plugin_version: &run.variant.version,
                        offer_id: &bid.offer.id,
                        category: &bid.offer.category,
                        value_minor: bid.value_minor,
                        arm: &run.variant.arm_row,
                    }
                })
                .collect(),
            tier,
            stage,
        };
        let saved = if record.offers.is_empty() {
            Ok(())
        } else if let Some(pending) = &self.pending_slates {
            if pending.add(&record) {
                Ok(())
            } else {
                Err(crate::store::StoreError::Backend(format!(
                    "{} slate records are waiting for the store; refusing more",
                    records::MAX_PENDING
                )))
            }
        } else {
            let record = record.to_record();
            self.io_for(&mut busy, move |s| s.save_slate(&record)).await
        };
        // What the slate adds to metrics and aggregates: counted once it is answered.
        let tally = Tally {
            metrics: self.metrics.clone(),
            aggregates: self.aggregates.clone(),
            served: picked
                .iter()
                .map(|(i, bid, _)| (*i, bid.offer.id.clone(), bid.value_minor))
                .collect(),
            placement: placement.id.clone(),
            subject,
            tier,
            stage,
            day: local.date(),
        };
        // The picked bids are not needed past this point: their offers move into the slate.
        slate.offers = picked
            .into_iter()
            .zip(1..)
            .map(|((i, bid, score), rank)| {
                let run = &runs[i];
                SlateOffer {
                    rank,
                    partner: run.plugin.partner.clone(),
                    plugin: run.variant.info.name.clone(),
                    plugin_version: run.variant.version.clone(),
                    offer: bid.offer,
                    score,
                    value_minor: bid.value_minor,
                }
            })
            .collect();
        if let Err(e) = saved {
            tracing::error!(error = %e, "could not save slate; events for it will be refused");
            slate
                .warnings
                .push("slate-not-recorded: events for this slate will be refused".into());
        }

        for (call, done) in &shadows {
            let active_top = runs
                .iter()
                .find(|r| r.plugin.key == call.plugin.key)
                .and_then(|r| r.top_offer.clone());
            let shadow_top = rank::top_offer(&done.bids);
            let differed = active_top != shadow_top;
            self.registry.record_shadow(&call.plugin.health, differed);
            self.aggregates.add(
                &call.plugin.arm_bucket,
                &call.variant.arm_row,
                &[
                    (field::SHADOW_COMPARED, 1),
                    (field::SHADOW_DIFFERED, differed as u64),
                ],
                None,
            );
            tracing::info!(
                plugin = %call.plugin.key,
                shadow_version = %call.variant.version,
                outcome = done.report.outcome.kind(),
                ?shadow_top,
                ?active_top,
                "shadow call"
            );
        }
        let Some(diag) = &mut slate.diagnostics else {
            // Counting takes a few microseconds: done by an idle fan-out thread while this
            // one answers, when there is one. Readers of the counts settle first
            // (`SlateService::settle`).
            self.fanout.chore(move || tally.count(&runs));
            return Ok(slate);
        };
        tally.count(&runs);
        for run in runs {
            diag.push(PluginDiagnostics {
                partner: run.plugin.partner.clone(),
                plugin: run.variant.info.name.clone(),
                plugin_version: run.variant.version.clone(),
                shadow: false,
                outcome: run.outcome,
                latency_us: run.latency.as_micros() as u64,
                exec_us: run.exec_us,
                fuel_used: run.fuel_used,
                bids: run.returned,
                dropped: run.dropped,
                logs: run.logs,
            });
        }
        for (call, done) in shadows {
            diag.push(PluginDiagnostics {
                partner: call.plugin.partner.clone(),
                plugin: call.variant.info.name.clone(),
                plugin_version: call.variant.version.clone(),
                shadow: true,
                bids: done.returned,
                outcome: done.report.outcome,
                latency_us: done.latency.as_micros() as u64,
                exec_us: done.report.cost.wall_time_us,
                fuel_used: done.report.cost.fuel_used,
                dropped: Vec::new(),
                logs: done.report.logs,
            });
        }
        Ok(slate)
    }

    /// Calls every plugin in parallel, each call counted as it finishes (in the plugins'
    /// health at `now`, unix seconds); returns what finished before the slate deadline
    /// and a `late` report for the rest, in input order.
    async fn fan_out(
        &self,
        calls: Vec<Call>,
        derived: &Arc<profile::Derived>,
        placement: &PlacementConfig,
        now: u64,
    ) -> fanout::Fanned {
        if calls.is_empty() {
            return fanout::Fanned::default();
        }
        let budget = Duration::from_millis(self.config.slate.deadline_ms);
        let context = fanout::Context {
            derived: derived.clone(),
            placement: placement.id.clone(),
            channel: placement.channel,
        };
        // The request's own thread works too: on a multi-threaded runtime its worker,
        // handing its other tasks to another thread first only while calls have lately
        // been stalling (see `Fanout::hands_off`); elsewhere a blocking thread stands
        // in for it. A worker can make calls because no WASI call blocks on a runtime
        // (`sandbox::wasi_io`): tokio refuses that on a worker.
        let multi_thread = tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread;
        if multi_thread && self.fanout.hands_off(now) {
            tokio::task::block_in_place(|| self.fanout.run(calls, context, budget, now, false))
        } else if multi_thread {
            self.fanout.run(calls, context, budget, now, true)
        } else {
            let fanout = self.fanout.clone();
            let started = Instant::now();
            let all = calls.clone();
            tokio::task::spawn_blocking(move || fanout.run(calls, context, budget, now, false))
                .await
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, "the fan-out failed; its calls count as late");
                    if !e.is_panic() {
                        // Cancelled before it ran: nothing was counted.
                        return self.fanout.all_late(all, now, started.elapsed());
                    }
                    // A bug: its workers counted what they finished, the rest goes
                    // uncounted rather than counted twice.
                    let late = |call| (call, Done::late(started.elapsed()));
                    fanout::Fanned {
                        calls: all.into_iter().map(late).collect(),
                        quarantine: Vec::new(),
                    }
                })
        }
    }

    /// Records an app event, idempotently by `event_id` within its slate.
    pub fn event(&self, ev: EventRequest) -> Result<EventAck, SlateError> {
        if ev.event_id.is_empty() || ev.event_id.len() > 128 {
            return Err(FieldError::new("event_id", "must be 1..=128 bytes").into());
        }
        let now = self.clock.unix();
        let pending = (self.pending_slates.as_ref())
            .and_then(|p| p.get(&ev.slate_id, now))
            .transpose()?;
        let record = match pending {
            Some(record) => Some(record),
            None => self.store.slate(&ev.slate_id, now)?,
        };
        let record = record.ok_or_else(|| {
            SlateError::NotFound(FieldError::new(
                "slate_id",
                format!(
                    "no slate {:?} (unknown or older than the retention period)",
                    ev.slate_id
                ),
            ))
        })?;
        let offer = record
            .offers
            .iter()
            .find(|o| o.partner == ev.partner && o.offer_id == ev.offer_id)
            .ok_or_else(|| {
                SlateError::Invalid(FieldError::new(
                    "offer_id",
                    format!(
                        "slate {} has no offer {:?} from partner {:?}",
                        ev.slate_id, ev.offer_id, ev.partner
                    ),
                ))
            })?;
        let counts = ev.event_type == EventType::Impression && !self.config.slate.count_on_serve;
        let keys = if counts {
            CappedOffer {
                partner: &offer.partner,
                offer_id: &offer.offer_id,
                category: &offer.category,
            }
            .all_keys()
        } else {
            Vec::new()
        };
        let event_key = format!("{}|{}", record.slate_id, ev.event_id);
        // What the event is: sent again, it is a retry; with the same id but anything
        // else, an id reused by mistake, which would lose this event if taken for a retry.
        let what = format!("{} {}/{}", ev.event_type.name(), ev.partner, ev.offer_id);
        let recorded = match self.store.record_event(
            &event_key,
            &what,
            &record.subject,
            &keys,
            now,
            self.retention,
        )? {
            Reservation::Made => Recorded::New,
            Reservation::Seen { what: earlier } if !earlier.is_empty() && earlier != what => {
                return Err(SlateError::Conflict(FieldError::new(
                    "event_id",
                    format!(
                        "{:?} was already used in slate {} for {earlier}, not {what}: give each event an id of its own",
                        ev.event_id, ev.slate_id
                    ),
                )));
            }
            // No limits were asked for, so none can be reached.
            Reservation::Seen { .. } | Reservation::Capped => Recorded::Duplicate,
        };
        self.metrics
            .events
            .get_or_create(&EventLabels {
                r#type: ev.event_type.name(),
                recorded: match recorded {
                    Recorded::New => "new",
                    Recorded::Duplicate => "duplicate",
                },
            })
            .inc();
        if recorded == Recorded::New {
            self.count_event(&record, offer, ev.event_type);
        }
        Ok(EventAck {
            recorded,
            counted_for_caps: counts && recorded == Recorded::New,
        })
    }
}

impl EventType {
    /// The kebab-case name.
    pub fn name(self) -> &'static str {
        match self {
            EventType::Impression => "impression",
            EventType::Click => "click",
            EventType::Conversion => "conversion",
        }
    }
}

impl SlateService {
    /// Aggregates of a new event.
    fn count_event(&self, record: &SlateRecord, offer: &ServedOffer, kind: EventType) {
        let fields: &[(&'static str, u64)] = match kind {
            EventType::Impression => &[(field::IMPRESSIONS, 1), (field::SPEND, offer.value_minor)],
            EventType::Click => &[(field::CLICKS, 1)],
            EventType::Conversion => &[(field::CONVERSIONS, 1)],
        };
        let cell = Cell {
            partner: &offer.partner,
            plugin: &offer.plugin,
            version: &offer.plugin_version,
            offer: &offer.offer_id,
            placement: &record.placement,
            tier: &record.tier,
            stage: &record.stage,
        };
        self.aggregates.add(
            &crate::report::agg_bucket(&self.local_day(self.clock.now())),
            &cell.row(),
            fields,
            Some(&record.subject.0),
        );
        if !offer.arm.is_empty() {
            self.aggregates.add(
                &crate::report::arm_bucket(&format!("{}/{}", offer.partner, offer.plugin)),
                &offer.arm,
                fields,
                None,
            );
        }
    }

    /// The secret partner-report noise derives from: the configured seed, else one
    /// random secret kept in the store and shared by every replica.
    pub async fn noise_secret(&self) -> Result<Vec<u8>, crate::store::StoreError> {
        if let Some(seed) = &self.config.reports.noise_seed {
            return Ok(seed.as_bytes().to_vec());
        }
        if let Some(secret) = self.noise_secret.get() {
            return Ok(secret.clone());
        }
        const KEY: &str = "report-noise-secret";
        let secret = self
            .io(|s| {
                if let Some(found) = s.blob(KEY)? {
                    return Ok(found);
                }
                let mut fresh = vec![0u8; 32];
                getrandom::fill(&mut fresh).map_err(|e| {
                    crate::store::StoreError::Backend(format!("no randomness: {e}"))
                })?;
                // Replicas racing here all keep the first one stored.
                s.put_blob_if_absent(KEY, &fresh)
            })
            .await?;
        Ok(self.noise_secret.get_or_init(|| secret).clone())
    }

    /// Writes pending aggregates to the store; on failure keeps them for the next try.
    pub async fn flush_aggregates(&self) -> Result<(), crate::store::StoreError> {
        // Held until the write lands: a report flushes before it reads the store, and
        // must not read it while the once-a-second flush's counts are still on the way.
        let _one = self.flushing.lock().await;
        self.settle().await;
        let (retention, offset) = (
            self.config.reports.retention_days,
            self.config.utc_offset_minutes,
        );
        let adds = (self.aggregates).take(|b| crate::report::agg_expiry(b, retention, offset));
        if adds.is_empty() {
            return Ok(());
        }
        let shared = Arc::new(adds);
        let batch = shared.clone();
        let result = self.io(move |s| s.add_counters(&batch)).await;
        if result.is_err() {
            let adds = Arc::try_unwrap(shared).unwrap_or_else(|a| (*a).clone());
            self.aggregates.restore(adds);
        }
        result
    }

    /// Writes the slate records still held in memory (embedded store) now, rather than
    /// within [`records::WRITE_EVERY`].
    pub fn flush_slates(&self) -> Result<(), crate::store::StoreError> {
        self.pending_slates
            .as_ref()
            .map_or(Ok(()), records::PendingSlates::flush)
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// A placement's series of the slate metrics, made when the service starts (so they show,
/// at zero, before its first slate): a slate updates them without building and hashing
/// label sets.
struct PlacementMetrics {
    seconds: prometheus_client::metrics::histogram::Histogram,
    served: prometheus_client::metrics::counter::Counter,
    empty: prometheus_client::metrics::counter::Counter,
    suppressed: prometheus_client::metrics::counter::Counter,
}

impl PlacementMetrics {
    fn new(metrics: &Metrics, placement: &str) -> PlacementMetrics {
        let slates = |result| {
            let labels = SlateLabels {
                placement: placement.to_string(),
                result,
            };
            metrics.slates.get_or_create(&labels).clone()
        };
        PlacementMetrics {
            seconds: (metrics.slate_seconds)
                .get_or_create(&PlacementOnly {
                    placement: placement.to_string(),
                })
                .clone(),
            served: slates("served"),
            empty: slates("empty"),
            suppressed: slates("suppressed"),
        }
    }

    /// Counts `slate`, answered after `seconds`.
    fn observe(&self, slate: &Slate, seconds: f64) {
        self.seconds.observe(seconds);
        let result = if slate.suppressed.is_some() {
            &self.suppressed
        } else if slate.offers.is_empty() {
            &self.empty
        } else {
            &self.served
        };
        result.inc();
    }
}

/// What a slate adds to metrics and aggregates beyond its calls (counted as they finish):
/// its runs' drops and served offers, and each run's call and slate value.
struct Tally {
    metrics: Arc<Metrics>,
    aggregates: Arc<Aggregator>,
    /// Run index, offer id and value of each offer served.
    served: Vec<(usize, String, u64)>,
    placement: String,
    subject: SubjectKey,
    tier: &'static str,
    stage: &'static str,
    /// The issuer-local day the slate was served.
    day: time::Date,
}

impl Tally {
    fn count(&self, runs: &[rank::PluginRun]) {
        let placement = self.placement.as_str();
        let day = crate::report::agg_bucket(&day_string(self.day));
        for run in runs {
            // One metric update per reason, not per bid.
            let mut by_reason: Vec<(DropReason, u64)> = Vec::new();
            for d in &run.dropped {
                match by_reason.iter_mut().find(|(r, _)| *r == d.reason) {
                    Some((_, n)) => *n += 1,
                    None => by_reason.push((d.reason, 1)),
                }
            }
            for (reason, n) in by_reason {
                if reason == DropReason::Capped {
                    self.metrics
                        .caps_hit
                        .get_or_create(&PlacementLabels {
                            partner: run.plugin.partner.clone(),
                            placement: placement.to_string(),
                        })
                        .inc_by(n);
                }
                run.variant.metrics.dropped(reason, n);
            }
        }
        // One lock for the slate's dozen additions.
        let mut agg = self.aggregates.batch();
        let mut slate_value = vec![0u64; runs.len()];
        let mut served = vec![0u64; runs.len()];
        for (i, offer, value) in &self.served {
            let run = &runs[*i];
            slate_value[*i] += value;
            run.variant.metrics.served(placement);
            let cell = Cell {
                partner: &run.plugin.partner,
                plugin: &run.variant.info.name,
                version: &run.variant.version,
                offer,
                placement,
                tier: self.tier,
                stage: self.stage,
            };
            agg.add(
                &day,
                &cell.row(),
                &[(field::SERVED, 1), (field::VALUE_SERVED, *value)],
                Some(&self.subject.0),
            );
            served[*i] += 1;
        }
        // One update per call's arm row: the call itself, then what it got into the slate.
        for ((run, value), served) in runs.iter().zip(slate_value).zip(served) {
            let [a, b, c, d, e, f] = call_fields(&run.outcome, run.fuel_used, run.latency);
            let fields = [
                a,
                b,
                c,
                d,
                e,
                f,
                (field::SLATE_VALUE, value),
                (field::SLATE_VALUE_SQ, value.saturating_mul(value)),
                (field::SERVED, served),
            ];
            // A run that served nothing adds no `served` field, as before.
            let fields = if served > 0 {
                &fields[..]
            } else {
                &fields[..8]
            };
            agg.add(&run.plugin.arm_bucket, &run.variant.arm_row, fields, None);
        }
    }
}

/// `d` as `YYYY-MM-DD`.
fn day_string(d: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
}

/// The label of a slate whose customer has no tier or stage.
const UNKNOWN: &str = "unknown";

/// A call's own fields of its arm row.
fn call_fields(outcome: &Outcome, fuel: u64, latency: Duration) -> [(&'static str, u64); 6] {
    let us = latency.as_micros() as u64;
    [
        (field::CALLS, 1),
        (field::FAILURES, crate::registry::is_failure(outcome) as u64),
        (field::FUEL, fuel),
        (field::FUEL_SQ, fuel.saturating_mul(fuel)),
        (field::LATENCY_US, us),
        (field::LATENCY_US_SQ, us.saturating_mul(us)),
    ]
}

/// `sl_`, the serve time in microseconds (low 48 bits, 12 hex digits), then 64
/// unguessable bits. The embedded store files each record under the millisecond its id
/// names, so slates of the same moment are written together; keep this form, or give
/// the store another way to find a record's window.
fn new_slate_id(subject: &SubjectKey, nanos: i128) -> String {
    use std::hash::{BuildHasher, RandomState};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let h = SEED
        .get_or_init(RandomState::new)
        .hash_one((&subject.0, nanos, n));
    let micros = (nanos / 1000) as u64 & 0xffff_ffff_ffff;
    format!("sl_{micros:012x}{h:016x}")
}
