//! The runtime floor against the host's own per-plugin call path, in one run.
//!
//! - `floor`: bare wasmtime. A pooling engine with wasmtime's default pool settings, the
//!   component pre-instantiated, then per iteration a new store with a default WASI
//!   context, instantiate, one `bid` call. Nothing else: no fuel, no epoch deadline, no
//!   limiter, no output checks.
//! - `floor-same-pool`: the same, on a pool set up exactly as the sandbox's
//!   ([`offerhost::sandbox::pooling_config`]), so it differs from `host` only by what the
//!   host adds per call.
//! - `host`: `Sandbox::bid` on the same component and features, with every limit on.
//!
//! `cargo bench -p offerhost --bench call_path`; the ratio host / floor-same-pool is the
//! host's own per-call cost (target: at most 1.5), host / floor what the pool tuning and
//! the host together give against wasmtime out of the box.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use offerhost::model::Features;
use offerhost::sandbox::{EngineLimits, Limits, Sandbox, SandboxConfig, pooling_config};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

// The allocator the `offerhost` binary runs with, for the floor and the host path alike.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bare {
    wasmtime::component::bindgen!({ path: "../wit", world: "offer-plugin" });
}
use bare::offerhost::plugin as wit;
use bare::{OfferPlugin, OfferPluginPre};

struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wit::types::Host for Bare {}

impl wit::host::Host for Bare {
    fn log(&mut self, _: wit::host::LogLevel, _: String) {}
    fn config(&mut self, _: String) -> Option<String> {
        None
    }
}

fn features() -> Features {
    serde_json::from_str(
        r#"{"tier": "mass", "affinities": [{"category": "grocery", "weight": 0.5}],
            "placement": "app-home", "channel": "mobile-app"}"#,
    )
    .unwrap()
}

/// A bare engine over `pool` and the minimal plugin, pre-instantiated.
fn bare(pool: PoolingAllocationConfig) -> (Engine, OfferPluginPre<Bare>) {
    let mut cfg = Config::new();
    cfg.wasm_component_model(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&cfg).unwrap();
    let mut linker: Linker<Bare> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    OfferPlugin::add_to_linker::<_, HasSelf<Bare>>(&mut linker, |s| s).unwrap();
    let bytes = offerhost_plugin_artifacts::HOSTILE_MINIMAL.bytes;
    let component = Component::from_binary(&engine, bytes).unwrap();
    let pre = OfferPluginPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
    (engine, pre)
}

/// One bare call: new store, default WASI context, instantiate, `bid`.
fn bare_call(
    engine: &Engine,
    pre: &OfferPluginPre<Bare>,
    features: &wit::types::Features,
) -> impl Sized {
    let mut store = Store::new(
        engine,
        Bare {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
        },
    );
    let instance = pre.instantiate(&mut store).unwrap();
    instance
        .offerhost_plugin_bidder()
        .call_bid(&mut store, features)
        .unwrap()
}

fn bench(c: &mut Criterion) {
    let bytes = offerhost_plugin_artifacts::HOSTILE_MINIMAL.bytes;
    let (engine, pre) = bare(PoolingAllocationConfig::default());
    let (same_engine, same_pre) = bare(pooling_config(&EngineLimits::default()));
    let wit_features = wit::types::Features {
        tier: Some(wit::types::Tier::Mass),
        lifecycle: None,
        rfm: None,
        affinities: vec![wit::types::Affinity {
            category: "grocery".into(),
            weight: 0.5,
        }],
        cobrand_holder: None,
        region: None,
        placement: "app-home".into(),
        channel: wit::types::Channel::MobileApp,
        context: None,
        segments: vec![],
    };

    let sandbox = Sandbox::new(&SandboxConfig::default()).unwrap();
    let plugin = sandbox.load(bytes).unwrap();
    let host_features = features();
    let config = Default::default();
    let limits = Limits::default();

    let mut group = c.benchmark_group("call_path");
    group.bench_function("floor", |b| {
        b.iter(|| black_box(bare_call(&engine, &pre, &wit_features)))
    });
    group.bench_function("floor-same-pool", |b| {
        b.iter(|| black_box(bare_call(&same_engine, &same_pre, &wit_features)))
    });
    group.bench_function("host", |b| {
        b.iter(|| {
            let report = sandbox.bid(&plugin, &host_features, &config, &limits);
            assert!(report.outcome.is_ok());
            black_box(report)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
