//! The binary's own surface. (The plugin, sandbox and API tests live in the workspace's
//! `tests/` crate; having this file also makes `cargo test --workspace` build the
//! `offerhost` binary those tests run.)

use std::process::Command;

fn offerhost() -> Command {
    Command::new(env!("CARGO_BIN_EXE_offerhost"))
}

#[test]
fn version_and_top_level_help() {
    let out = offerhost().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("offerhost "));

    let out = offerhost().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("plugin"), "{help}");
}

#[test]
fn unknown_subcommand_is_a_usage_error() {
    let out = offerhost().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("frobnicate"));
}
