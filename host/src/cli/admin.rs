//! Admin client commands: they call a running host's `/v1/admin` API.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::api::SIGNATURE_HEADER;

/// Where the host is and who is asking.
#[derive(Debug, Args)]
pub struct Connection {
    /// Base URL of the host.
    #[arg(
        long,
        global = true,
        env = "OFFERHOST_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// Bearer token (ops, or a partner token for its own plugins).
    #[arg(long, global = true, env = "OFFERHOST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// `offerhost partners ...`
#[derive(Debug, Subcommand)]
pub enum PartnersCommand {
    /// Add a partner, or update one: an existing partner keeps whatever is not given
    /// here (its signing key included; `keys clear` removes that).
    Add {
        /// Partner id, kebab-case.
        id: String,
        /// Ranking weight [default for a new partner: 1.0].
        #[arg(long)]
        weight: Option<f64>,
        /// Feature fields its plugins may see (comma-separated: tier,lifecycle,rfm,
        /// affinities,cobrand_holder,region,context,segments; '' for none) [new partner:
        /// none].
        #[arg(long, value_delimiter = ',')]
        allow: Option<Vec<String>>,
        /// Segment labels its plugins may see (comma-separated; '' for none) [new
        /// partner: none].
        #[arg(long, value_delimiter = ',')]
        segments: Option<Vec<String>>,
        /// Ed25519 public key (hex) that must sign its uploads.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// List partners.
    List,
}

/// `offerhost keys ...`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Require uploads of PARTNER to be signed with this ed25519 public key (hex).
    Set {
        /// Partner id.
        partner: String,
        /// Public key, 64 hex characters.
        public_key: String,
    },
    /// Stop requiring signatures from PARTNER.
    Clear {
        /// Partner id.
        partner: String,
    },
}

/// `offerhost plugins ...` (PLUGIN is `partner/plugin-name`).
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Upload a component for PARTNER (validated; the first version becomes active).
    Upload {
        /// Partner id.
        partner: String,
        /// The component file.
        file: PathBuf,
        /// Hex ed25519 signature of the component's SHA-256 digest.
        #[arg(long)]
        signature: Option<String>,
    },
    /// List plugins (a partner token sees its own).
    List,
    /// Show one plugin: versions and rollout state.
    Show {
        /// `partner/plugin`.
        plugin: String,
    },
    /// Give VERSION to PERCENT of subjects (sticky per subject).
    Canary {
        /// `partner/plugin`.
        plugin: String,
        /// Staged version.
        version: String,
        /// Share of subjects, 0.01..=100.
        #[arg(long)]
        percent: f64,
    },
    /// Make VERSION (default: the canary) active.
    Promote {
        /// `partner/plugin`.
        plugin: String,
        /// Version; default the canary.
        version: Option<String>,
    },
    /// Make the previous active version active again.
    Rollback {
        /// `partner/plugin`.
        plugin: String,
    },
    /// Kill switch: stop calling the plugin from the next request on.
    Disable {
        /// `partner/plugin`.
        plugin: String,
    },
    /// Undo `disable`.
    Enable {
        /// `partner/plugin`.
        plugin: String,
    },
    /// Run VERSION as a shadow (called, compared, never shown); without VERSION, stop.
    Shadow {
        /// `partner/plugin`.
        plugin: String,
        /// Version; omit to clear.
        version: Option<String>,
    },
    /// Lift a quarantine.
    Reinstate {
        /// `partner/plugin`.
        plugin: String,
    },
    /// The placements the plugin bids in (none given: every placement).
    Placements {
        /// `partner/plugin`.
        plugin: String,
        /// Placement ids, as configured.
        placements: Vec<String>,
    },
    /// Change the plugin's own limits; those not named keep their override or follow the
    /// service's `[limits]`.
    Limits {
        /// `partner/plugin`.
        plugin: String,
        /// Fuel per call.
        #[arg(long)]
        fuel: Option<u64>,
        /// Wall-clock deadline per call, milliseconds.
        #[arg(long)]
        deadline_ms: Option<u64>,
        /// Linear memory per instance, bytes (at most the engine maximum).
        #[arg(long)]
        memory_bytes: Option<u64>,
        /// Most bids per call.
        #[arg(long)]
        max_bids: Option<u32>,
        /// Most bytes of strings per call.
        #[arg(long)]
        max_output_bytes: Option<u64>,
        /// Most log bytes per call.
        #[arg(long)]
        max_log_bytes: Option<u64>,
        /// Drop every override: the plugin follows `[limits]` again.
        #[arg(long, conflicts_with_all = ["fuel", "deadline_ms", "memory_bytes", "max_bids", "max_output_bytes", "max_log_bytes"])]
        clear: bool,
    },
    /// Outcome counters and quarantine state.
    Health {
        /// `partner/plugin`.
        plugin: String,
    },
    /// Canary against active (and the shadow's disagreement) with 95 % intervals.
    Readout {
        /// `partner/plugin`.
        plugin: String,
        /// Print the JSON answer instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run a version on a request file (as `plugin run` takes) without touching caps.
    Test {
        /// `partner/plugin`.
        plugin: String,
        /// JSON features file.
        #[arg(long, short = 'r')]
        request: PathBuf,
        /// Version; default the active one.
        #[arg(long)]
        version: Option<String>,
    },
}

/// `offerhost reports ...`
#[derive(Debug, Subcommand)]
pub enum ReportsCommand {
    /// Served offers and events grouped by the dimensions you pick. Ops see exact
    /// numbers; a partner sees its own offers, with rows of fewer than k customers
    /// merged and counts noised.
    Offers {
        /// First local day (YYYY-MM-DD); default six days before --to.
        #[arg(long)]
        from: Option<String>,
        /// Last local day, inclusive; default today.
        #[arg(long)]
        to: Option<String>,
        /// Only this partner.
        #[arg(long)]
        partner: Option<String>,
        /// Grouping: comma-separated day, partner, plugin, version, offer, placement,
        /// tier, stage (default offer,placement,tier,stage).
        #[arg(long)]
        by: Option<String>,
        /// Print the JSON answer instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn reports(conn: &Connection, cmd: ReportsCommand) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    let ReportsCommand::Offers {
        from,
        to,
        partner,
        by,
        json,
    } = cmd;
    let mut query = Vec::new();
    for (name, value) in [("from", from), ("to", to), ("partner", partner), ("by", by)] {
        if let Some(v) = value {
            query.push(format!("{name}={}", encode_query(&v)));
        }
    }
    let path = if query.is_empty() {
        "/v1/admin/reports/offers".to_string()
    } else {
        format!("/v1/admin/reports/offers?{}", query.join("&"))
    };
    let v = c.get(&path)?;
    if json {
        print(&v)?;
    } else {
        let report = serde_json::from_value(v).context("unexpected report answer")?;
        super::write_out(&super::render::report(&report))?;
    }
    Ok(())
}

/// Percent-encodes a query value (dates, ids and dimension lists need little).
fn encode_query(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b',' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `offerhost config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Set (and unset) a plugin's configuration values; no new upload needed.
    Set {
        /// `partner/plugin`.
        plugin: String,
        /// Values to set.
        #[arg(value_name = "KEY=VALUE", value_parser = super::plugin_run::parse_config)]
        values: Vec<(String, String)>,
        /// Keys to remove.
        #[arg(long)]
        unset: Vec<String>,
    },
}

/// `offerhost tokens ...`
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token; prints its secret once.
    Create {
        /// Unique name, kebab-case.
        name: String,
        /// ops, partner or app.
        #[arg(long)]
        role: String,
        /// For partner tokens.
        #[arg(long)]
        partner: Option<String>,
    },
    /// List tokens: name, role, partner, creation time (never the secrets).
    List,
    /// Revoke a token by name (not the last ops token).
    Revoke {
        /// Token name.
        name: String,
    },
}

/// `offerhost profiles ...`
#[derive(Debug, Subcommand)]
pub enum ProfilesCommand {
    /// Bulk-load profiles from an NDJSON file (`{"subject", "profile"}` per line), in
    /// batches, showing progress. Each batch is all-or-nothing.
    Load {
        /// The NDJSON file.
        file: PathBuf,
        /// Lines per request.
        #[arg(long, default_value_t = 5000)]
        batch: usize,
    },
}

struct Client {
    agent: ureq::Agent,
    server: String,
    token: String,
}

impl Client {
    fn new(c: &Connection) -> anyhow::Result<Client> {
        let token = c
            .token
            .clone()
            .context("no token: pass --token or set OFFERHOST_TOKEN")?;
        if !(c.server.starts_with("http://") || c.server.starts_with("https://")) {
            bail!(
                "--server {:?} needs its scheme: a URL such as http://127.0.0.1:8080",
                c.server
            );
        }
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(120)))
            .build()
            .into();
        Ok(Client {
            agent,
            server: c.server.trim_end_matches('/').to_string(),
            token,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }

    fn finish(
        &self,
        res: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Value> {
        let mut res = res.with_context(|| format!("cannot reach {}", self.server))?;
        let status = res.status();
        let text = res.body_mut().read_to_string().unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            Ok(body)
        } else {
            let code = body["error"]["code"].as_str().unwrap_or("error");
            let message = body["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| body.to_string());
            bail!("{} {code}: {message}", status.as_u16())
        }
    }

    fn get(&self, path: &str) -> anyhow::Result<Value> {
        let res = self
            .agent
            .get(&self.url(path))
            .header("authorization", &format!("Bearer {}", self.token))
            .call();
        self.finish(res)
    }

    fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let res = self
            .agent
            .post(&self.url(path))
            .header("authorization", &format!("Bearer {}", self.token))
            .header("content-type", "application/json")
            .send(body.to_string());
        self.finish(res)
    }

    fn post_bytes(
        &self,
        path: &str,
        bytes: &[u8],
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Value> {
        let mut req = self
            .agent
            .post(&self.url(path))
            .header("authorization", &format!("Bearer {}", self.token));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = req.send(bytes).map_err(|e| match e {
            // The server answered and closed before taking the whole body; say so
            // rather than a bare "broken pipe".
            ureq::Error::Io(io)
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                ureq::Error::Io(std::io::Error::new(
                    io.kind(),
                    format!(
                        "the server closed the connection while {} bytes were being sent \
                         (is the body larger than the server accepts?): {io}",
                        bytes.len()
                    ),
                ))
            }
            other => other,
        });
        self.finish(res)
    }

    fn delete(&self, path: &str) -> anyhow::Result<Value> {
        let res = self
            .agent
            .delete(&self.url(path))
            .header("authorization", &format!("Bearer {}", self.token))
            .call();
        self.finish(res)
    }
}

fn plugin_path(plugin: &str) -> anyhow::Result<String> {
    match plugin.split_once('/') {
        Some((p, n)) if !p.is_empty() && !n.is_empty() && !n.contains('/') => {
            Ok(format!("/v1/admin/plugins/{p}/{n}"))
        }
        _ => bail!("name the plugin as partner/plugin-name, got {plugin:?}"),
    }
}

fn print(v: &Value) -> anyhow::Result<()> {
    super::write_out(&format!(
        "{}\n",
        serde_json::to_string_pretty(v).unwrap_or_default()
    ))
}

fn rollout(c: &Client, plugin: &str, action: Value) -> anyhow::Result<Value> {
    c.post(&format!("{}/rollout", plugin_path(plugin)?), &action)
}

pub(super) fn partners(conn: &Connection, cmd: PartnersCommand) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    let out = match cmd {
        PartnersCommand::Add {
            id,
            weight,
            allow,
            segments,
            public_key,
        } => {
            // The API replaces a partner whole: start from the stored one, so that an
            // update changes only what was given.
            let mut p = match find_partner(&c, &id)? {
                Some(existing) => existing,
                None => json!({"id": id, "weight": 1.0, "allow": [], "segments": []}),
            };
            if let Some(weight) = weight {
                if !(weight.is_finite() && weight > 0.0) {
                    bail!("--weight {weight} must be a number > 0");
                }
                p["weight"] = json!(weight);
            }
            // `--allow ''` clears the list.
            let listed = |v: Vec<String>| -> Vec<String> {
                v.into_iter().filter(|s| !s.trim().is_empty()).collect()
            };
            if let Some(allow) = allow {
                p["allow"] = json!(listed(allow));
            }
            if let Some(segments) = segments {
                p["segments"] = json!(listed(segments));
            }
            if let Some(key) = public_key {
                p["public_key"] = json!(key);
            }
            c.post("/v1/admin/partners", &p)?
        }
        PartnersCommand::List => c.get("/v1/admin/partners")?,
    };
    print(&out)?;
    Ok(())
}

/// What an upload left serving, for a person reading the output: whether the version is
/// active, or staged behind another (and how to serve it). `None` if the plugin cannot
/// be read back.
fn upload_state(c: &Client, partner: &str, meta: &Value) -> Option<String> {
    let (name, version) = (meta["info"]["name"].as_str()?, meta["version"].as_str()?);
    let key = format!("{partner}/{name}");
    let entry = c.get(&plugin_path(&key).ok()?).ok()?;
    let mut state = match entry["active"].as_str() {
        Some(active) if active == version => format!("{key} {version} is active"),
        Some(active) => format!(
            "{key} {version} is staged; {active} is active (ops serve it with `offerhost plugins canary {key} {version} --percent N` or `promote`)"
        ),
        None => format!("{key} {version} is staged; no version is active"),
    };
    if entry["disabled"] == true {
        state.push_str("; the plugin is disabled, so no version serves");
    }
    if let Some(why) = entry["quarantined"].as_str() {
        state.push_str(&format!(
            "; the plugin is quarantined ({why}), so no version serves"
        ));
    }
    Some(state)
}

/// The stored partner `id`, if there is one.
fn find_partner(c: &Client, id: &str) -> anyhow::Result<Option<Value>> {
    let partners = c.get("/v1/admin/partners")?;
    let list = partners
        .as_array()
        .context("unexpected answer to the partner list")?;
    Ok(list.iter().find(|p| p["id"] == id).cloned())
}

pub(super) fn keys(conn: &Connection, cmd: KeysCommand) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    let (partner, key) = match cmd {
        KeysCommand::Set {
            partner,
            public_key,
        } => (partner, Some(public_key)),
        KeysCommand::Clear { partner } => (partner, None),
    };
    let mut p = find_partner(&c, &partner)?.with_context(|| format!("no partner {partner:?}"))?;
    p["public_key"] = json!(key);
    print(&c.post("/v1/admin/partners", &p)?)
}

pub(super) fn plugins(conn: &Connection, cmd: PluginsCommand) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    let out = match cmd {
        PluginsCommand::Upload {
            partner,
            file,
            signature,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let mut headers = vec![("content-type", "application/wasm")];
            if let Some(sig) = &signature {
                headers.push((SIGNATURE_HEADER, sig));
            }
            let meta = c.post_bytes(
                &format!("/v1/admin/partners/{partner}/plugins"),
                &bytes,
                &headers,
            )?;
            if let Some(state) = upload_state(&c, &partner, &meta) {
                eprintln!("{state}");
            }
            meta
        }
        PluginsCommand::List => c.get("/v1/admin/plugins")?,
        PluginsCommand::Show { plugin } => c.get(&plugin_path(&plugin)?)?,
        PluginsCommand::Canary {
            plugin,
            version,
            percent,
        } => rollout(
            &c,
            &plugin,
            json!({"action": "canary", "version": version, "percent": percent}),
        )?,
        PluginsCommand::Promote { plugin, version } => rollout(
            &c,
            &plugin,
            json!({"action": "promote", "version": version}),
        )?,
        PluginsCommand::Rollback { plugin } => rollout(&c, &plugin, json!({"action": "rollback"}))?,
        PluginsCommand::Disable { plugin } => rollout(&c, &plugin, json!({"action": "disable"}))?,
        PluginsCommand::Enable { plugin } => rollout(&c, &plugin, json!({"action": "enable"}))?,
        PluginsCommand::Shadow { plugin, version } => {
            rollout(&c, &plugin, json!({"action": "shadow", "version": version}))?
        }
        PluginsCommand::Reinstate { plugin } => {
            rollout(&c, &plugin, json!({"action": "reinstate"}))?
        }
        PluginsCommand::Placements { plugin, placements } => rollout(
            &c,
            &plugin,
            json!({"action": "placements", "placements": placements}),
        )?,
        PluginsCommand::Limits {
            plugin,
            fuel,
            deadline_ms,
            memory_bytes,
            max_bids,
            max_output_bytes,
            max_log_bytes,
            clear,
        } => {
            let given = [
                ("fuel", fuel),
                ("deadline_ms", deadline_ms),
                ("memory_bytes", memory_bytes),
                ("max_bids", max_bids.map(u64::from)),
                ("max_output_bytes", max_output_bytes),
                ("max_log_bytes", max_log_bytes),
            ];
            let limits = if clear {
                Value::Null
            } else {
                if given.iter().all(|(_, v)| v.is_none()) {
                    bail!("name at least one limit to change (see --help), or --clear");
                }
                // The action replaces the overrides whole: start from the stored ones, so
                // that this changes only what was named.
                let entry = c.get(&plugin_path(&plugin)?)?;
                let mut limits = match entry.get("limits") {
                    Some(Value::Object(stored)) => stored.clone(),
                    _ => serde_json::Map::new(),
                };
                for (name, value) in given {
                    if let Some(v) = value {
                        limits.insert(name.to_string(), json!(v));
                    }
                }
                Value::Object(limits)
            };
            rollout(&c, &plugin, json!({"action": "limits", "limits": limits}))?
        }
        PluginsCommand::Health { plugin } => c.get(&format!("{}/health", plugin_path(&plugin)?))?,
        PluginsCommand::Readout { plugin, json } => {
            let v = c.get(&format!("{}/readout", plugin_path(&plugin)?))?;
            if !json {
                let readout = serde_json::from_value(v).context("unexpected readout answer")?;
                super::write_out(&super::render::readout(&readout))?;
                return Ok(());
            }
            v
        }
        PluginsCommand::Test {
            plugin,
            request,
            version,
        } => {
            let text = std::fs::read_to_string(&request)
                .with_context(|| format!("reading {}", request.display()))?;
            let features: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", request.display()))?;
            c.post(
                &format!("{}/test", plugin_path(&plugin)?),
                &json!({"version": version, "features": features}),
            )?
        }
    };
    print(&out)?;
    Ok(())
}

pub(super) fn config(conn: &Connection, cmd: ConfigCommand) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    let ConfigCommand::Set {
        plugin,
        values,
        unset,
    } = cmd;
    if values.is_empty() && unset.is_empty() {
        bail!("nothing to change: give KEY=VALUE pairs or --unset KEY");
    }
    let set: BTreeMap<String, String> = values.into_iter().collect();
    print(&rollout(
        &c,
        &plugin,
        json!({"action": "config", "set": set, "unset": unset}),
    )?)
}

pub(super) fn tokens(conn: &Connection, cmd: TokensCommand) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    let out = match cmd {
        TokensCommand::Create {
            name,
            role,
            partner,
        } => c.post(
            "/v1/admin/tokens",
            &json!({"name": name, "role": role, "partner": partner}),
        )?,
        TokensCommand::List => c.get("/v1/admin/tokens")?,
        TokensCommand::Revoke { name } => c.delete(&format!("/v1/admin/tokens/{name}"))?,
    };
    print(&out)?;
    Ok(())
}

pub(super) fn audit(conn: &Connection, after: u64, page_size: u64) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    // The server answers a page at a time, oldest first: read on to the newest.
    let mut entries = Vec::new();
    let mut cursor = after;
    loop {
        let page = c.get(&format!("/v1/admin/audit?after={cursor}&limit={page_size}"))?;
        let Value::Array(page) = page else {
            bail!("unexpected answer to an audit page: {page}");
        };
        let full = page.len() as u64 >= page_size;
        if let Some(last) = page.last() {
            cursor = last["seq"]
                .as_u64()
                .context("an audit entry without a sequence number")?;
        }
        entries.extend(page);
        if !full {
            break;
        }
    }
    print(&Value::Array(entries))
}

pub(super) fn profiles(conn: &Connection, cmd: ProfilesCommand) -> anyhow::Result<()> {
    let c = Client::new(conn)?;
    let ProfilesCommand::Load { file, batch } = cmd;
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    // Every line is checked here first, as the server checks it, so that a bad line
    // anywhere is reported with its line in the file and nothing is loaded.
    let mut lines: Vec<&str> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        if let Err(e) = crate::api::profiles::check_line(raw) {
            let field = match e.field.as_str() {
                "" => String::new(),
                f => format!(" {f}:"),
            };
            bail!(
                "{}, line {}:{field} {}; nothing was loaded",
                file.display(),
                i + 1,
                e.problem
            );
        }
        lines.push(raw);
    }
    if lines.is_empty() {
        bail!("{} holds no profiles", file.display());
    }
    let total = lines.len();
    let mut loaded = 0;
    for (i, chunk) in lines.chunks(batch.max(1)).enumerate() {
        let body = chunk.join("\n");
        let sent = c.post_bytes(
            "/v1/admin/profiles",
            body.as_bytes(),
            &[("content-type", "application/x-ndjson")],
        );
        if let Err(e) = sent {
            // End the progress line before the error.
            eprintln!();
            return Err(e.context(format!(
                "batch {} (profiles {}..={} of {}) failed; a batch is stored whole or not at all, and the {loaded} profiles before it were stored",
                i + 1,
                loaded + 1,
                loaded + chunk.len(),
                file.display(),
            )));
        }
        loaded += chunk.len();
        eprint!("\rloaded {loaded}/{total} profiles");
        let _ = std::io::stderr().flush();
    }
    eprintln!();
    print(&json!({"loaded": loaded}))
}
