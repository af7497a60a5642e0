//! Builds every plugin under `plugins/` (examples and hostile fixtures) into a
//! `wasm32-wasip2` component with the workspace's `plugin` profile, then writes
//! `artifacts.rs` into `OUT_DIR` with one constant per component.
//!
//! The nested cargo uses its own target directory (`target/plugins`) so it never waits on
//! the lock of the cargo that runs this script.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";
const PROFILE: &str = "plugin";

struct Plugin {
    package: String,
    /// File stem cargo gives the output: lib crates use underscores, bins keep dashes.
    stem: String,
    example: bool,
}

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let plugins_dir = manifest_dir.parent().unwrap().to_path_buf();
    let workspace = plugins_dir.parent().unwrap().to_path_buf();

    // Directories are scanned whole, so a new plugin crate triggers a rebuild too.
    for dir in ["wit", "sdk", "plugins"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }

    let mut plugins = Vec::new();
    for (dir, example) in plugin_dirs(&plugins_dir) {
        plugins.push(read_plugin(&dir, example));
    }
    plugins.sort_by(|a, b| a.package.cmp(&b.package));

    ensure_target_installed();

    let target_dir = workspace.join("target").join("plugins");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .arg("build")
        .arg("--target")
        .arg(TARGET)
        .arg("--profile")
        .arg(PROFILE)
        .arg("--target-dir")
        .arg(&target_dir);
    for p in &plugins {
        cmd.arg("-p").arg(&p.package);
    }
    // Flags meant for the host build must not leak into the wasm build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_LLVM_COV",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("could not run cargo to build the plugins: {e}"));
    if !status.success() {
        panic!(
            "building the plugins for {TARGET} failed ({status}). If the target is missing, \
             run `rustup target add {TARGET}`."
        );
    }

    let out_wasm = target_dir.join(TARGET).join(PROFILE);
    let mut code = String::new();
    let mut examples = String::new();
    let mut all = String::new();
    for p in &plugins {
        let path = out_wasm.join(format!("{}.wasm", p.stem));
        assert!(path.exists(), "cargo did not produce {}", path.display());
        let konst = p
            .package
            .trim_start_matches("plugin-")
            .replace('-', "_")
            .to_uppercase();
        writeln!(
            code,
            "/// Component built from the `{}` package.\npub const {konst}: Artifact = Artifact {{ package: {:?}, path: {:?}, bytes: include_bytes!({:?}) }};",
            p.package,
            p.package,
            path.display().to_string(),
            path.display().to_string(),
        )
        .unwrap();
        writeln!(all, "    {konst},").unwrap();
        if p.example {
            writeln!(examples, "    {konst},").unwrap();
        }
    }
    writeln!(
        code,
        "/// The example partner plugins.\npub const EXAMPLES: &[Artifact] = &[\n{examples}];"
    )
    .unwrap();
    writeln!(
        code,
        "/// Every component, examples and hostile fixtures.\npub const ALL: &[Artifact] = &[\n{all}];"
    )
    .unwrap();
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("artifacts.rs");
    fs::write(out, code).unwrap();
}

/// Adds the wasm target through rustup when the toolchain lacks it, so that a plain
/// `cargo test --workspace` works on a fresh machine.
fn ensure_target_installed() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let libdir = Command::new(&rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if libdir.is_some_and(|d| d.exists()) {
        return;
    }
    println!("cargo:warning=the {TARGET} target is missing; running `rustup target add {TARGET}`");
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status()
        .is_ok_and(|s| s.success());
    if !added {
        panic!(
            "the {TARGET} target is not installed and rustup could not add it: run `rustup target add {TARGET}`"
        );
    }
}

/// Plugin crates: `plugins/<name>/` (examples) and `plugins/hostile/<name>/` (fixtures).
fn plugin_dirs(plugins_dir: &Path) -> Vec<(PathBuf, bool)> {
    let mut dirs = Vec::new();
    for (base, example) in [
        (plugins_dir.to_path_buf(), true),
        (plugins_dir.join("hostile"), false),
    ] {
        for entry in fs::read_dir(&base).unwrap() {
            let path = entry.unwrap().path();
            let is_self = path.file_name().is_some_and(|n| n == "artifacts");
            if path.join("Cargo.toml").exists() && !is_self {
                dirs.push((path, example));
            }
        }
    }
    dirs
}

fn read_plugin(dir: &Path, example: bool) -> Plugin {
    let manifest: toml::Table = fs::read_to_string(dir.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let package = manifest["package"]["name"].as_str().unwrap().to_string();
    let is_bin = manifest.contains_key("bin");
    let stem = if is_bin {
        package.clone()
    } else {
        package.replace('-', "_")
    };
    Plugin {
        package,
        stem,
        example,
    }
}
