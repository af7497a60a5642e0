//! The real binary: `offerhost demo` from the README, and `offerhost serve` restarted on
//! the same store.

use offerhost_tests::{
    ServerProcess, artifacts, example_config, offerhost, offers_of, traveller_profile,
};
use serde_json::{Value, json};

fn impression(slate: &Value, offer: &Value, id: &str) -> Value {
    json!({"event_id": id, "type": "impression", "slate_id": slate["slate_id"], "partner": offer["partner"], "offer_id": offer["offer"]["id"]})
}

#[test]
fn the_demo_serves_ranked_slates_and_caps_move_offers() {
    let data = tempfile::tempdir().unwrap();
    // The demo prints its tokens; the app token is what a banking app would use.
    let demo = start_demo(data.path());
    assert!(demo.banner.contains("curl -s"), "{}", demo.banner);
    assert!(
        demo.banner.contains("slates/traveller.json"),
        "{}",
        demo.banner
    );

    // The shipped request, as the README pastes it.
    let body: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../host/examples/slates/traveller.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let (status, slate) = demo.post("/v1/slates", &body);
    assert_eq!(status, 200, "{slate}");
    let ranked = offers_of(&slate);
    assert_eq!(ranked.len(), 2, "{slate}");
    assert_eq!(ranked[0].0, "skyways");
    assert_eq!(ranked[1].0, "voltmart");

    // The demo caps an offer at 3 impressions a day.
    for i in 0..3 {
        let (_, s) = demo.post("/v1/slates", &body);
        assert_eq!(s["offers"][0]["partner"], "skyways");
        let (status, ack) = demo.post(
            "/v1/events",
            &impression(&s, &s["offers"][0], &format!("demo-{i}")),
        );
        assert_eq!(status, 200, "{ack}");
    }
    let (_, s) = demo.post("/v1/slates", &body);
    assert_eq!(
        offers_of(&s),
        [("voltmart".to_string(), "voltmart-0pct-long".to_string())],
        "the capped offer is gone, the other moved up"
    );

    // A stored demo profile, by subject only.
    let stored: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../host/examples/slates/stored-subject.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let (status, s) = demo.post("/v1/slates", &stored);
    assert_eq!(status, 200);
    assert_eq!(offers_of(&s).len(), 2, "{s}");

    // Started again on its data, the demo serves with new tokens; the old ones stop
    // working.
    let old = demo.token.clone();
    assert!(demo.stop().success());
    let again = start_demo(data.path());
    assert_ne!(again.token, old);
    let (status, s) = again.post("/v1/slates", &stored);
    assert_eq!((status, offers_of(&s).len()), (200, 2), "{s}");
    assert_eq!(again.post_as(Some(&old), "/v1/slates", &stored).0, 401);
}

/// `offerhost demo` on a free port, keeping its data in `data`; its token the app's.
fn start_demo(data: &std::path::Path) -> ServerProcess {
    let mut demo = ServerProcess::start(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--data",
        data.to_str().unwrap(),
    ]);
    demo.token = demo_app_token(&demo.banner);
    demo
}

/// The app token a demo printed.
fn demo_app_token(banner: &str) -> String {
    banner
        .lines()
        .find_map(|l| l.trim_start_matches('#').trim().strip_prefix("demo-app"))
        .map(|t| t.trim().to_string())
        .expect("the demo prints an app token")
}

#[test]
fn serve_keeps_counters_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offerhost.toml");
    std::fs::write(
        &config,
        format!(
            "store_path = \"store\"\n{}[[cap]]\nscope = \"offer\"\nmax = 1\nwindow = \"1d\"\n",
            example_config()
        ),
    )
    .unwrap();
    let args = [
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ];
    let req = json!({"placement": "app-home", "subject": "restart-subject", "profile": traveller_profile()});

    let server = ServerProcess::start(&args);
    let (_, slate) = server.post("/v1/slates", &req);
    assert_eq!(slate["offers"][0]["partner"], "skyways");
    let (status, _) = server.post("/v1/events", &impression(&slate, &slate["offers"][0], "r1"));
    assert_eq!(status, 200);
    // A slate served just before the shutdown is on disk after it: its events count.
    let other = json!({"placement": "app-home", "subject": "restart-other", "profile": traveller_profile()});
    let (_, last) = server.post("/v1/slates", &other);
    assert!(server.stop().success(), "graceful shutdown");

    let server = ServerProcess::start(&args);
    let (status, ack) = server.post("/v1/events", &impression(&last, &last["offers"][0], "r2"));
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["recorded"], "new");
    let (_, slate) = server.post("/v1/slates", &req);
    assert_eq!(
        slate["offers"][0]["partner"], "voltmart",
        "still capped after restart: {slate}"
    );
    drop(server);

    // A config naming a plugin that is not a component does not start, and says why.
    std::fs::write(
        dir.path().join("bad.toml"),
        example_config().replace(artifacts::GROCER.path, "/etc/hostname"),
    )
    .unwrap();
    let out = offerhost_tests::offerhost()
        .args([
            "serve",
            "--config",
            dir.path().join("bad.toml").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("partner freshmart") && stderr.contains("not a WebAssembly file"),
        "{stderr}"
    );
}

/// A configuration with one placement and its store in `state/store`, in `dir`.
fn minimal_config(dir: &std::path::Path) -> std::path::PathBuf {
    let config = dir.join("offerhost.toml");
    let text = "store_path = \"state/store\"\n[[placement]]\nid = \"app-home\"\n";
    std::fs::write(&config, text).unwrap();
    config
}

#[test]
fn first_start_saves_a_private_ops_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = minimal_config(dir.path());
    let mut server = ServerProcess::start_with(
        &[
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        None,
    );
    let file = dir.path().join("state/store/bootstrap-ops-token");
    let token = std::fs::read_to_string(&file)
        .expect("the token file exists")
        .trim()
        .to_string();
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(token.starts_with("ofh_") && token.len() > 40, "{token}");
    server.token = token;
    let (status, audit) = server.get_as(Some(&server.token.clone()), "/v1/admin/audit");
    assert_eq!(status, 200, "{audit}");
    assert_eq!(audit[0]["target"], "token:bootstrap-ops");
}

#[test]
fn start_up_mistakes_are_named_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let config = minimal_config(dir.path());
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = offerhost()
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let serve = ["serve", "--config", config.to_str().unwrap()];

    let (code, stderr) = run(&[&serve[..], &["--listen", "localhost"]].concat(), &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot listen on \"localhost\": give host:port"),
        "{stderr}"
    );
    assert!(!dir.path().join("state").exists(), "no store was created");

    let bad_env = [("OFFERHOST__SLATE__DEADLINE_MS", "abc")];
    let (code, stderr) = run(&serve, &bad_env);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("(the value comes from OFFERHOST__SLATE__DEADLINE_MS)"),
        "{stderr}"
    );

    let (code, stderr) = run(&serve, &[("OFFERHOST__REPORTS__RETENTION_DAYS", "0")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("reports.retention_days must be within 1..=36500, got 0"),
        "{stderr}"
    );

    let missing = dir.path().join("missing.toml");
    let (code, stderr) = run(&["serve", "--config", missing.to_str().unwrap()], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.matches("No such file").count(), 1, "{stderr}");

    let (code, stderr) = run(
        &[
            "plugins",
            "list",
            "--server",
            "127.0.0.1:8080",
            "--token",
            "t",
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("needs its scheme"), "{stderr}");
}
