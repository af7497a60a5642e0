//! `offerhost serve` and `offerhost demo`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;

use crate::config::Config;
use crate::registry::{Actor, Role, RolloutAction};
use crate::server;

/// Arguments of `offerhost serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The TOML configuration file (see host/examples/offerhost.toml).
    #[arg(long, short = 'c', value_name = "FILE", env = "OFFERHOST_CONFIG")]
    pub config: PathBuf,
    /// Address to listen on; overrides `listen` in the file.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

/// Arguments of `offerhost demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Directory for the demo's config, plugins and store. Default: a temporary
    /// directory removed on exit.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

/// `offerhost store ...`
#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Bring a Redis store written by an earlier version up to this one (list each
    /// subject's cap counters, so slates read them with its profile in one round trip).
    /// Run it once, after every replica runs this version; running it again changes
    /// nothing. The embedded store upgrades itself when it opens.
    Upgrade {
        /// The TOML configuration file the replicas use.
        #[arg(long, short = 'c', value_name = "FILE", env = "OFFERHOST_CONFIG")]
        config: PathBuf,
    },
}

pub(super) fn store(cmd: StoreCommand) -> anyhow::Result<()> {
    let StoreCommand::Upgrade { config } = cmd;
    let config = Config::load(&config, std::env::vars())?;
    let Some(url) = &config.store_url else {
        eprintln!(
            "nothing to do: the embedded store at {} upgrades itself when it opens",
            config.store_path.display()
        );
        return Ok(());
    };
    let store = crate::store::RedisStore::open(url, &config.store_prefix)
        .with_context(|| format!("opening the Redis store at {url}"))?;
    if store.counters_listed() {
        eprintln!("nothing to do: the store at {url} is up to date");
        return Ok(());
    }
    eprintln!(
        "listing each subject's cap counters in {url} (prefix {:?})",
        config.store_prefix
    );
    let mut shown = 0;
    let looked_at = store
        .upgrade(&mut |n| {
            if n >= shown + 10_000 {
                eprintln!("  {n} counters so far");
                shown = n;
            }
        })
        .context("upgrading the store (safe to run again)")?;
    eprintln!(
        "done: {looked_at} counters, all listed now; slates now read each subject's counters with its \
         profile in one round trip (each replica serving capped slates switches within a second)"
    );
    Ok(())
}

pub(super) fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config, std::env::vars())?;
    let listen = args.listen.unwrap_or_else(|| config.listen.clone());
    check_listen(&listen)?;
    let token_file = config.store_path.join("bootstrap-ops-token");
    if config.subject_salt == crate::config::DEFAULT_SALT
        || config.subject_salt.contains("change-me")
    {
        tracing::warn!(
            "subject_salt is a published example: set a secret one, or store keys and canary buckets can be recomputed from guessed subject ids"
        );
    }
    let state = server::build_default(config)?;
    if !server::has_ops_token(&state) {
        // Save the secret before registering it, so a failed write never leaves a token
        // nobody knows.
        let (token, generated) = match std::env::var("OFFERHOST_BOOTSTRAP_TOKEN") {
            Ok(t) => (t, false),
            Err(_) => (crate::registry::new_token_secret()?, true),
        };
        if generated {
            write_secret(&token_file, &token)?;
        }
        server::ensure_ops_token(&state, Some(&token))?;
        if generated {
            eprintln!(
                "no ops token yet: created the ops token `bootstrap-ops`, saved in {} (readable only by you)",
                token_file.display()
            );
        }
    }
    runtime()?.block_on(server::serve(state, &listen, |addr| {
        println!("listening on {addr}");
        let _ = std::io::stdout().flush();
    }))
}

/// Refuses an address that cannot be listened on before anything is created on disk.
fn check_listen(listen: &str) -> anyhow::Result<()> {
    use std::net::ToSocketAddrs;
    match listen.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(_)) => Ok(()),
        _ => anyhow::bail!(
            "cannot listen on {listen:?}: give host:port, such as 127.0.0.1:8080 (port 0 picks a free one)"
        ),
    }
}

/// The demo's configuration, with plugin paths relative to the data directory.
const DEMO_CONFIG: &str = include_str!("../../examples/offerhost.toml");
/// The demo's canary plugin.
const DEMO_CANARY: &str = "freshmart/freshmart-cashback";
/// Profiles loaded into the demo store, so requests can name only the subject.
const DEMO_PROFILES: &str = include_str!("../../examples/profiles.ndjson");

/// The example configuration, listening on `listen`.
fn demo_config(listen: &str) -> String {
    DEMO_CONFIG.replacen(
        DEMO_LISTEN,
        &format!("listen = {}", toml::Value::from(listen)),
        1,
    )
}

/// The example configuration's `listen` line.
const DEMO_LISTEN: &str = "listen = \"127.0.0.1:8080\"";

pub(super) fn demo(args: DemoArgs) -> anyhow::Result<()> {
    check_listen(&args.listen)?;
    let temp;
    let dir: &Path = match &args.data {
        Some(d) => d,
        None => {
            temp = tempfile::Builder::new()
                .prefix("offerhost-demo-")
                .tempdir()?;
            temp.path()
        }
    };
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).with_context(|| format!("creating {}", plugins.display()))?;
    for a in offerhost_plugin_artifacts::EXAMPLES {
        let name = format!("{}.wasm", a.package.replace('-', "_"));
        std::fs::write(plugins.join(&name), a.bytes)?;
    }
    let config_path = dir.join("offerhost.toml");
    // Kept with the data, so `serve --config` on it listens where the demo did.
    std::fs::write(&config_path, demo_config(&args.listen))?;
    let config = Config::load(&config_path, std::env::vars())?;
    let state = server::build_default(config)?;
    let mut profiles = Vec::new();
    for line in DEMO_PROFILES.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let subject = v["subject"].as_str().context("demo profile subject")?;
        let profile = serde_json::from_value(v["profile"].clone())?;
        profiles.push((state.subject_key(subject), profile));
    }
    state.store().put_profiles(&profiles)?;
    let registry = state.registry();
    let actor = Actor::system("demo");
    // FreshMart's next release runs as a canary on a fifth of customers, so the
    // readout has two arms to compare.
    registry.upload(
        &actor,
        "freshmart",
        offerhost_plugin_artifacts::GROCER_NEXT.bytes,
        None,
    )?;
    registry.rollout(
        &actor,
        DEMO_CANARY,
        RolloutAction::Canary {
            version: "1.1.0".into(),
            percent: 20.0,
        },
    )?;
    let mut tokens = Vec::new();
    for (name, role, partner) in [
        ("demo-ops", Role::Ops, None),
        ("demo-app", Role::App, None),
        ("demo-skyways", Role::Partner, Some("skyways")),
    ] {
        // A demo started again on its data gets new secrets for the same names.
        tokens.push((name, registry.renew_token(&actor, name, role, partner)?));
    }

    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let listen = args.listen.clone();
    runtime()?.block_on(server::serve(state, &listen, |addr| {
        let base = format!("http://{addr}");
        let ex = examples.display();
        println!("offerhost demo: {} example plugins deployed, store in {}", offerhost_plugin_artifacts::EXAMPLES.len(), dir.display());
        println!("listening on {addr}\n");
        println!("# tokens (Authorization: Bearer ...):");
        for (name, token) in &tokens {
            println!("#   {name:<14} {token}");
        }
        println!("export APP={}  OPS={}", tokens[1].1, tokens[0].1);
        println!("export OFFERHOST_SERVER={base} OFFERHOST_TOKEN=$OPS   # for the admin commands\n");
        println!("# a ranked slate for a high-value traveller (profile sent inline, with diagnostics):");
        println!("curl -s {base}/v1/slates -H \"authorization: Bearer $APP\" -H 'content-type: application/json' -d @{ex}/slates/traveller.json\n");
        println!("# a slate for a stored profile, by subject only:");
        println!("curl -s {base}/v1/slates -H \"authorization: Bearer $APP\" -H 'content-type: application/json' -d @{ex}/slates/stored-subject.json\n");
        println!("# report an impression (put a slate_id and offer from a slate above into the file first):");
        println!("curl -s {base}/v1/events -H \"authorization: Bearer $APP\" -H 'content-type: application/json' -d @{ex}/events/impression.json\n");
        println!("# bulk-load profiles:");
        println!("curl -s {base}/v1/admin/profiles -H \"authorization: Bearer $OPS\" --data-binary @{ex}/profiles.ndjson\n");
        println!("# ops: list plugins, read the audit log:");
        println!("offerhost plugins list");
        println!("offerhost audit\n");
        println!("# measurement: metrics, an exact ops report, a partner's protected report, the canary readout:");
        println!("curl -s {base}/metrics");
        println!("offerhost reports offers --by partner,offer,tier");
        println!("OFFERHOST_TOKEN={} offerhost reports offers", tokens[2].1);
        println!("offerhost plugins readout {DEMO_CANARY}\n");
        println!("Stop with Ctrl-C.");
        let _ = std::io::stdout().flush();
    }))
}

fn write_secret(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(f, "{secret}")?;
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_config_listens_where_the_demo_does() {
        assert_eq!(DEMO_CONFIG.matches(DEMO_LISTEN).count(), 1);
        let written = demo_config("0.0.0.0:9090");
        assert!(!written.contains(DEMO_LISTEN));
        let config = Config::parse(&written, Vec::<(String, String)>::new(), Path::new("/"))
            .expect("the written config parses");
        assert_eq!(config.listen, "0.0.0.0:9090");
    }
}
