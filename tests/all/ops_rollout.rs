//! Issuer ops deploy, canary, promote, roll back, disable, quarantine and reinstate a
//! plugin through the `offerhost` CLI against a running host; every bad upload is
//! refused and leaves the registry byte-for-byte unchanged; tokens are scoped.

use std::path::Path;

use offerhost_tests::{OPS_TOKEN, ServerProcess, admin_cli, artifacts};
use serde_json::{Value, json};

const CONFIG: &str = r#"
store_path = "store"
subject_salt = "ops-test"

[registry]
max_component_bytes = 1048576

[quarantine]
min_calls = 5
failure_rate = 0.5
window_secs = 2

[[placement]]
id = "app-home"
slots = 3
"#;

fn start(dir: &Path) -> ServerProcess {
    let config = dir.join("offerhost.toml");
    if !config.exists() {
        std::fs::write(&config, CONFIG).unwrap();
    }
    ServerProcess::start(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ])
}

fn ok(run: offerhost_tests::CliRun, what: &str) -> Value {
    assert_eq!(run.code, 0, "{what}: {}", run.stderr);
    run.json
}

/// A new app token's secret.
fn app_token(server: &ServerProcess, name: &str) -> String {
    let args = ["tokens", "create", name, "--role", "app"];
    ok(admin_cli(server, Some(OPS_TOKEN), &args), name)["token"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A slate for `subject` on app-home, asked for with `app`'s token (with diagnostics
/// when `debug`); fails the test unless it is answered.
fn acme_slate(server: &ServerProcess, app: &str, subject: &str, debug: bool) -> Value {
    let request = json!({
        "placement": "app-home",
        "subject": subject,
        "profile": {"tier": "mass", "marketing_consent": true},
        "debug": debug,
    });
    let (status, slate) = server.post_as(Some(app), "/v1/slates", &request);
    assert_eq!(status, 200, "{slate}");
    slate
}

/// The acme offer in `slate` and the version that made it.
fn acme_in(slate: &Value) -> Option<(String, String)> {
    let offers = slate["offers"].as_array().unwrap();
    offers.iter().find(|o| o["partner"] == "acme").map(|o| {
        (
            o["offer"]["id"].as_str().unwrap().to_string(),
            o["plugin_version"].as_str().unwrap().to_string(),
        )
    })
}

/// The acme offer a subject sees (None when acme has no offer in the slate).
fn acme_offer(server: &ServerProcess, app: &str, subject: &str) -> Option<(String, String)> {
    acme_in(&acme_slate(server, app, subject, false))
}

/// Like [`acme_offer`], with diagnostics: `None` only when acme's call ran out of time
/// (a wall-clock deadline, which a machine loaded by other tests can make a call miss).
/// Any other slate without acme's offer fails the test, with the slate.
fn acme_offer_unless_late(server: &ServerProcess, subject: &str) -> Option<(String, String)> {
    let slate = acme_slate(server, OPS_TOKEN, subject, true);
    if let Some(offer) = acme_in(&slate) {
        return Some(offer);
    }
    let diagnostics = slate["diagnostics"].as_array().unwrap();
    let call = diagnostics.iter().find(|d| d["partner"] == "acme");
    let outcome = call.and_then(|d| d["outcome"]["kind"].as_str());
    assert!(
        matches!(outcome, Some("deadline" | "late")),
        "acme did not bid, and not for lack of time: {slate}"
    );
    None
}

fn registry(server: &ServerProcess) -> Value {
    let (status, doc) = server.get_as(Some(OPS_TOKEN), "/v1/admin/registry");
    assert_eq!(status, 200);
    doc
}

#[test]
fn the_whole_ops_story_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let ops = Some(OPS_TOKEN);
    let v1 = artifacts::VERSIONED_V1.path;
    let v2 = artifacts::VERSIONED_V2.path;

    ok(
        admin_cli(
            &server,
            ops,
            &[
                "partners", "add", "acme", "--weight", "1.0", "--allow", "tier",
            ],
        ),
        "partner",
    );
    let app = app_token(&server, "app-1");

    // Upload v1: the first version becomes active and serves at once.
    let run = admin_cli(&server, ops, &["plugins", "upload", "acme", v1]);
    assert!(
        run.stderr.contains("acme/versioned 1.0.0 is active"),
        "{}",
        run.stderr
    );
    let meta = ok(run, "upload v1");
    assert_eq!(meta["version"], "1.0.0");
    assert_eq!(meta["digest"].as_str().unwrap().len(), 64);
    assert_eq!(
        acme_offer(&server, &app, "s-1"),
        Some(("v1-offer".into(), "1.0.0".into()))
    );

    // Upload v2: staged, nothing changes for customers, and the CLI says so.
    let run = admin_cli(&server, ops, &["plugins", "upload", "acme", v2]);
    assert!(
        run.stderr
            .contains("acme/versioned 2.0.0 is staged; 1.0.0 is active"),
        "{}",
        run.stderr
    );
    ok(run, "upload v2");
    assert_eq!(acme_offer(&server, &app, "s-1").unwrap().1, "1.0.0");

    // Canary 10 %: about a tenth of subjects get v2, each always the same version.
    ok(
        admin_cli(
            &server,
            ops,
            &[
                "plugins",
                "canary",
                "acme/versioned",
                "2.0.0",
                "--percent",
                "10",
            ],
        ),
        "canary",
    );
    let mut on_v2 = Vec::new();
    for i in 0..600 {
        let subject = format!("subject-{i}");
        let (offer, version) = acme_offer(&server, &app, &subject).unwrap();
        assert_eq!(
            offer,
            format!("v{}-offer", &version[..1]),
            "offer and version agree"
        );
        if version == "2.0.0" {
            on_v2.push(subject);
        }
    }
    assert!(
        (30..=90).contains(&on_v2.len()),
        "{} of 600 on the canary",
        on_v2.len()
    );
    for subject in on_v2.iter().take(20) {
        assert_eq!(
            acme_offer(&server, &app, subject).unwrap().1,
            "2.0.0",
            "sticky"
        );
    }

    // Promote: everyone on v2. Roll back: the very next slate is v1 again.
    ok(
        admin_cli(&server, ops, &["plugins", "promote", "acme/versioned"]),
        "promote",
    );
    assert_eq!(acme_offer(&server, &app, "subject-0").unwrap().1, "2.0.0");
    ok(
        admin_cli(&server, ops, &["plugins", "rollback", "acme/versioned"]),
        "rollback",
    );
    assert_eq!(acme_offer(&server, &app, "subject-0").unwrap().1, "1.0.0");
    let shown = ok(
        admin_cli(&server, ops, &["plugins", "show", "acme/versioned"]),
        "show",
    );
    assert_eq!(shown["active"], "1.0.0");
    assert_eq!(shown["canary"], Value::Null);

    // Kill switch, for the next request.
    ok(
        admin_cli(&server, ops, &["plugins", "disable", "acme/versioned"]),
        "disable",
    );
    assert_eq!(acme_offer(&server, &app, "subject-0"), None);
    ok(
        admin_cli(&server, ops, &["plugins", "enable", "acme/versioned"]),
        "enable",
    );
    assert!(acme_offer(&server, &app, "subject-0").is_some());

    // A config change breaks v2 in production; it is quarantined automatically.
    ok(
        admin_cli(
            &server,
            ops,
            &["plugins", "promote", "acme/versioned", "2.0.0"],
        ),
        "promote again",
    );
    // A setting the plugin itself calls bad is refused before it reaches a slate.
    let run = admin_cli(
        &server,
        ops,
        &["config", "set", "acme/versioned", "explode=banana"],
    );
    assert!(
        run.code != 0 && run.stderr.contains("rejects this configuration"),
        "{}",
        run.stderr
    );
    let shown = ok(
        admin_cli(&server, ops, &["plugins", "show", "acme/versioned"]),
        "show",
    );
    assert!(shown["config"].get("explode").is_none(), "{shown}");
    // So is a placement the service does not have.
    let path = "/v1/admin/plugins/acme/versioned/rollout";
    let (status, err) = server.post_as(
        ops,
        path,
        &json!({"action": "placements", "placements": ["app-home", "lobby"]}),
    );
    assert_eq!(status, 422, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown placement \"lobby\"; configured: app-home"),
        "{err}"
    );
    let entry = ok(
        admin_cli(
            &server,
            ops,
            &["plugins", "placements", "acme/versioned", "app-home"],
        ),
        "placements",
    );
    assert_eq!(entry["placements"], json!(["app-home"]));

    // Limits: each command changes only what it names; --clear drops them all.
    let limits = |args: &[&str]| {
        let run = admin_cli(
            &server,
            ops,
            &[&["plugins", "limits", "acme/versioned"], args].concat(),
        );
        ok(run, "limits")["limits"].clone()
    };
    assert_eq!(limits(&["--fuel", "5000000"]), json!({"fuel": 5_000_000}));
    assert_eq!(
        limits(&["--deadline-ms", "30", "--max-bids", "8"]),
        json!({"fuel": 5_000_000, "deadline_ms": 30, "max_bids": 8})
    );
    let too_big = admin_cli(
        &server,
        ops,
        &[
            "plugins",
            "limits",
            "acme/versioned",
            "--memory-bytes",
            "1099511627776",
        ],
    );
    assert_eq!(too_big.code, 1, "{}", too_big.stderr);
    assert!(
        too_big.stderr.contains("exceeds the issuer maximum"),
        "{}",
        too_big.stderr
    );
    let nothing = admin_cli(&server, ops, &["plugins", "limits", "acme/versioned"]);
    assert_eq!(nothing.code, 1, "{}", nothing.stderr);
    assert!(
        nothing.stderr.contains("name at least one limit"),
        "{}",
        nothing.stderr
    );
    assert_eq!(limits(&["--clear"]), Value::Null);
    ok(
        admin_cli(
            &server,
            ops,
            &["config", "set", "acme/versioned", "explode=true"],
        ),
        "config set",
    );
    // Let the healthy calls above leave the 2 s failure window.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    for i in 0..5 {
        assert_eq!(
            acme_offer(&server, &app, &format!("q-{i}")),
            None,
            "a panicking plugin shows nothing"
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let health = ok(
        admin_cli(&server, ops, &["plugins", "health", "acme/versioned"]),
        "health",
    );
    assert!(
        health["quarantined"]
            .as_str()
            .unwrap()
            .contains("5 of the last 5 calls failed"),
        "{health}"
    );
    assert_eq!(health["outcomes"]["trap"], 5);
    ok(
        admin_cli(
            &server,
            ops,
            &["config", "set", "acme/versioned", "--unset", "explode"],
        ),
        "fix config",
    );
    assert_eq!(
        acme_offer(&server, &app, "q-0"),
        None,
        "still quarantined until ops reinstate"
    );
    ok(
        admin_cli(&server, ops, &["plugins", "reinstate", "acme/versioned"]),
        "reinstate",
    );
    assert_eq!(acme_offer(&server, &app, "q-0").unwrap().1, "2.0.0");

    // The test route runs a chosen version without touching caps or counters.
    let request = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../host/examples/requests/lapsed-customer.json"
    );
    let tested = ok(
        admin_cli(
            &server,
            ops,
            &[
                "plugins",
                "test",
                "acme/versioned",
                "--request",
                request,
                "--version",
                "1.0.0",
            ],
        ),
        "test",
    );
    assert_eq!(tested["outcome"]["kind"], "ok");
    assert_eq!(tested["bids"][0]["offer"]["id"], "v1-offer");
    assert!(tested["cost"]["fuel_used"].as_u64().unwrap() > 0);

    // The audit log has every change, who did it, and the upload digests.
    let audit = ok(admin_cli(&server, ops, &["audit"]), "audit");
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for expected in [
        "partner",
        "token-create",
        "upload",
        "canary",
        "promote",
        "rollback",
        "disable",
        "enable",
        "config",
        "quarantine",
        "reinstate",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
    let quarantine = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "quarantine")
        .unwrap();
    assert_eq!(quarantine["actor"], "system");
    let upload = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "upload")
        .unwrap();
    assert_eq!(upload["actor"], "bootstrap-ops");
    assert_eq!(upload["digest"], meta["digest"]);

    // A restart keeps registry, rollout state and audit.
    let before = registry(&server);
    assert!(server.stop().success());
    let server = start(dir.path());
    assert_eq!(registry(&server), before);
    assert_eq!(acme_offer(&server, &app, "subject-0").unwrap().1, "2.0.0");
    let audit_after = ok(admin_cli(&server, ops, &["audit"]), "audit after restart");
    assert_eq!(audit_after, audit);
    // Read a few entries at a time, the whole log still comes back, newest included.
    let paged = ok(
        admin_cli(&server, ops, &["audit", "--page-size", "3"]),
        "audit in pages of 3",
    );
    assert!(audit.as_array().unwrap().len() > 6, "{audit}");
    assert_eq!(paged, audit);
}

#[test]
fn every_bad_upload_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let ops = Some(OPS_TOKEN);
    ok(
        admin_cli(&server, ops, &["partners", "add", "acme"]),
        "partner",
    );
    ok(
        admin_cli(
            &server,
            ops,
            &["plugins", "upload", "acme", artifacts::VERSIONED_V1.path],
        ),
        "v1",
    );

    let files = tempfile::tempdir().unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let p = files.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    let airline = artifacts::AIRLINE.bytes;
    let mut other_version = airline.to_vec();
    let (from, to) = (
        b"offerhost:plugin/bidder@0.1.0",
        b"offerhost:plugin/bidder@0.9.0",
    );
    for i in 0..other_version.len() - from.len() {
        if &other_version[i..i + from.len()] == from {
            other_version[i..i + from.len()].copy_from_slice(to);
        }
    }
    let cases: Vec<(String, &str)> = vec![
        (
            write("notes.txt", b"not wasm at all"),
            "not a WebAssembly file",
        ),
        (
            write("core.wasm", b"\0asm\x01\0\0\0"),
            "core WebAssembly module, not a component",
        ),
        (
            artifacts::HOSTILE_WRONG_WORLD.path.to_string(),
            "does not export `offerhost:plugin/bidder@0.1.0`",
        ),
        (
            write("future.wasm", &other_version),
            "targets offerhost:plugin@0.9.0",
        ),
        (
            write("truncated.wasm", &airline[..airline.len() / 2]),
            "failed to compile",
        ),
        (
            write("huge.wasm", &vec![0u8; 2 << 20]),
            "larger than this route accepts",
        ),
        (
            artifacts::VERSIONED_V1_REBUILT.path.to_string(),
            "already exists with different bytes",
        ),
        (
            artifacts::HOSTILE_LOOP.path.to_string(),
            "smoke call on sample features failed: fuel-exhausted",
        ),
        (
            artifacts::HOSTILE_PANIC.path.to_string(),
            "smoke call on sample features failed: trap",
        ),
    ];
    let before = registry(&server);
    for (file, reason) in cases {
        let run = admin_cli(&server, ops, &["plugins", "upload", "acme", &file]);
        assert_eq!(run.code, 1, "{file} was accepted");
        assert!(
            run.stderr.contains(reason),
            "{file}: expected {reason:?} in {}",
            run.stderr
        );
        assert_eq!(registry(&server), before, "{file} changed the registry");
    }
    // Uploading the very same version again is not an error and changes nothing either.
    ok(
        admin_cli(
            &server,
            ops,
            &["plugins", "upload", "acme", artifacts::VERSIONED_V1.path],
        ),
        "same again",
    );
    assert_eq!(registry(&server), before);
}

#[test]
fn tokens_are_scoped_and_signatures_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let ops = Some(OPS_TOKEN);
    ok(
        admin_cli(&server, ops, &["partners", "add", "acme"]),
        "acme",
    );
    ok(
        admin_cli(&server, ops, &["partners", "add", "rival"]),
        "rival",
    );
    ok(
        admin_cli(
            &server,
            ops,
            &["plugins", "upload", "rival", artifacts::VERSIONED_V1.path],
        ),
        "rival plugin",
    );
    let token = |name: &str, role: &str, partner: Option<&str>| {
        let mut args = vec!["tokens", "create", name, "--role", role];
        if let Some(p) = partner {
            args.extend(["--partner", p]);
        }
        ok(admin_cli(&server, ops, &args), name)["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let acme = token("acme-eng", "partner", Some("acme"));
    let app = token("app-2", "app", None);
    // Ops see who has access, never a secret.
    let listed = ok(admin_cli(&server, ops, &["tokens", "list"]), "tokens");
    let who: Vec<(&str, &str)> = (listed.as_array().unwrap().iter())
        .map(|t| (t["name"].as_str().unwrap(), t["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        who,
        [
            ("acme-eng", "partner"),
            ("app-2", "app"),
            ("bootstrap-ops", "ops")
        ]
    );
    let text = listed.to_string();
    assert!(!text.contains(&acme) && !text.contains(&app) && !text.contains(OPS_TOKEN));

    // A partner manages its own plugins only.
    ok(
        admin_cli(
            &server,
            Some(&acme),
            &["plugins", "upload", "acme", artifacts::VERSIONED_V2.path],
        ),
        "own upload",
    );
    let run = admin_cli(
        &server,
        Some(&acme),
        &["plugins", "upload", "rival", artifacts::VERSIONED_V2.path],
    );
    assert!(run.stderr.contains("403 forbidden"), "{}", run.stderr);
    let run = admin_cli(
        &server,
        Some(&acme),
        &["plugins", "show", "rival/versioned"],
    );
    assert!(run.stderr.contains("403 forbidden"), "{}", run.stderr);
    let listed = ok(
        admin_cli(&server, Some(&acme), &["plugins", "list"]),
        "list",
    );
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["partner"], "acme");
    let run = admin_cli(
        &server,
        Some(&acme),
        &["plugins", "rollback", "acme/versioned"],
    );
    assert!(
        run.stderr.contains("403 forbidden"),
        "rollout is the issuer's call: {}",
        run.stderr
    );
    ok(
        admin_cli(
            &server,
            Some(&acme),
            &["plugins", "health", "acme/versioned"],
        ),
        "own health",
    );

    // Apps get slates and events, nothing else; no token gets nothing.
    assert_eq!(server.get_as(Some(&app), "/v1/admin/plugins").0, 403);
    assert_eq!(server.get_as(None, "/v1/admin/plugins").0, 401);
    assert_eq!(
        server
            .post_as(
                None,
                "/v1/slates",
                &json!({"placement": "app-home", "subject": "x"})
            )
            .0,
        401
    );
    assert_eq!(
        server
            .post_as(
                Some("ofh_forged_token_000000"),
                "/v1/slates",
                &json!({"placement": "app-home", "subject": "x"})
            )
            .0,
        401
    );
    assert_eq!(
        server
            .post_as(
                Some(&app),
                "/v1/slates",
                &json!({"placement": "app-home", "subject": "x"})
            )
            .0,
        200
    );
    let run = admin_cli(&server, None, &["plugins", "list"]);
    assert!(run.stderr.contains("no token"), "{}", run.stderr);

    // Revoked tokens stop working at once.
    ok(
        admin_cli(&server, ops, &["tokens", "revoke", "app-2"]),
        "revoke",
    );
    assert_eq!(
        server
            .post_as(
                Some(&app),
                "/v1/slates",
                &json!({"placement": "app-home", "subject": "x"})
            )
            .0,
        401
    );

    // With a registered key, uploads must carry a valid signature over the digest.
    use ed25519_dalek::{Signer, SigningKey};
    use sha2::Digest;
    let key = SigningKey::from_bytes(&[7u8; 32]);
    ok(
        admin_cli(
            &server,
            ops,
            &[
                "keys",
                "set",
                "acme",
                &hex::encode(key.verifying_key().to_bytes()),
            ],
        ),
        "key",
    );
    // Updating a partner changes only what is given: the signing key, the allow list
    // and the segments stay; '' clears a list.
    let lists = ["--allow", "tier,rfm", "--segments", "frequent-flyer"];
    ok(
        admin_cli(
            &server,
            ops,
            &[&["partners", "add", "acme"][..], &lists].concat(),
        ),
        "lists",
    );
    let updated = ok(
        admin_cli(&server, ops, &["partners", "add", "acme", "--weight", "2"]),
        "update",
    );
    assert_eq!(updated["weight"], 2.0);
    assert_eq!(
        updated["public_key"],
        hex::encode(key.verifying_key().to_bytes())
    );
    assert_eq!(
        (&updated["allow"], &updated["segments"]),
        (&json!(["tier", "rfm"]), &json!(["frequent-flyer"]))
    );
    let cleared = ok(
        admin_cli(&server, ops, &["partners", "add", "acme", "--segments", ""]),
        "clear segments",
    );
    assert_eq!(
        (&cleared["allow"], &cleared["segments"]),
        (&json!(["tier", "rfm"]), &json!([]))
    );
    let run = admin_cli(
        &server,
        ops,
        &["partners", "add", "acme", "--weight", "NaN"],
    );
    assert!(
        run.code != 0 && run.stderr.contains("weight"),
        "{}",
        run.stderr
    );
    let file = artifacts::VERSIONED_V1.path;
    let run = admin_cli(&server, Some(&acme), &["plugins", "upload", "acme", file]);
    assert!(
        run.stderr.contains("requires signed uploads"),
        "{}",
        run.stderr
    );
    let wrong = hex::encode(key.sign(b"something else").to_bytes());
    let run = admin_cli(
        &server,
        Some(&acme),
        &["plugins", "upload", "acme", file, "--signature", &wrong],
    );
    assert!(
        run.stderr.contains("signature does not match"),
        "{}",
        run.stderr
    );
    let digest = sha2::Sha256::digest(artifacts::VERSIONED_V1.bytes);
    let good = hex::encode(key.sign(&digest).to_bytes());
    ok(
        admin_cli(
            &server,
            Some(&acme),
            &["plugins", "upload", "acme", file, "--signature", &good],
        ),
        "signed upload",
    );

    // The last ops token cannot be revoked: nobody could manage the service after.
    let run = admin_cli(&server, ops, &["tokens", "revoke", "bootstrap-ops"]);
    assert!(
        run.code != 0 && run.stderr.contains("last ops token"),
        "{}",
        run.stderr
    );
    let second = token("ops-2", "ops", None);
    ok(
        admin_cli(
            &server,
            Some(&second),
            &["tokens", "revoke", "bootstrap-ops"],
        ),
        "revoke the first ops token once there is another",
    );
    assert_eq!(server.get_as(ops, "/v1/admin/plugins").0, 401);
    assert_eq!(server.get_as(Some(&second), "/v1/admin/plugins").0, 200);
}

/// Four clients ask for slates while ops promote and roll back six times: every slate is
/// answered, none mixes versions, both versions serve, and a slate without acme's offer
/// is one whose call ran out of time.
#[test]
fn slates_under_load_while_versions_change_never_fail_or_mix() {
    let dir = tempfile::tempdir().unwrap();
    // A loaded machine's missed deadlines count against a plugin's health: with the
    // suite's quarantine settings they could quarantine acme, which is not under test.
    let config = CONFIG.replace("min_calls = 5", "min_calls = 1000000");
    assert_ne!(config, CONFIG, "the suite's quarantine settings changed");
    std::fs::write(dir.path().join("offerhost.toml"), config).unwrap();
    let server = std::sync::Arc::new(start(dir.path()));
    let ops = Some(OPS_TOKEN);
    ok(
        admin_cli(
            &server,
            ops,
            &["partners", "add", "acme", "--allow", "tier"],
        ),
        "partner",
    );
    ok(
        admin_cli(
            &server,
            ops,
            &["plugins", "upload", "acme", artifacts::VERSIONED_V1.path],
        ),
        "v1",
    );
    ok(
        admin_cli(
            &server,
            ops,
            &["plugins", "upload", "acme", artifacts::VERSIONED_V2.path],
        ),
        "v2",
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let server = server.clone();
        let stop = stop.clone();
        workers.push(std::thread::spawn(move || {
            let mut seen = std::collections::BTreeSet::new();
            let (mut n, mut late) = (0, 0);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match acme_offer_unless_late(&server, &format!("load-{w}-{n}")) {
                    Some((offer, version)) => {
                        assert_eq!(
                            offer,
                            format!("v{}-offer", &version[..1]),
                            "a call mixed versions"
                        );
                        seen.insert(version);
                    }
                    None => late += 1,
                }
                n += 1;
            }
            (n, late, seen)
        }));
    }
    for _ in 0..6 {
        ok(
            admin_cli(
                &server,
                ops,
                &["plugins", "promote", "acme/versioned", "2.0.0"],
            ),
            "promote",
        );
        ok(
            admin_cli(&server, ops, &["plugins", "rollback", "acme/versioned"]),
            "rollback",
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut versions = std::collections::BTreeSet::new();
    for w in workers {
        let (n, late, seen) = w.join().expect("no slate failed");
        assert!(n > 0);
        assert!(late * 2 < n, "{late} of {n} slates ran out of time");
        versions.extend(seen);
    }
    assert!(
        versions.contains("1.0.0") && versions.contains("2.0.0"),
        "{versions:?}"
    );
}

#[test]
fn a_bad_profile_line_is_named_by_its_line_in_the_file_and_nothing_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let ops = Some(OPS_TOKEN);
    let app = app_token(&server, "app-1");
    let good = |subject: &str| {
        json!({"subject": subject, "profile": {"tier": "mass", "marketing_consent": true}})
            .to_string()
    };
    // Blank lines count: the bad tier is on the file's line 5.
    let file = dir.path().join("profiles.ndjson");
    let bad = r#"{"subject": "s4", "profile": {"tier": "gold"}}"#;
    let text = [
        good("s1"),
        String::new(),
        good("s2"),
        good("s3"),
        bad.into(),
    ]
    .join("\n");
    std::fs::write(&file, text).unwrap();
    let run = admin_cli(
        &server,
        ops,
        &["profiles", "load", file.to_str().unwrap(), "--batch", "2"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("line 5: profile.tier: unknown variant `gold`")
            && run.stderr.contains("nothing was loaded"),
        "{}",
        run.stderr
    );
    let slate = |subject: &str| {
        let body = json!({"placement": "app-home", "subject": subject});
        server.post_as(Some(&app), "/v1/slates", &body).1
    };
    assert_eq!(
        slate("s1")["suppressed"],
        "no-profile",
        "the first batch was not sent"
    );

    std::fs::write(&file, [good("s1"), String::new(), good("s2")].join("\n")).unwrap();
    let loaded = ok(
        admin_cli(&server, ops, &["profiles", "load", file.to_str().unwrap()]),
        "good file",
    );
    assert_eq!(loaded["loaded"], 2);
    assert!(slate("s1").get("suppressed").is_none(), "{}", slate("s1"));
}

#[test]
fn a_version_made_active_stops_being_the_shadow() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let ops = Some(OPS_TOKEN);
    let cli = |args: &[&str], what: &str| ok(admin_cli(&server, ops, args), what);
    cli(&["partners", "add", "acme", "--allow", "tier"], "partner");
    for v in [artifacts::VERSIONED_V1.path, artifacts::VERSIONED_V2.path] {
        cli(&["plugins", "upload", "acme", v], "upload");
    }
    cli(
        &["plugins", "shadow", "acme/versioned", "2.0.0"],
        "shadow v2",
    );
    let promoted = cli(
        &["plugins", "promote", "acme/versioned", "2.0.0"],
        "promote",
    );
    assert_eq!(
        (&promoted["active"], &promoted["shadow"]),
        (&json!("2.0.0"), &Value::Null)
    );
    cli(
        &["plugins", "shadow", "acme/versioned", "1.0.0"],
        "shadow v1",
    );
    let rolled = cli(&["plugins", "rollback", "acme/versioned"], "rollback");
    assert_eq!(
        (&rolled["active"], &rolled["shadow"]),
        (&json!("1.0.0"), &Value::Null)
    );
}
