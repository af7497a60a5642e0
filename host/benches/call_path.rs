//! The runtime floor against the host's own per-plugin call path, in one run.
//!
//! - `floor`: bare wasmtime. A pooling engine, the component pre-instantiated, then per
//!   iteration a new store with a default WASI context, instantiate, one `bid` call.
//!   Nothing else: no fuel, no epoch deadline, no limiter, no output checks.
//! - `host`: `Sandbox::bid` on the same component and features, with every limit on.
//!
//! `cargo bench -p offerhost --bench call_path`; the ratio host / floor is the number
//! to watch (target: at most 1.5).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use offerhost::model::Features;
use offerhost::sandbox::{Limits, Sandbox, SandboxConfig};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

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

fn bench(c: &mut Criterion) {
    let bytes = offerhost_plugin_artifacts::HOSTILE_MINIMAL.bytes;

    let mut cfg = Config::new();
    cfg.wasm_component_model(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(
            PoolingAllocationConfig::default(),
        ));
    let engine = Engine::new(&cfg).unwrap();
    let mut linker: Linker<Bare> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    OfferPlugin::add_to_linker::<_, HasSelf<Bare>>(&mut linker, |s| s).unwrap();
    let component = Component::from_binary(&engine, bytes).unwrap();
    let pre = OfferPluginPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
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
        b.iter(|| {
            let mut store = Store::new(
                &engine,
                Bare {
                    wasi: WasiCtx::builder().build(),
                    table: ResourceTable::new(),
                },
            );
            let instance = pre.instantiate(&mut store).unwrap();
            let bids = instance
                .offerhost_plugin_bidder()
                .call_bid(&mut store, &wit_features)
                .unwrap();
            black_box(bids)
        })
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
