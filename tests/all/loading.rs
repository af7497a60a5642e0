//! What the host says about files that are not offer plugins.

use offerhost::sandbox::LoadError;
use offerhost_tests::{artifacts, example_request, plugin_run, sandbox};

#[test]
fn a_component_for_another_world_is_refused_with_what_it_exports() {
    let err = sandbox()
        .load(artifacts::HOSTILE_WRONG_WORLD.bytes)
        .err()
        .unwrap();
    assert!(matches!(err, LoadError::WrongWorld(_)), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("offerhost:plugin/bidder@0.1.0"),
        "{message}"
    );
    assert!(message.contains("wasi:cli/run"), "{message}");

    let run = plugin_run(
        artifacts::HOSTILE_WRONG_WORLD.path,
        &example_request("high-value-traveller"),
        &[],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("does not target the offerhost:plugin/offer-plugin@0.1.0 world"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_core_module_is_refused_with_how_to_build_a_component() {
    // The smallest valid core module: magic and version 1.
    let core = b"\0asm\x01\0\0\0";
    let err = sandbox().load(core).err().unwrap();
    assert!(matches!(err, LoadError::NotAComponent), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("core.wasm");
    std::fs::write(&path, core).unwrap();
    let run = plugin_run(
        path.to_str().unwrap(),
        &example_request("high-value-traveller"),
        &[],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("core WebAssembly module, not a component"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("wasm32-wasip2"), "{}", run.stderr);
}

#[test]
fn garbage_and_truncated_files_are_refused() {
    assert!(matches!(
        sandbox().load(b"MZ\x90\0 not wasm").err().unwrap(),
        LoadError::NotWasm
    ));
    let airline = artifacts::AIRLINE.bytes;
    let truncated = &airline[..airline.len() / 2];
    let err = sandbox().load(truncated).err().unwrap();
    assert!(matches!(err, LoadError::Compile(_)), "{err}");

    let run = plugin_run(
        "/nonexistent/plugin.wasm",
        &example_request("high-value-traveller"),
        &[],
    );
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("cannot read component /nonexistent/plugin.wasm"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_plugin_built_for_another_contract_version_is_refused() {
    // Rewrite the export name's version inside the component; same length, so the
    // binary stays well-formed and only the version differs.
    let bytes = artifacts::AIRLINE.bytes;
    let from = b"offerhost:plugin/bidder@0.1.0";
    let to = b"offerhost:plugin/bidder@0.9.0";
    let mut patched = bytes.to_vec();
    let mut replaced = 0;
    let mut i = 0;
    while i + from.len() <= patched.len() {
        if &patched[i..i + from.len()] == from {
            patched[i..i + from.len()].copy_from_slice(to);
            replaced += 1;
        }
        i += 1;
    }
    assert!(replaced > 0);
    match sandbox().load(&patched) {
        Err(LoadError::UnsupportedVersion { found }) => assert_eq!(found, "0.9.0"),
        Err(LoadError::Compile(m)) => panic!("expected a version error, got compile error {m}"),
        other => panic!("expected a version error, got {:?}", other.err()),
    }
}
