//! The service configuration: one TOML file, unknown keys rejected, every value
//! overridable from the environment.
//!
//! Environment overrides use `OFFERHOST__` followed by the key path joined with `__`,
//! for example `OFFERHOST__SLATE__DEADLINE_MS=200` or `OFFERHOST__STORE_PATH=/var/lib/x`.
//! The value is read as TOML (`200`, `true`, `"text"`), and as a plain string when it is
//! not valid TOML. Keys inside arrays (placements, partners, caps) are not overridable.
//! A complete example is `host/examples/offerhost.toml`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::{Channel, is_slug};
use crate::registry::{QuarantinePolicy, UploadLimits};
use crate::report::offers::ReportConfig;
use crate::sandbox::{EngineLimits, LimitOverrides, Limits, PluginConfig};
use crate::slate::caps::FrequencyCap;
use crate::slate::profile::{FeatureField, RfmCutPoints};

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause (not a chained `source`: the message already says it once).
        cause: std::io::Error,
    },
    /// Not valid TOML or not the expected shape.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong and where.
        message: String,
    },
    /// Valid shape, invalid meaning.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:8080`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Directory of the embedded sled store, relative to the config file. Default `data`.
    #[serde(default = "default_store_path")]
    pub store_path: PathBuf,
    /// Use a Redis server instead of the embedded store, for several replicas:
    /// `redis://host:port/db`, or `redis-cluster://host:port,host:port` for a Redis
    /// Cluster. Default: none (sled at `store_path`).
    #[serde(default)]
    pub store_url: Option<String>,
    /// Prefix of every Redis key, so several deployments can share a server.
    /// Default `oh:`.
    #[serde(default = "default_prefix")]
    pub store_prefix: String,
    /// Secret mixed into the hash that turns subject ids into store keys and buckets, so
    /// keys cannot be reversed by hashing guessed ids. Set it in production.
    #[serde(default = "default_salt")]
    pub subject_salt: String,
    /// ISO 4217 currency that bid values are in. Default `CNY`.
    #[serde(default = "default_currency")]
    pub currency: String,
    /// Minutes east of UTC of the customers' local time, for the time context.
    /// Default 480 (China Standard Time).
    #[serde(default = "default_utc_offset")]
    pub utc_offset_minutes: i32,
    /// Dates (`YYYY-MM-DD`, local) that count as holidays in the time context.
    #[serde(default)]
    pub holidays: Vec<String>,
    /// Slate assembly.
    #[serde(default)]
    pub slate: SlateConfig,
    /// HTTP server limits.
    #[serde(default)]
    pub http: HttpConfig,
    /// Default per-call plugin limits.
    #[serde(default)]
    pub limits: Limits,
    /// Engine-wide maxima.
    #[serde(default)]
    pub engine: EngineLimits,
    /// RFM bucket cut points.
    #[serde(default)]
    pub rfm: RfmCutPoints,
    /// Upload rules for the plugin registry.
    #[serde(default)]
    pub registry: UploadLimits,
    /// Automatic quarantine of failing plugins.
    #[serde(default)]
    pub quarantine: QuarantinePolicy,
    /// Privacy of partner reports.
    #[serde(default)]
    pub reports: ReportConfig,
    /// Where slates are shown.
    #[serde(default, rename = "placement")]
    pub placements: Vec<PlacementConfig>,
    /// Partners and their plugins.
    #[serde(default, rename = "partner")]
    pub partners: Vec<PartnerConfig>,
    /// Frequency caps, all applied to every slate.
    #[serde(default, rename = "cap")]
    pub caps: Vec<FrequencyCap>,
}

/// Slate assembly settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlateConfig {
    /// Deadline for the whole plugin fan-out, milliseconds. Late plugins are dropped.
    /// Default 100.
    pub deadline_ms: u64,
    /// Most slots a request may ask for. Default 10.
    pub max_slots: u32,
    /// Count an impression for every offer served, instead of waiting for the app's
    /// impression event. Default false. When true, impression events are still
    /// accepted (idempotently) but do not count again.
    pub count_on_serve: bool,
    /// How long a slate can be referred to by events, hours. Default 168 (a week).
    pub retention_hours: u64,
}

impl Default for SlateConfig {
    fn default() -> Self {
        SlateConfig {
            deadline_ms: 100,
            max_slots: 10,
            count_on_serve: false,
            retention_hours: 168,
        }
    }
}

/// HTTP server limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest request body for slates and events, bytes. Default 64 KiB.
    pub max_body_bytes: usize,
    /// Largest bulk profile upload, bytes. Default 32 MiB.
    pub max_bulk_bytes: usize,
    /// Requests running longer are answered 503, milliseconds. Default 2000.
    pub request_timeout_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body_bytes: 64 << 10,
            max_bulk_bytes: 32 << 20,
            request_timeout_ms: 2000,
        }
    }
}

/// One placement.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementConfig {
    /// Placement id, kebab-case (`app-home`).
    pub id: String,
    /// Channel the placement is shown in. Default `mobile-app`.
    #[serde(default)]
    pub channel: Channel,
    /// Slots when the request does not say. Default 3.
    #[serde(default = "default_slots")]
    pub slots: u32,
    /// Reserve price: bids below this value (minor units per impression) are dropped.
    /// Default 0.
    #[serde(default)]
    pub floor_minor: u64,
    /// Offer categories never shown here.
    #[serde(default)]
    pub excluded_categories: Vec<String>,
    /// Most offers one partner may have in a slate. Default 1.
    #[serde(default = "default_max_per_partner")]
    pub max_per_partner: u32,
}

/// One partner and its plugin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerConfig {
    /// Partner id, kebab-case (`skyways`). Co-brand holdings in profiles name it.
    pub id: String,
    /// Ranking weight, > 0. Default 1.0.
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// Feature fields this partner's plugin may see; the rest are withheld.
    /// Default: none but placement and channel.
    #[serde(default)]
    pub allow: Vec<FeatureField>,
    /// Segment labels this partner may see (when `segments` is allowed).
    #[serde(default)]
    pub segments: Vec<String>,
    /// Placements the partner bids in. Empty: all.
    #[serde(default)]
    pub placements: Vec<String>,
    /// The plugin component, relative to the config file.
    pub plugin: PathBuf,
    /// Values the plugin reads through its `config` import.
    #[serde(default)]
    pub config: PluginConfig,
    /// Limit overrides for this plugin (each within the engine maxima); what is not
    /// given follows `[limits]`.
    #[serde(default)]
    pub limits: Option<LimitOverrides>,
    /// When false, the plugin is not called. Default true.
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_store_path() -> PathBuf {
    "data".into()
}
fn default_prefix() -> String {
    "oh:".into()
}
/// The salt used when none is configured; `serve` warns about it.
pub const DEFAULT_SALT: &str = "offerhost-default-salt";

fn default_salt() -> String {
    DEFAULT_SALT.into()
}
fn default_currency() -> String {
    "CNY".into()
}
fn default_utc_offset() -> i32 {
    480
}
fn default_slots() -> u32 {
    3
}
fn default_max_per_partner() -> u32 {
    1
}
fn default_weight() -> f64 {
    1.0
}
fn default_true() -> bool {
    true
}

impl Config {
    /// Reads `path`, applies environment overrides from `env`, checks the result and
    /// resolves relative paths against the file's directory.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, env, base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            ConfigError::Invalid { message, .. } => ConfigError::Invalid {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses TOML text; relative paths are resolved against `base`.
    pub fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
        base: &Path,
    ) -> Result<Config, ConfigError> {
        let parse_err = |message: String| ConfigError::Parse {
            path: PathBuf::new(),
            message,
        };
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| parse_err(e.to_string()))?;
        // Each override's key path and variable, to blame the variable for a bad value.
        let mut overrides: Vec<(String, String)> = Vec::new();
        for (name, value) in env {
            let Some(path) = name.strip_prefix("OFFERHOST__") else {
                continue;
            };
            let keys: Vec<String> = path.split("__").map(|k| k.to_lowercase()).collect();
            apply_override(&mut table, &keys, &value)
                .map_err(|m| parse_err(format!("{name}: {m}")))?;
            overrides.push((keys.join("."), name));
        }
        let mut config: Config = Config::deserialize(toml::Value::Table(table)).map_err(|e| {
            let message = e.to_string();
            let from_env = (overrides.iter())
                .find(|(key, _)| message.trim_end().ends_with(&format!("in `{key}`")));
            parse_err(match from_env {
                Some((_, name)) => format!("{} (the value comes from {name})", message.trim_end()),
                None => message,
            })
        })?;
        config.check().map_err(|message| ConfigError::Invalid {
            path: PathBuf::new(),
            message,
        })?;
        if config.store_path.is_relative() {
            config.store_path = base.join(&config.store_path);
        }
        for p in &mut config.partners {
            if p.plugin.is_relative() {
                p.plugin = base.join(&p.plugin);
            }
        }
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        self.reports.validate()?;
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.placements {
            if !is_slug(&p.id, 32) {
                return Err(format!(
                    "placement id {:?} must be kebab-case, 1..=32 bytes",
                    p.id
                ));
            }
            if !seen.insert(&p.id) {
                return Err(format!("placement {:?} is defined twice", p.id));
            }
            if p.slots == 0 || p.slots > self.slate.max_slots {
                return Err(format!(
                    "placement {:?}: slots {} must be 1..={} (slate.max_slots)",
                    p.id, p.slots, self.slate.max_slots
                ));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in &self.partners {
            if !is_slug(&p.id, 32) {
                return Err(format!(
                    "partner id {:?} must be kebab-case, 1..=32 bytes",
                    p.id
                ));
            }
            if !seen.insert(&p.id) {
                return Err(format!("partner {:?} is defined twice", p.id));
            }
            if !(p.weight.is_finite() && p.weight > 0.0) {
                return Err(format!(
                    "partner {:?}: weight {} must be > 0",
                    p.id, p.weight
                ));
            }
            for placement in &p.placements {
                if !self.placements.iter().any(|pl| &pl.id == placement) {
                    return Err(format!(
                        "partner {:?}: unknown placement {placement:?}",
                        p.id
                    ));
                }
            }
            if let Some(memory) = p.limits.and_then(|l| l.memory_bytes)
                && memory > self.engine.max_memory_bytes
            {
                return Err(format!(
                    "partner {:?}: limits.memory_bytes {memory} exceeds engine.max_memory_bytes {}",
                    p.id, self.engine.max_memory_bytes
                ));
            }
        }
        for (i, cap) in self.caps.iter().enumerate() {
            if cap.max == 0 {
                return Err(format!(
                    "cap[{i}]: max must be at least 1 (disable a partner instead)"
                ));
            }
        }
        for (i, d) in self.holidays.iter().enumerate() {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            time::Date::parse(d, format)
                .map_err(|e| format!("holidays[{i}]: {d:?} is not a YYYY-MM-DD date: {e}"))?;
        }
        if self.limits.deadline_ms > self.slate.deadline_ms {
            return Err(format!(
                "limits.deadline_ms {} exceeds slate.deadline_ms {}: a plugin could never finish",
                self.limits.deadline_ms, self.slate.deadline_ms
            ));
        }
        if self.slate.retention_hours > 720 {
            return Err(format!(
                "slate.retention_hours {} exceeds 720: event ids are remembered for 30 days",
                self.slate.retention_hours
            ));
        }
        if !(-18 * 60..=18 * 60).contains(&self.utc_offset_minutes) {
            return Err(format!(
                "utc_offset_minutes {} must be within -1080..=1080",
                self.utc_offset_minutes
            ));
        }
        self.rfm.check()?;
        Ok(())
    }

    /// The placement with id `id`.
    pub fn placement(&self, id: &str) -> Option<&PlacementConfig> {
        self.placements.iter().find(|p| p.id == id)
    }
}

fn apply_override(table: &mut toml::Table, keys: &[String], raw: &str) -> Result<(), String> {
    let (last, parents) = keys.split_last().ok_or("empty key")?;
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(Default::default()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{key}` is not a table"))?;
    }
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    current.insert(last.clone(), value);
    Ok(())
}
