//! What the registry records: partners, their plugins and versions, rollout state,
//! tokens. The whole of it is one document with a revision, changed only by atomic
//! commits that also append an audit entry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::PluginInfo;
use crate::sandbox::{LimitOverrides, PluginConfig};
use crate::slate::profile::FeatureField;

/// The registry document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistryDoc {
    /// Partners by id.
    pub partners: BTreeMap<String, Partner>,
    /// Plugins by `partner/plugin-name`.
    pub plugins: BTreeMap<String, PluginEntry>,
    /// API tokens by the SHA-256 of the token (the token itself is never stored).
    pub tokens: BTreeMap<String, TokenMeta>,
}

/// A co-brand partner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Partner {
    /// Partner id, kebab-case.
    pub id: String,
    /// Ranking weight, > 0.
    pub weight: f64,
    /// Feature fields its plugins may see.
    #[serde(default)]
    pub allow: Vec<FeatureField>,
    /// Segment labels its plugins may see.
    #[serde(default)]
    pub segments: Vec<String>,
    /// Ed25519 public key (hex); when set, uploads must be signed with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// One uploaded version of a plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionMeta {
    /// Semver version (from `describe`).
    pub version: String,
    /// SHA-256 of the component, hex.
    pub digest: String,
    /// Component size, bytes.
    pub size: u64,
    /// Token name of the uploader.
    pub uploaded_by: String,
    /// Upload time, unix seconds.
    pub uploaded_at: u64,
    /// WIT package version the component targets.
    pub wit_version: String,
    /// What `describe` returned.
    pub info: PluginInfo,
}

/// A canary: a version given to a sticky share of subjects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    /// The canary version.
    pub version: String,
    /// Share of subjects, in basis points of 10 000 buckets (1 000 = 10 %).
    pub bps: u32,
}

/// A partner plugin with its versions and rollout state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginEntry {
    /// Partner id.
    pub partner: String,
    /// Plugin name (from `describe`).
    pub name: String,
    /// Versions by semver string.
    pub versions: BTreeMap<String, VersionMeta>,
    /// The version every subject gets (but canary subjects).
    pub active: Option<String>,
    /// Earlier active versions, most recent last: `rollback` pops it.
    #[serde(default)]
    pub history: Vec<String>,
    /// Canary, if any.
    #[serde(default)]
    pub canary: Option<Canary>,
    /// Shadow version: called, logged and compared, never shown.
    #[serde(default)]
    pub shadow: Option<String>,
    /// Kill switch.
    #[serde(default)]
    pub disabled: bool,
    /// Why it was quarantined, if it is.
    #[serde(default)]
    pub quarantined: Option<String>,
    /// Values for its `config` import.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, String>)]
    pub config: PluginConfig,
    /// Limit overrides (within the engine maxima); what is not overridden follows the
    /// service's `[limits]`.
    #[serde(default)]
    pub limits: Option<LimitOverrides>,
    /// Placements it bids in; empty = all.
    #[serde(default)]
    pub placements: Vec<String>,
}

impl PluginEntry {
    /// `partner/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.partner, self.name)
    }
}

/// Who a token speaks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything.
    Ops,
    /// Its own partner's plugins: upload, list, test, health.
    Partner,
    /// Slates and events only.
    App,
}

/// A token, without the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenMeta {
    /// Unique name, shown in the audit log.
    pub name: String,
    /// Role.
    pub role: Role,
    /// For partner tokens, the partner.
    #[serde(default)]
    pub partner: Option<String>,
    /// Creation time, unix seconds.
    pub created_at: u64,
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Sequence number (filled in when read).
    #[serde(default)]
    pub seq: u64,
    /// Unix seconds.
    pub at: u64,
    /// Token name (or `system`, `bootstrap`).
    pub actor: String,
    /// What was done (`upload`, `promote`, `rollback`, ...).
    pub action: String,
    /// What it was done to (`skyways/skyways-miles`, a token name, ...).
    pub target: String,
    /// The target's state before.
    pub before: serde_json::Value,
    /// The target's state after.
    pub after: serde_json::Value,
    /// Component digest, for uploads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}
