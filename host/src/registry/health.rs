//! Per-plugin health: outcome counters, and automatic quarantine of a plugin whose
//! failure rate crosses a threshold over a sliding window.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Registry;
use crate::sandbox::Outcome;

/// When a plugin is quarantined automatically.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuarantinePolicy {
    /// Failure share (0..=1) that quarantines. Default 0.5. Failures are fuel, deadline,
    /// memory and log limits, traps and invalid output; not `ok`, not `plugin-error` (a
    /// plugin that says why it cannot bid is not broken), not `late` or
    /// `instantiation-failed` (the host's capacity, not the plugin's fault).
    pub failure_rate: f64,
    /// Calls in the window before the rate is judged. Default 20.
    pub min_calls: u32,
    /// Window length, seconds. Default 60.
    pub window_secs: u64,
}

impl Default for QuarantinePolicy {
    fn default() -> Self {
        QuarantinePolicy {
            failure_rate: 0.5,
            min_calls: 20,
            window_secs: 60,
        }
    }
}

#[derive(Default)]
pub(crate) struct PluginHealth {
    /// Per-second `(second, calls, failures)`, oldest first: bounded by the window
    /// length, whatever the call rate.
    window: VecDeque<(u64, u64, u64)>,
    calls: u64,
    failures: u64,
    exec_us: u64,
    outcomes: BTreeMap<&'static str, u64>,
    shadow_compared: u64,
    shadow_differed: u64,
    tripped: bool,
}

/// What ops see of a plugin's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HealthReport {
    /// `partner/plugin`.
    pub plugin: String,
    /// Outcomes by kind since this process started.
    pub outcomes: BTreeMap<String, u64>,
    /// Calls in the current window.
    pub window_calls: u64,
    /// Failures in the current window.
    pub window_failures: u64,
    /// Why it is quarantined, if it is.
    pub quarantined: Option<String>,
    /// Shadow calls compared with the active version.
    pub shadow_compared: u64,
    /// Of those, how many had a different top bid.
    pub shadow_differed: u64,
    /// The plugin's own time over every counted call (instantiation, call, teardown),
    /// microseconds.
    pub exec_us_total: u64,
}

/// Failures the plugin caused. `late` and `instantiation-failed` are the host's
/// capacity problems and do not count against a plugin.
pub(crate) fn is_failure(outcome: &Outcome) -> bool {
    !matches!(
        outcome,
        Outcome::Ok
            | Outcome::PluginError { .. }
            | Outcome::Late
            | Outcome::InstantiationFailed { .. }
    )
}

impl Registry {
    /// The health of plugin `key`, made on first use; deployments keep it with the
    /// plugin, so that counting a call locks only that plugin's.
    pub(crate) fn health_cell(&self, key: &str) -> HealthCell {
        let mut book = self.health.lock().unwrap_or_else(|p| p.into_inner());
        match book.get(key) {
            Some(cell) => cell.clone(),
            None => {
                let cell = HealthCell::default();
                book.insert(key.to_string(), cell.clone());
                cell
            }
        }
    }

    /// The health of plugin `key` if any has been kept.
    fn known_health(&self, key: &str) -> Option<HealthCell> {
        let book = self.health.lock().unwrap_or_else(|p| p.into_inner());
        book.get(key).cloned()
    }

    /// Counts one call's outcome in `health` (its plugin's, from [`Registry::health_cell`]),
    /// made at `now` (unix seconds; a slate reads the clock once for all its calls).
    /// Returns the quarantine reason when this call tipped the plugin over the threshold
    /// (the caller then quarantines it, off the hot path).
    pub(crate) fn record_outcome(
        &self,
        health: &HealthCell,
        outcome: &Outcome,
        exec_us: u64,
        now: u64,
    ) -> Option<String> {
        let policy = self.quarantine_policy;
        let mut h = health.lock();
        if let Some(count) = h.outcomes.get_mut(outcome.kind()) {
            *count += 1;
        } else {
            h.outcomes.insert(outcome.kind(), 1);
        }
        h.exec_us += exec_us;
        let failed = is_failure(outcome) as u64;
        // A slate reads the clock before its calls, so another slate's count may land
        // first with a later second: count into that bucket rather than behind it.
        match h.window.back_mut() {
            Some((second, calls, failures)) if *second >= now => {
                *calls += 1;
                *failures += failed;
            }
            _ => h.window.push_back((now, 1, failed)),
        }
        h.calls += 1;
        h.failures += failed;
        while let Some(&(second, calls, failures)) = h.window.front() {
            if second + policy.window_secs > now {
                break;
            }
            h.window.pop_front();
            h.calls -= calls;
            h.failures -= failures;
        }
        let (calls, failures) = (h.calls, h.failures);
        if h.tripped || calls < policy.min_calls as u64 {
            return None;
        }
        if failures as f64 >= policy.failure_rate * calls as f64 {
            h.tripped = true;
            return Some(format!(
                "{failures} of the last {calls} calls failed (threshold {:.0} % over {} s)",
                policy.failure_rate * 100.0,
                policy.window_secs
            ));
        }
        None
    }

    /// Counts one shadow comparison in `health` (the plugin's, from
    /// [`Registry::health_cell`]).
    pub(crate) fn record_shadow(&self, health: &HealthCell, differed: bool) {
        let mut h = health.lock();
        h.shadow_compared += 1;
        h.shadow_differed += differed as u64;
    }

    /// Forgets the failure window of `key` (after ops reinstate it, or when a
    /// quarantine could not be recorded).
    pub fn reset_health(&self, key: &str) {
        if let Some(cell) = self.known_health(key) {
            let mut h = cell.lock();
            h.window.clear();
            h.calls = 0;
            h.failures = 0;
            h.tripped = false;
        }
    }

    /// The health of plugin `key`.
    pub fn health(&self, key: &str) -> HealthReport {
        let quarantined = self
            .doc()
            .1
            .plugins
            .get(key)
            .and_then(|e| e.quarantined.clone());
        let cell = self.known_health(key).unwrap_or_default();
        let h = cell.lock();
        HealthReport {
            plugin: key.to_string(),
            outcomes: h
                .outcomes
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            window_calls: h.calls,
            window_failures: h.failures,
            quarantined,
            shadow_compared: h.shadow_compared,
            shadow_differed: h.shadow_differed,
            exec_us_total: h.exec_us,
        }
    }
}

/// One plugin's health, shared by the deployments that include it.
#[derive(Clone, Default)]
pub(crate) struct HealthCell(Arc<Mutex<PluginHealth>>);

impl HealthCell {
    fn lock(&self) -> MutexGuard<'_, PluginHealth> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Every plugin's health, by plugin key. Entries are never removed or replaced: the
/// deployments hold the cells, and a plugin's calls from an old snapshot and a new one
/// must count into the same one.
pub(crate) type HealthBook = HashMap<String, HealthCell>;
