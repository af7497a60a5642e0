//! The sandbox: compiles plugin components once and runs every call in a fresh store and
//! instance, under [`Limits`].
//!
//! A fresh instance per call is a privacy guarantee, not only a safety one: nothing a
//! plugin keeps in memory (a static, a cache, a counter) survives from one customer's
//! request to the next. The pooling allocator and pre-instantiation keep this cheap.
//!
//! ```no_run
//! use offerhost::model::{Channel, Features};
//! use offerhost::sandbox::{Limits, Sandbox, SandboxConfig};
//!
//! let sandbox = Sandbox::new(&SandboxConfig::default())?;
//! let plugin = sandbox.load(&std::fs::read("plugin.wasm")?)?;
//! let features: Features = serde_json::from_str(r#"{"placement": "app-home"}"#)?;
//! let report = sandbox.bid(&plugin, &features, &Default::default(), &Limits::default());
//! println!("{}: {:?}", report.outcome, report.value);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bindings;
mod epoch;
mod limits;
mod outcome;
mod store;
mod wasi_io;

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};

use crate::model::{self, Bid, Features, PluginInfo};
pub use bindings::{BIDDER_EXPORT, WIT_VERSION};
use bindings::{OfferPlugin, OfferPluginPre};
pub use epoch::TICK;
pub use limits::{EngineLimits, LimitOverrides, Limits};
pub use outcome::{CallReport, Cost, LogLevel, LogLine, Outcome};
use store::CallState;
pub use store::{FIXED_WALL_CLOCK_SECS, PluginConfig};

/// How the engine is set up. One per process.
#[derive(Debug, Clone, Default)]
pub struct SandboxConfig {
    /// Engine-wide maxima.
    pub engine: EngineLimits,
}

/// Why a component cannot be loaded. Each says what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not WebAssembly at all.
    #[error("not a WebAssembly file (it does not start with the `\\0asm` magic bytes)")]
    NotWasm,
    /// A core module, not a component.
    #[error(
        "this is a core WebAssembly module, not a component: build the plugin with \
         `cargo build --release --target wasm32-wasip2` as a `cdylib`"
    )]
    NotAComponent,
    /// The component targets another world.
    #[error(
        "the component does not target the offerhost:plugin/offer-plugin@{WIT_VERSION} world: {0}"
    )]
    WrongWorld(String),
    /// The component targets a version of the contract this host does not support.
    #[error("the component targets offerhost:plugin@{found}, this host supports @{WIT_VERSION}")]
    UnsupportedVersion {
        /// The version the component exports.
        found: String,
    },
    /// Wasmtime rejected or failed to compile it.
    #[error("the component failed to compile: {0}")]
    Compile(String),
}

/// Why the sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The engine configuration was rejected.
    #[error("cannot configure the WebAssembly engine: {0}")]
    Engine(String),
    /// The epoch thread could not start.
    #[error("cannot start the epoch ticker thread: {0}")]
    Ticker(#[from] std::io::Error),
}

/// Something to do, once, if a call is still running after a while: for example, ask
/// another thread to take over the calls waiting behind it. It runs on the call's own
/// thread, between two instructions of the plugin, so it must be quick.
pub struct SlowCall {
    /// How long the call may run first (rounded up to whole epoch ticks).
    pub after: Duration,
    /// What to do then.
    pub then: Box<dyn FnOnce() + Send + Sync>,
}

/// A compiled, pre-instantiated plugin. Cheap to clone and share across threads.
#[derive(Clone)]
pub struct Plugin {
    pre: OfferPluginPre<CallState>,
    component: Component,
}

/// The engine, the linker and the epoch ticker.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<CallState>,
    engine_limits: EngineLimits,
    _ticker: epoch::EpochTicker,
}

impl Sandbox {
    /// Builds the engine with the pooling allocator sized from `config`.
    pub fn new(config: &SandboxConfig) -> Result<Self, SandboxError> {
        let limits = config.engine;
        let pool = pooling_config(&limits);

        let mut cfg = Config::new();
        cfg.wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(limits.max_wasm_stack_bytes as usize)
            // Same input, same output, on any machine.
            .cranelift_nan_canonicalization(true)
            .relaxed_simd_deterministic(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&cfg).map_err(|e| SandboxError::Engine(format!("{e:#}")))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .and_then(|()| wasi_io::add_to_linker(&mut linker))
            .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
        OfferPlugin::add_to_linker::<_, HasSelf<CallState>>(&mut linker, |s| s)
            .map_err(|e| SandboxError::Engine(format!("{e:#}")))?;

        let ticker = epoch::EpochTicker::start(&engine)?;
        Ok(Sandbox {
            engine,
            linker,
            engine_limits: limits,
            _ticker: ticker,
        })
    }

    /// The engine-wide maxima.
    pub fn engine_limits(&self) -> EngineLimits {
        self.engine_limits
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Checks that `bytes` is a component for the plugin world, compiles it and
    /// pre-instantiates it.
    pub fn load(&self, bytes: &[u8]) -> Result<Plugin, LoadError> {
        if !bytes.starts_with(b"\0asm") {
            return Err(LoadError::NotWasm);
        }
        if !wasmparser::Parser::is_component(bytes) {
            return Err(LoadError::NotAComponent);
        }
        let component = Component::from_binary(&self.engine, bytes)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        self.prepare(component)
    }

    /// The native artifact of a loaded plugin, for [`Sandbox::load_precompiled`]: the
    /// code [`Sandbox::load`] already compiled, serialized, not compiled again.
    pub fn precompiled(&self, plugin: &Plugin) -> Result<Vec<u8>, LoadError> {
        plugin
            .component
            .serialize()
            .map_err(|e| LoadError::Compile(format!("{e:#}")))
    }

    /// A key that changes whenever this engine could not load another engine's
    /// precompiled artifacts (wasmtime version, target, settings).
    pub fn compatibility_key(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut h);
        format!("{:016x}", h.finish())
    }

    /// Loads an artifact made by [`Sandbox::precompiled`] on a compatible engine.
    ///
    /// The bytes must come from this host's own store (keyed by digest and
    /// [`Sandbox::compatibility_key`]): deserializing native code is trusted input.
    pub fn load_precompiled(&self, artifact: &[u8]) -> Result<Plugin, LoadError> {
        // SAFETY: artifacts are produced by `precompiled` on an engine with the same
        // compatibility key and read back from the host's own store, never from a plugin
        // author; wasmtime additionally checks the header for compatibility.
        let component = unsafe { Component::deserialize(&self.engine, artifact) }
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        self.prepare(component)
    }

    fn prepare(&self, component: Component) -> Result<Plugin, LoadError> {
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        if !exports.iter().any(|n| n == BIDDER_EXPORT) {
            if let Some(other) = exports
                .iter()
                .find_map(|n| n.strip_prefix("offerhost:plugin/bidder@"))
            {
                return Err(LoadError::UnsupportedVersion {
                    found: other.to_string(),
                });
            }
            return Err(LoadError::WrongWorld(format!(
                "it does not export `{BIDDER_EXPORT}` (it exports: {})",
                list_or_nothing(&exports)
            )));
        }
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            let imports: Vec<String> = ty
                .imports(&self.engine)
                .map(|(n, _)| n.to_string())
                .collect();
            LoadError::WrongWorld(format!(
                "it imports something the host does not provide ({e}); a plugin may import only \
                 offerhost:plugin/host and capability-free WASI (it imports: {})",
                list_or_nothing(&imports)
            ))
        })?;
        let pre = OfferPluginPre::new(pre).map_err(|e| {
            LoadError::WrongWorld(format!(
                "its `{BIDDER_EXPORT}` export has the wrong shape: {e:#}"
            ))
        })?;
        Ok(Plugin { pre, component })
    }

    /// Calls `describe` in a fresh instance.
    pub fn describe(&self, plugin: &Plugin, limits: &Limits) -> CallReport<PluginInfo> {
        self.call(plugin, Arc::default(), limits, None, |store, instance| {
            let info = instance.offerhost_plugin_bidder().call_describe(store)?;
            Ok(Ok(PluginInfo::from(info)))
        })
    }

    /// Calls `bid` in a fresh instance with `features` and the plugin's `config`, and
    /// checks the answer against the output limits. Individual bids are not validated
    /// here; see [`Bid::check`].
    pub fn bid(
        &self,
        plugin: &Plugin,
        features: &Features,
        config: &Arc<PluginConfig>,
        limits: &Limits,
    ) -> CallReport<Vec<Bid>> {
        self.bid_watched(plugin, features.clone(), config, limits, None)
    }

    /// [`Sandbox::bid`] with features of this call's own, doing `slow` if the call runs
    /// longer than `slow.after`.
    pub fn bid_watched(
        &self,
        plugin: &Plugin,
        features: Features,
        config: &Arc<PluginConfig>,
        limits: &Limits,
        slow: Option<SlowCall>,
    ) -> CallReport<Vec<Bid>> {
        let features = bindings::wit::Features::from(features);
        let mut report = self.call(plugin, config.clone(), limits, slow, |store, instance| {
            let answer = instance
                .offerhost_plugin_bidder()
                .call_bid(store, &features)?;
            Ok(match answer {
                Ok(bids) => Ok(bids.into_iter().map(Bid::from).collect::<Vec<_>>()),
                Err(e) => Err(model::PluginError::from(e)),
            })
        });
        if let Some(bids) = &report.value {
            let bytes: u64 = bids.iter().map(|b| b.string_bytes() as u64).sum();
            report.cost.output_bytes = bytes;
            let problem = if bids.len() > limits.max_bids as usize {
                Some(format!(
                    "{} bids, the limit is {}",
                    bids.len(),
                    limits.max_bids
                ))
            } else if bytes > limits.max_output_bytes {
                Some(format!(
                    "{bytes} bytes of strings, the limit is {}",
                    limits.max_output_bytes
                ))
            } else {
                None
            };
            if let Some(reason) = problem {
                report.outcome = Outcome::InvalidOutput { reason };
                report.value = None;
            }
        }
        report
    }

    fn call<T>(
        &self,
        plugin: &Plugin,
        config: Arc<PluginConfig>,
        limits: &Limits,
        slow: Option<SlowCall>,
        f: impl FnOnce(
            &mut Store<CallState>,
            &OfferPlugin,
        ) -> wasmtime::Result<Result<T, model::PluginError>>,
    ) -> CallReport<T> {
        let limits = self.clamp(limits);
        let started = Instant::now();
        let mut store = Store::new(&self.engine, CallState::new(config, &limits));
        store.limiter(|s| &mut s.limiter);
        // Setting fuel cannot fail: fuel is enabled on the engine.
        let _ = store.set_fuel(limits.fuel);
        let tick = TICK.as_millis() as u64;
        let ticks = limits.deadline_ms.div_ceil(tick) + 1;
        // With `slow`, stop at its first tick, do what was asked, then go on to the
        // deadline; a `slow` due no sooner than the deadline is never done.
        let slow = slow.map(|slow| {
            let first = (slow.after.as_millis() as u64).div_ceil(tick).max(1);
            (first, slow.then)
        });
        match slow {
            Some((first, then)) if first < ticks => {
                let mut then = Some(then);
                store.set_epoch_deadline(first);
                store.epoch_deadline_callback(move |_| {
                    Ok(match then.take() {
                        Some(then) => {
                            then();
                            UpdateDeadline::Continue(ticks - first)
                        }
                        None => UpdateDeadline::Interrupt,
                    })
                });
            }
            _ => {
                store.set_epoch_deadline(ticks);
                store.epoch_deadline_trap();
            }
        }

        let result = match plugin.pre.instantiate(&mut store) {
            Ok(instance) => f(&mut store, &instance).map_err(CallError::Call),
            Err(e) => Err(CallError::Instantiate(e)),
        };

        let fuel_left = store.get_fuel().unwrap_or(0);
        let state = store.data();
        let mut cost = Cost {
            fuel_used: limits.fuel.saturating_sub(fuel_left),
            peak_memory_bytes: state.limiter.peak_memory as u64,
            // Set below, once the instance is torn down.
            wall_time_us: 0,
            log_lines: state.logs.len() as u32,
            log_bytes: state.log_bytes,
            output_bytes: 0,
        };
        let (outcome, value) = match result {
            Ok(Ok(value)) => (Outcome::Ok, Some(value)),
            Ok(Err(error)) => (Outcome::PluginError { error }, None),
            Err(e) => (classify(e, state), None),
        };
        if value.is_none() {
            cost.output_bytes = 0;
        }
        let logs = std::mem::take(&mut store.data_mut().logs);
        // Tearing the instance down (resetting its pool slot) is part of the call's cost.
        drop(store);
        cost.wall_time_us = rounded_micros(started.elapsed());
        CallReport {
            outcome,
            value,
            cost,
            logs,
        }
    }

    /// Limits above the engine's maxima are brought down to them.
    fn clamp(&self, limits: &Limits) -> Limits {
        Limits {
            memory_bytes: limits.memory_bytes.min(self.engine_limits.max_memory_bytes),
            ..*limits
        }
    }
}

/// The pooling allocator as the sandbox sets it up for `limits`: slots for
/// `max_concurrent_instances` plugin instances, and memory reset tuned for short calls.
pub fn pooling_config(limits: &EngineLimits) -> PoolingAllocationConfig {
    let slots = limits.max_concurrent_instances.max(1);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(slots)
        .total_core_instances(slots * 8)
        .total_memories(slots * 2)
        .total_tables(slots * 4)
        .max_memories_per_component(4)
        .max_tables_per_component(8)
        .max_core_instances_per_component(16)
        .max_memory_size(limits.max_memory_bytes as usize)
        // Reset the first pages of a slot with memset instead of returning them to
        // the kernel: every call touches them again, and page faults from parallel
        // calls contend on the process's memory map.
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(64 << 10)
        // Where the kernel can say which pages a call wrote (Linux 6.7+), reset only
        // those rather than every resident page.
        .pagemap_scan(wasmtime::Enabled::Auto)
        .decommit_batch_size(32);
    pool
}

enum CallError {
    Instantiate(wasmtime::Error),
    Call(wasmtime::Error),
}

fn classify(error: CallError, state: &CallState) -> Outcome {
    let (error, instantiating) = match error {
        CallError::Instantiate(e) => (e, true),
        CallError::Call(e) => (e, false),
    };
    if state.log_exceeded {
        return Outcome::LogLimit;
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => return Outcome::FuelExhausted,
        Some(Trap::Interrupt) => return Outcome::Deadline,
        _ => {}
    }
    if state.limiter.memory_denied {
        return Outcome::MemoryLimit;
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        let mut message = trap.to_string();
        if let Some(panic) = state.panic_message() {
            message = format!("{message}; plugin said: {panic}");
        }
        return Outcome::Trap { message };
    }
    if instantiating {
        return Outcome::InstantiationFailed {
            message: format!("{error:#}"),
        };
    }
    Outcome::Trap {
        message: format!("{error:#}"),
    }
}

/// `d` in whole microseconds, rounded to the nearest: truncating would undercount every
/// call by half a microsecond on average, which adds up in per-plugin totals.
fn rounded_micros(d: Duration) -> u64 {
    ((d.as_nanos() + 500) / 1000) as u64
}

fn list_or_nothing(names: &[String]) -> String {
    if names.is_empty() {
        "nothing".to_string()
    } else {
        names.join(", ")
    }
}
