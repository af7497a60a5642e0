//! Wiring: configuration in, a running service out.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;

use crate::api::{AppState, app};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::registry::{Actor, Registry, Role};
use crate::sandbox::{Sandbox, SandboxConfig};
use crate::slate::SlateService;
use crate::store::{RedisStore, SledStore, Store};

/// Builds the service from `config` on `store` with `clock`: starts the sandbox, opens
/// the registry and seeds it from the configuration's partners. It calls plugins, so
/// call it outside an async runtime (or on a blocking thread).
pub fn build(
    config: Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<AppState> {
    let sandbox = Arc::new(Sandbox::new(&SandboxConfig {
        engine: config.engine,
    })?);
    let registry = Arc::new(Registry::open(
        store.clone(),
        sandbox,
        clock.clone(),
        config.limits,
        config.registry,
        config.quarantine,
    )?);
    registry.bootstrap(&config)?;
    Ok(Arc::new(SlateService::new(config, registry, store, clock)))
}

/// Builds the service on the store the configuration names (Redis when `store_url` is
/// set, else sled at `store_path`), with the system clock.
pub fn build_default(config: Config) -> anyhow::Result<AppState> {
    let store: Arc<dyn Store> = match &config.store_url {
        Some(url) => Arc::new(
            RedisStore::open(url, &config.store_prefix)
                .with_context(|| format!("opening the Redis store at {url}"))?,
        ),
        None => Arc::new(
            SledStore::open(&config.store_path)
                .with_context(|| format!("opening the store at {}", config.store_path.display()))?,
        ),
    };
    build(config, store, Arc::new(SystemClock))
}

/// How often a replica checks the shared registry for changes made elsewhere.
pub const REGISTRY_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// How often expired slates, old event ids and expired report rows are swept from the
/// store (the embedded one; Redis expires them itself).
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// Runs `job` every `period` for the life of the runtime.
fn every<F, Fut>(period: std::time::Duration, mut job: F)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            job().await;
        }
    });
}

/// Sweeps the store now and then, off the async threads.
fn sweep_store(state: &AppState) {
    let state = state.clone();
    every(SWEEP_EVERY, move || {
        let state = state.clone();
        async move {
            let now = state.clock.unix();
            let retention = state.cap_retention();
            let store = state.store().clone();
            // A blocking thread even for the embedded store, whose `io` runs inline: a
            // sweep walks whole trees, which takes seconds on a large store.
            let swept = tokio::task::spawn_blocking(move || {
                (store.sweep(now), store.sweep_caps(now, retention))
            });
            let Ok((swept, caps)) = swept.await else {
                tracing::warn!("store sweep task failed");
                return;
            };
            for (result, what) in [
                (swept, "expired slates, event ids and report rows"),
                (
                    caps,
                    "the cap records of subjects not seen inside the longest cap window",
                ),
            ] {
                match result {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(removed = n, "swept {what}"),
                    Err(e) => tracing::warn!(error = %e, "sweeping {what} failed"),
                }
            }
        }
    });
}

/// How often pending report aggregates are written to the store.
pub const AGGREGATE_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);

/// Writes pending aggregates to the store every [`AGGREGATE_FLUSH`].
fn flush_aggregates(state: &AppState) {
    let state = state.clone();
    every(AGGREGATE_FLUSH, move || {
        let state = state.clone();
        async move {
            if let Err(e) = state.flush_aggregates().await {
                tracing::warn!(error = %e, "writing aggregates failed; kept for the next try");
            }
        }
    });
}

/// Keeps `state`'s snapshot in step with registry changes made by other replicas.
fn watch_registry(state: &AppState) {
    let registry = state.registry().clone();
    every(REGISTRY_POLL, move || {
        let r = registry.clone();
        async move {
            match tokio::task::spawn_blocking(move || r.reload()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "registry reload failed"),
                Err(e) => tracing::warn!(error = %e, "registry reload task failed"),
            }
        }
    });
}

/// Makes sure ops can get in: when the registry has no ops token, registers `token`
/// (or a fresh one) as the ops token `bootstrap-ops`. Returns the token when one was
/// created here.
pub fn ensure_ops_token(state: &AppState, token: Option<&str>) -> anyhow::Result<Option<String>> {
    let registry = state.registry();
    if has_ops_token(state) {
        return Ok(None);
    }
    let actor = Actor::system("bootstrap");
    let secret = match token {
        Some(t) => {
            registry.add_token(&actor, "bootstrap-ops", Role::Ops, None, t)?;
            t.to_string()
        }
        None => registry.create_token(&actor, "bootstrap-ops", Role::Ops, None)?,
    };
    Ok(Some(secret))
}

/// Whether any ops token is registered: without one nobody can manage the service.
pub fn has_ops_token(state: &AppState) -> bool {
    (state.registry().doc().1.tokens.values()).any(|t| t.role == Role::Ops)
}

/// Serves `state` on `listen` until SIGINT or SIGTERM, then flushes the store.
/// Prints `listening on ADDR` once the socket is bound (ADDR is the real port when
/// `listen` asks for port 0).
pub async fn serve(
    state: AppState,
    listen: &str,
    on_ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening");
    on_ready(addr);
    watch_registry(&state);
    sweep_store(&state);
    flush_aggregates(&state);
    axum::serve(listener, app(state.clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    if let Err(e) = state.flush_aggregates().await {
        tracing::error!(error = %e, "could not write the last aggregates");
    }
    if let Err(e) = state.flush_slates() {
        tracing::error!(error = %e, "could not write the last slate records");
    }
    state
        .store()
        .flush()
        .context("flushing the store on shutdown")?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
