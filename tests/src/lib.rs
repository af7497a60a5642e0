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
pub fn offerhost_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // <target>/<profile>/deps/<test-binary>
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join(format!("offerhost{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (it builds the binary)",
        bin.display()
    );
    bin
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
