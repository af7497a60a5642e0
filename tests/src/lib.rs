//! Helpers for the workspace-level integration tests: the `offerhost` binary, the compiled
//! plugins and a shared sandbox.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};

use offerhost::model::Features;
use offerhost::sandbox::{Limits, Plugin, PluginConfig, Sandbox, SandboxConfig};
pub use offerhost_plugin_artifacts::{self as artifacts, Artifact};
use serde_json::Value;

/// The `offerhost` binary that `cargo test --workspace` built next to this test binary.
/// Refuses one older than any of its sources (as cargo's dep-info file beside it lists
/// them): `cargo test -p offerhost-tests` alone does not rebuild it, and the CLI tests
/// would quietly run the old code.
pub fn offerhost_bin() -> PathBuf {
    static CHECKED: OnceLock<PathBuf> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("test binary path");
            // <target>/<profile>/deps/<test-binary>
            let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
            let bin = dir.join(format!("offerhost{}", std::env::consts::EXE_SUFFIX));
            let built = std::fs::metadata(&bin)
                .and_then(|m| m.modified())
                .unwrap_or_else(|_| {
                    panic!(
                        "{} is missing: run the tests with `cargo test --workspace` (it builds \
                         the binary)",
                        bin.display()
                    )
                });
            let dep_info = std::fs::read_to_string(bin.with_extension("d")).unwrap_or_default();
            if let Some((source, changed)) = newest_source(&dep_info)
                && changed > built
            {
                panic!(
                    "{} is older than {}: rebuild it with `cargo build -p offerhost`, or run \
                     the tests with `cargo test --workspace`",
                    bin.display(),
                    source.display()
                );
            }
            bin
        })
        .clone()
}

/// The most recently modified of the sources a cargo dep-info file (`target: src src
/// ...`) lists, and when; sources that no longer exist are skipped.
pub fn newest_source(dep_info: &str) -> Option<(PathBuf, std::time::SystemTime)> {
    let (_, sources) = dep_info.lines().next()?.split_once(": ")?;
    (sources.split_whitespace())
        .filter_map(|s| {
            let path = PathBuf::from(s);
            let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
            Some((path, modified))
        })
        .max_by_key(|(_, modified)| *modified)
}

/// A command for the `offerhost` binary.
pub fn offerhost() -> Command {
    Command::new(offerhost_bin())
}

/// Path of a request file shipped in `host/examples/requests/`.
pub fn example_request(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../host/examples/requests")
        .join(format!("{name}.json"))
}

/// Features parsed from a shipped example request.
pub fn example_features(name: &str) -> Features {
    let text = std::fs::read_to_string(example_request(name)).expect("example request");
    serde_json::from_str(&text).expect("example request parses")
}

/// What `offerhost plugin run` printed and how it exited.
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// The JSON document on stdout (`Null` when there was none).
    pub json: Value,
    /// stderr, for messages and failure output.
    pub stderr: String,
}

/// Runs `offerhost plugin run <component> --request <request> [args...]`.
pub fn plugin_run(component: &str, request: &std::path::Path, args: &[&str]) -> Run {
    let out: Output = offerhost()
        .args(["plugin", "run", component, "--request"])
        .arg(request)
        .args(args)
        .output()
        .expect("offerhost runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = if stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}"))
    };
    Run {
        code: out.status.code().expect("exited normally, not by a signal"),
        json,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// One sandbox for the whole test binary, as a server would have.
pub fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| Sandbox::new(&SandboxConfig::default()).expect("sandbox starts"))
}

/// Loads (compiles) an artifact into the shared sandbox, once per test binary.
pub fn load(artifact: Artifact) -> Plugin {
    static LOADED: OnceLock<Mutex<HashMap<&'static str, Plugin>>> = OnceLock::new();
    let loaded = LOADED.get_or_init(Default::default);
    if let Some(plugin) = loaded.lock().unwrap().get(artifact.package) {
        return plugin.clone();
    }
    let plugin = sandbox()
        .load(artifact.bytes)
        .unwrap_or_else(|e| panic!("{} loads: {e}", artifact.package));
    loaded
        .lock()
        .unwrap()
        .insert(artifact.package, plugin.clone());
    plugin
}

/// Plugin configuration from pairs.
pub fn config(pairs: &[(&str, &str)]) -> Arc<PluginConfig> {
    Arc::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

/// Default limits.
pub fn limits() -> Limits {
    Limits::default()
}

// ---------------------------------------------------------------------------------------
// The slate service, in process.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use offerhost::api::{AppState, app};
use offerhost::clock::ManualClock;
use offerhost::config::Config;
use offerhost::store::{SledStore, Store};
use tower::ServiceExt as _;

/// The ops token every test service and server accepts.
pub const OPS_TOKEN: &str = "test-ops-token-0123456789";

/// 2026-06-05T02:00:00Z: a Friday, 10:00 in the customers' UTC+8.
pub const T0: i64 = 1_780_624_800;

/// The four example partners on two placements, as TOML, plugin paths filled in.
pub fn example_config() -> String {
    format!(
        r#"
subject_salt = "test-salt"

[slate]
deadline_ms = 400

[limits]
deadline_ms = 100

[[placement]]
id = "app-home"
slots = 3
floor_minor = 20
excluded_categories = ["gambling"]

[[placement]]
id = "checkout"
slots = 2
floor_minor = 100
excluded_categories = ["travel"]

[[partner]]
id = "skyways"
weight = 1.2
allow = ["tier", "affinities", "cobrand_holder", "context", "segments"]
segments = ["frequent-flyer"]
plugin = "{airline}"

[[partner]]
id = "freshmart"
allow = ["tier", "affinities", "context"]
plugin = "{grocer}"

[[partner]]
id = "mall"
weight = 0.9
allow = ["tier", "rfm", "affinities"]
placements = ["app-home"]
plugin = "{reactivation}"

[[partner]]
id = "voltmart"
allow = ["lifecycle", "affinities", "region"]
plugin = "{electronics}"
"#,
        airline = artifacts::AIRLINE.path,
        grocer = artifacts::GROCER.path,
        reactivation = artifacts::REACTIVATION.path,
        electronics = artifacts::ELECTRONICS.path,
    )
}

/// A running service (in process) and the handles tests steer it with.
pub struct Host {
    /// The service.
    pub state: AppState,
    /// Its clock.
    pub clock: ManualClock,
    /// Its store directory.
    pub store_dir: PathBuf,
}

/// Parses `toml` (paths absolute) into a config.
pub fn parse_config(toml: &str) -> Config {
    Config::parse(
        toml,
        Vec::<(String, String)>::new(),
        std::path::Path::new("/"),
    )
    .unwrap_or_else(|e| panic!("test config: {e}"))
}

/// Starts the service from `toml` on a sled store in `store_dir`, clock at [`T0`].
pub fn host_on(toml: &str, store_dir: &std::path::Path) -> Host {
    let store = Arc::new(SledStore::open(store_dir).expect("sled opens"));
    host_with_store(toml, store, store_dir)
}

/// Starts the service from `toml` on `store`.
pub fn host_with_store(toml: &str, store: Arc<dyn Store>, store_dir: &std::path::Path) -> Host {
    let clock = ManualClock::at(T0);
    let config = parse_config(toml);
    let service_clock = Arc::new(clock.clone());
    // Building deploys (and smoke-calls) plugins, which must not run on an async
    // runtime's thread: tests call this from inside one.
    let state = std::thread::scope(|s| {
        s.spawn(|| offerhost::server::build(config, store, service_clock))
            .join()
            .expect("build thread")
    })
    .unwrap_or_else(|e| panic!("service builds: {e:#}"));
    offerhost::server::ensure_ops_token(&state, Some(OPS_TOKEN)).expect("ops token");
    Host {
        state,
        clock,
        store_dir: store_dir.to_path_buf(),
    }
}

impl Host {
    /// Sends one request through the router as ops; returns status and JSON body.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(Some(OPS_TOKEN), method, path, body).await
    }

    /// Sends one request with `token` (or none).
    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send(req.body(body).unwrap()).await
    }

    /// Sends a prepared request, adding the ops token unless it has one.
    pub async fn send(&self, mut req: Request<Body>) -> (StatusCode, Value) {
        if !req.headers().contains_key("authorization") {
            req.headers_mut().insert(
                "authorization",
                format!("Bearer {OPS_TOKEN}").parse().unwrap(),
            );
        }
        let res = app(self.state.clone())
            .oneshot(req)
            .await
            .expect("router answers");
        let status = res.status();
        let is_json = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.starts_with("application/json"));
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let json = if bytes.is_empty() {
            Value::Null
        } else if !is_json {
            // A text answer (`/metrics`) comes back as one JSON string.
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{status}: body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        (status, json)
    }

    /// GETs `path` as ops; returns status and the body as text (for `/metrics`).
    pub async fn text(&self, path: &str) -> (StatusCode, String) {
        let req = Request::builder().uri(path).body(Body::empty()).unwrap();
        let res = app(self.state.clone())
            .oneshot(req)
            .await
            .expect("router answers");
        let status = res.status();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    /// `POST /v1/slates`, expecting 200.
    pub async fn slate(&self, body: Value) -> Value {
        let (status, json) = self.call("POST", "/v1/slates", Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        json
    }

    /// `POST /v1/events` for an impression of `offer` (a slate offer object) in `slate`.
    pub async fn impression(
        &self,
        slate: &Value,
        offer: &Value,
        event_id: &str,
    ) -> (StatusCode, Value) {
        self.call(
            "POST",
            "/v1/events",
            Some(serde_json::json!({
                "event_id": event_id,
                "type": "impression",
                "slate_id": slate["slate_id"],
                "partner": offer["partner"],
                "offer_id": offer["offer"]["id"],
            })),
        )
        .await
    }
}

/// `(partner, offer id)` of each offer in a slate, in rank order.
pub fn offers_of(slate: &Value) -> Vec<(String, String)> {
    slate["offers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["partner"].as_str().unwrap().to_string(),
                o["offer"]["id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A profile that every example partner but the win-back bids on: high-value traveller
/// who also buys electronics on installments and groceries.
pub fn traveller_profile() -> Value {
    serde_json::json!({
        "days_since_last_purchase": 2,
        "purchases_90d": 40,
        "spend_90d_minor": 2500000,
        "category_spend_share": {"travel": 0.45, "grocery": 0.3, "electronics": 0.25},
        "tier": "high-value",
        "lifecycle": "revolving-installment-eligible",
        "region": "CN-SH-PD",
        "cobrand_cards": ["skyways"],
        "marketing_consent": true,
        "segments": ["frequent-flyer", "young-professional"]
    })
}

// ---------------------------------------------------------------------------------------
// Real `offerhost` server processes.

/// A running `offerhost serve` or `offerhost demo` process, killed on drop.
pub struct ServerProcess {
    child: std::process::Child,
    /// `http://ADDR`.
    pub base: String,
    /// Everything the process printed on stdout up to readiness.
    pub banner: String,
    /// Token `post` sends.
    pub token: String,
}

impl ServerProcess {
    /// Starts `offerhost <args>` and waits for its `listening on ADDR` line. The process
    /// gets [`OPS_TOKEN`] as its bootstrap ops token.
    pub fn start(args: &[&str]) -> ServerProcess {
        Self::start_with(args, Some(OPS_TOKEN))
    }

    /// Like [`ServerProcess::start`], with `bootstrap` as `OFFERHOST_BOOTSTRAP_TOKEN`
    /// (none: the server makes its own).
    pub fn start_with(args: &[&str], bootstrap: Option<&str>) -> ServerProcess {
        Self::spawn(args, bootstrap, None)
    }

    /// Like [`ServerProcess::start`], with logs at `info` written to `log`.
    pub fn start_logging(args: &[&str], log: &std::path::Path) -> ServerProcess {
        Self::spawn(args, Some(OPS_TOKEN), Some(log))
    }

    fn spawn(
        args: &[&str],
        bootstrap: Option<&str>,
        log: Option<&std::path::Path>,
    ) -> ServerProcess {
        use std::io::BufRead as _;
        let mut cmd = offerhost();
        cmd.env_remove("OFFERHOST_BOOTSTRAP_TOKEN");
        if let Some(t) = bootstrap {
            cmd.env("OFFERHOST_BOOTSTRAP_TOKEN", t);
        }
        let stderr = match log {
            Some(path) => {
                cmd.env("RUST_LOG", "info");
                std::process::Stdio::from(std::fs::File::create(path).expect("log file"))
            }
            None => std::process::Stdio::inherit(),
        };
        let mut child = cmd
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("offerhost starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut banner = String::new();
            let mut sent = false;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                banner.push_str(&line);
                banner.push('\n');
                if !sent && line.starts_with("listening on ") {
                    let addr = line.trim_start_matches("listening on ").to_string();
                    let _ = tx.send((addr, banner.clone()));
                    sent = true;
                }
                // Keep draining so the child never blocks on a full pipe; finish the
                // banner for the demo, which prints its requests after the address.
                if sent && line.starts_with("Stop with") {
                    let _ = tx.send((String::new(), banner.clone()));
                }
            }
        });
        let (addr, mut banner) = rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the server printed `listening on ADDR`");
        if let Ok((_, full)) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
            banner = full;
        }
        ServerProcess {
            child,
            base: format!("http://{addr}"),
            banner,
            token: OPS_TOKEN.to_string(),
        }
    }

    /// POSTs JSON with this process's token; returns status and JSON body.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_as(Some(&self.token), path, body)
    }

    /// Stops the process with SIGTERM (a graceful shutdown) and waits for it.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client that returns 4xx and 5xx answers instead of failing on them.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// What an admin CLI command printed and how it exited.
pub struct CliRun {
    /// Exit code.
    pub code: i32,
    /// stdout as JSON (`Null` if empty or not JSON).
    pub json: Value,
    /// stderr.
    pub stderr: String,
}

/// Runs `offerhost <args>` against `server` with `token`.
pub fn admin_cli(server: &ServerProcess, token: Option<&str>, args: &[&str]) -> CliRun {
    let mut cmd = offerhost();
    cmd.args(args)
        .env("OFFERHOST_SERVER", &server.base)
        .env_remove("OFFERHOST_TOKEN");
    if let Some(t) = token {
        cmd.env("OFFERHOST_TOKEN", t);
    }
    let out = cmd.output().expect("offerhost runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    CliRun {
        code: out.status.code().unwrap_or(-1),
        json: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl ServerProcess {
    /// GETs a path with `token`; returns status and JSON body.
    pub fn get_as(&self, token: Option<&str>, path: &str) -> (u16, Value) {
        let (status, _, text) = self.get_text(token, path);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// GETs a path; returns status, content type and the body as text.
    pub fn get_text(&self, token: Option<&str>, path: &str) -> (u16, String, String) {
        let agent = agent();
        let mut req = agent.get(&format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.header("authorization", &format!("Bearer {t}"));
        }
        let mut res = req.call().expect("request reaches the server");
        let status = res.status().as_u16();
        let kind = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (status, kind, res.body_mut().read_to_string().unwrap())
    }

    /// POSTs JSON with `token` (or none).
    pub fn post_as(&self, token: Option<&str>, path: &str, body: &Value) -> (u16, Value) {
        let agent = agent();
        let mut req = agent
            .post(&format!("{}{path}", self.base))
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", &format!("Bearer {t}"));
        }
        let mut res = req
            .send(body.to_string())
            .expect("request reaches the server");
        let status = res.status().as_u16();
        let text = res.body_mut().read_to_string().unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// The value of the Prometheus sample `name{labels}` in `text` (labels exactly as
/// printed, without braces; empty for none), or 0 when absent.
pub fn metric(text: &str, name: &str, labels: &str) -> f64 {
    let key = if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(key.as_str())?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("a number"))
        .unwrap_or(0.0)
}

/// The sum of every sample of `name` whose labels contain all of `having`.
pub fn metric_sum(text: &str, name: &str, having: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let labels = series.strip_prefix(name)?;
            if !(labels.is_empty() || labels.starts_with('{')) {
                return None;
            }
            having
                .iter()
                .all(|h| labels.contains(h))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

// ---------------------------------------------------------------------------------------
// A Redis server for the tests.

/// A `redis-server` on a free loopback port, started once per test binary and stopped
/// when the binary exits. Returns its URL. Each test should use its own key prefix.
pub fn redis_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        start_redis(port, &[], None);
        wait_for_port(port);
        format!("redis://127.0.0.1:{port}/")
    })
    .clone()
}

/// A three-node Redis Cluster on loopback (no replicas), started once per test binary
/// and stopped, its directory removed, when the binary exits. Returns its
/// `redis-cluster://` URL.
pub fn redis_cluster_url() -> String {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary directory").keep();
        STARTED.lock().unwrap().dirs.push(dir.clone());
        let mut ports = Vec::new();
        for _ in 0..3 {
            let port = cluster_port(&ports);
            let config = format!("nodes-{port}.conf");
            start_redis(
                port,
                &["--cluster-enabled", "yes", "--cluster-config-file", &config],
                Some(&dir),
            );
            ports.push(port);
        }
        for port in &ports {
            wait_for_port(*port);
        }
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-cli ({e}): install redis-tools (.ci/run does)")
            });
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        // The cluster is usable once every node agrees that all slots are served.
        let started = std::time::Instant::now();
        for port in &ports {
            loop {
                let info = Command::new("redis-cli")
                    .args(["-p", &port.to_string(), "cluster", "info"])
                    .output()
                    .expect("redis-cli runs");
                if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    started.elapsed() < std::time::Duration::from_secs(20),
                    "the Redis Cluster did not become ready"
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        format!("redis-cluster://{}", nodes.join(","))
    })
    .clone()
}

/// Redis servers the tests started and their directories: stopped and removed at exit.
struct Started {
    pids: Vec<u32>,
    dirs: Vec<PathBuf>,
}

static STARTED: std::sync::Mutex<Started> = std::sync::Mutex::new(Started {
    pids: Vec::new(),
    dirs: Vec::new(),
});

/// Starts `redis-server` on loopback `port` (no persistence) with `extra` arguments, in
/// `dir` if given. It is recorded before anything else can fail, so it is stopped at
/// exit whatever happens next.
fn start_redis(port: u16, extra: &[&str], dir: Option<&std::path::Path>) {
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    AT_EXIT.call_once(|| {
        unsafe extern "C" {
            fn atexit(f: extern "C" fn()) -> i32;
        }
        // SAFETY: registering a plain function with the C runtime's exit hooks.
        unsafe { atexit(stop_redis) };
    });
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ])
    .args(extra)
    .stdout(std::process::Stdio::null());
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    let child = cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot start redis-server ({e}): install it (`apt-get install redis-server`; .ci/run does) to run the Redis tests")
    });
    STARTED.lock().unwrap().pids.push(child.id());
    // Leaked on purpose: it must outlive every test; `stop_redis` kills it at exit.
    std::mem::forget(child);
}

extern "C" fn stop_redis() {
    let Ok(started) = STARTED.lock() else { return };
    for pid in &started.pids {
        let _ = Command::new("kill").arg(pid.to_string()).status();
    }
    for dir in &started.dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A free loopback port whose cluster bus port (+10000) is free too.
fn cluster_port(taken: &[u16]) -> u16 {
    let start = std::process::id() % 9_000;
    (0..9_000u32)
        .map(|i| (20_000 + (start + i * 7) % 9_000) as u16)
        .find(|p| {
            !taken.contains(p)
                && std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", *p + 10_000)).is_ok()
        })
        .expect("a free port pair for a Redis Cluster node")
}

fn wait_for_port(port: u16) {
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "redis-server on {port} did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A fresh key prefix for one test.
pub fn unique_prefix(name: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "t{}:{name}:{}:",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    /// `newest_source` goes by modification time over the sources a dep-info file
    /// lists, and only those.
    #[test]
    fn the_newest_listed_source_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str, secs: u64| {
            let path = dir.path().join(name);
            let f = std::fs::File::create(&path).unwrap();
            f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
                .unwrap();
            path.display().to_string()
        };
        let (a, b, c) = (
            at("a.rs", 2_000_000_000),
            at("b.rs", 2_000_000_100),
            at("c.rs", 1_000_000_000),
        );
        at("unlisted.rs", 2_000_000_200);
        let gone = dir.path().join("gone.rs").display().to_string();
        let dep_info = format!("/target/debug/offerhost: {a} {b} {gone} {c}\n\n{a}:\n");
        let (path, when) = super::newest_source(&dep_info).unwrap();
        assert_eq!(path.display().to_string(), b);
        assert_eq!(
            when,
            SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_100)
        );
        assert!(super::newest_source("").is_none());
    }
}
