//! Per-call limits and the resource limiter that enforces the memory limit.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What one plugin call may use. Every field has a documented default; ops may lower or
/// raise them per plugin up to the engine's maxima ([`EngineLimits`]).
///
/// What a malicious plugin can still do inside these limits: burn its fuel and its
/// deadline (one core for up to `deadline`), fill its memory, and return at most
/// `max_bids` bids of `max_output_bytes`. It cannot reach anything outside its instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Fuel (roughly one unit per WebAssembly instruction) for instantiation plus the
    /// call. Default 20 000 000, a few milliseconds of work; the example plugins use
    /// well under 1 % of it. Exceeding it: outcome `fuel-exhausted`.
    pub fuel: u64,
    /// Wall-clock deadline for instantiation plus the call, in milliseconds, enforced by
    /// epoch interruption with a 1 ms tick (so a call is stopped between `deadline_ms`
    /// and `deadline_ms + 2`). Default 50. Exceeding it: outcome `deadline`.
    pub deadline_ms: u64,
    /// Linear memory per instance, bytes. Default 32 MiB. Growing past it fails inside
    /// the plugin (its allocator aborts): outcome `memory-limit`.
    pub memory_bytes: u64,
    /// Most bids one call may return. Default 64. More: outcome `invalid-output`, all
    /// bids of the call dropped.
    pub max_bids: u32,
    /// Most bytes of strings (ids, titles, categories, currencies) one call may return.
    /// Default 64 KiB. More: outcome `invalid-output`.
    pub max_output_bytes: u64,
    /// Most bytes of log messages one call may write. Default 4 KiB. The line that
    /// crosses it stops the plugin: outcome `log-limit`.
    pub max_log_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: 20_000_000,
            deadline_ms: 50,
            memory_bytes: 32 << 20,
            max_bids: 64,
            max_output_bytes: 64 << 10,
            max_log_bytes: 4 << 10,
        }
    }
}

impl Limits {
    /// The deadline as a duration.
    pub fn deadline(&self) -> Duration {
        Duration::from_millis(self.deadline_ms)
    }
}

/// One plugin's limits where they differ from the service's defaults (`[limits]`): each
/// field given replaces the default, each left out follows it. (An override that spelt
/// out every field would pin the defaults of the day it was made; one that filled the
/// gaps with built-in defaults would quietly loosen a tighter `[limits]`.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// [`Limits::fuel`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// [`Limits::deadline_ms`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// [`Limits::memory_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// [`Limits::max_bids`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bids: Option<u32>,
    /// [`Limits::max_output_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
    /// [`Limits::max_log_bytes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_log_bytes: Option<u64>,
}

impl LimitOverrides {
    /// `defaults` with these overrides applied.
    pub fn over(&self, defaults: Limits) -> Limits {
        Limits {
            fuel: self.fuel.unwrap_or(defaults.fuel),
            deadline_ms: self.deadline_ms.unwrap_or(defaults.deadline_ms),
            memory_bytes: self.memory_bytes.unwrap_or(defaults.memory_bytes),
            max_bids: self.max_bids.unwrap_or(defaults.max_bids),
            max_output_bytes: self.max_output_bytes.unwrap_or(defaults.max_output_bytes),
            max_log_bytes: self.max_log_bytes.unwrap_or(defaults.max_log_bytes),
        }
    }

    /// The limits of a plugin with `overrides` (if any) under `defaults`.
    pub fn effective(overrides: Option<&LimitOverrides>, defaults: Limits) -> Limits {
        overrides.map_or(defaults, |o| o.over(defaults))
    }
}

/// Engine-wide maxima, fixed when the sandbox starts: they size the pooling allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineLimits {
    /// Largest `memory_bytes` any plugin may be given. Default 64 MiB.
    pub max_memory_bytes: u64,
    /// Plugin instances that may exist at once (pool slots). Default 128. A call that
    /// finds the pool full fails with outcome `instantiation-failed`.
    pub max_concurrent_instances: u32,
    /// WebAssembly stack per call, bytes. Default 512 KiB; deeper recursion traps.
    pub max_wasm_stack_bytes: u64,
}

impl Default for EngineLimits {
    fn default() -> Self {
        EngineLimits {
            max_memory_bytes: 64 << 20,
            max_concurrent_instances: 128,
            max_wasm_stack_bytes: 512 << 10,
        }
    }
}

/// Enforces `memory_bytes` and records the peak, so the outcome can say "memory limit"
/// rather than the plugin's own abort message.
#[derive(Debug, Default)]
pub(crate) struct CallLimiter {
    pub(crate) memory_limit: usize,
    pub(crate) peak_memory: usize,
    pub(crate) memory_denied: bool,
}

impl wasmtime::ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_denied = true;
            return Ok(false);
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
