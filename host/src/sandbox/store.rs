//! What one call's store holds: a capability-free WASI context, the limiter, the log
//! buffer and the plugin's configuration; and the two functions the host exports.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::random::Deterministic;
use wasmtime_wasi::{
    HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

use super::bindings::offerhost::plugin::{host, types};
use super::limits::{CallLimiter, Limits};
use super::outcome::{LogLevel, LogLine};

/// Per-plugin configuration set by ops, read-only for the plugin.
pub type PluginConfig = BTreeMap<String, String>;

/// What plugins read from the wall clock: 2024-01-01T00:00:00Z, always.
pub const FIXED_WALL_CLOCK_SECS: u64 = 1_704_067_200;

/// Most random bytes a plugin may ask for at once; more traps.
const MAX_RANDOM_BYTES: u64 = 64 * 1024;

/// Bytes of a panic message kept from the plugin's stderr.
const STDERR_CAPACITY: usize = 2048;

pub(crate) struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: CallLimiter,
    config: Arc<PluginConfig>,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) log_bytes: u64,
    log_budget: u64,
    pub(crate) log_exceeded: bool,
    pub(crate) stderr: MemoryOutputPipe,
}

impl CallState {
    pub(crate) fn new(config: Arc<PluginConfig>, limits: &Limits) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        // No preopens, no env, no args, no network, no name lookup: WasiCtxBuilder grants
        // none of them unless asked. Clocks and randomness are replaced so a run depends
        // on nothing but its input.
        let wasi = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .wall_clock(FixedWallClock)
            .monotonic_clock(FixedMonotonicClock)
            .secure_random(Deterministic::new(vec![0x5e, 0xed]))
            .insecure_random(Deterministic::new(vec![0x5e, 0xed]))
            .insecure_random_seed(0)
            // The host makes these bytes in a loop the call's deadline cannot stop
            // (WASI's default allows 64 MiB, seconds of work); a plugin needs a few.
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        CallState {
            wasi,
            table: ResourceTable::new(),
            limiter: CallLimiter {
                memory_limit: usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX),
                ..CallLimiter::default()
            },
            config,
            logs: Vec::new(),
            log_bytes: 0,
            log_budget: limits.max_log_bytes,
            log_exceeded: false,
            stderr,
        }
    }

    /// The plugin's panic message, if it printed one before trapping.
    pub(crate) fn panic_message(&self) -> Option<String> {
        let bytes = self.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        (!text.is_empty()).then(|| text.replace('\n', " "))
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for CallState {}

/// Raised from `log` to stop a plugin that spent its log budget.
#[derive(Debug, thiserror::Error)]
#[error("plugin exceeded its log budget")]
pub(crate) struct LogBudgetExceeded;

impl host::Host for CallState {
    fn log(&mut self, level: host::LogLevel, message: String) -> wasmtime::Result<()> {
        let len = message.len() as u64;
        if self.log_bytes + len > self.log_budget {
            self.log_exceeded = true;
            return Err(LogBudgetExceeded.into());
        }
        self.log_bytes += len;
        let level = match level {
            host::LogLevel::Debug => LogLevel::Debug,
            host::LogLevel::Info => LogLevel::Info,
            host::LogLevel::Warn => LogLevel::Warn,
            host::LogLevel::Error => LogLevel::Error,
        };
        self.logs.push(LogLine { level, message });
        Ok(())
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
}

struct FixedWallClock;

impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::from_secs(FIXED_WALL_CLOCK_SECS)
    }
}

struct FixedMonotonicClock;

impl HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}
