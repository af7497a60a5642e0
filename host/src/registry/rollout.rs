//! Rollout state changes, partners, tokens, quarantine and the bootstrap from the
//! configuration file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    Actor, AuditParts, Canary, Partner, PluginEntry, Registry, RegistryError, Role, TokenMeta,
    token_hash,
};
use crate::config::Config;
use crate::metrics::PluginLabels;
use crate::model::is_slug;
use crate::sandbox::LimitOverrides;

/// A change to one plugin's rollout or settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum RolloutAction {
    /// Give `version` to `percent` of subjects (sticky per subject).
    Canary {
        /// A staged version.
        version: String,
        /// 0.01..=100.
        percent: f64,
    },
    /// Make `version` (default: the canary) active; the old active can be rolled back to.
    Promote {
        /// Version to promote.
        #[serde(default)]
        version: Option<String>,
    },
    /// Make the previous active version active again (and drop any canary).
    Rollback,
    /// Kill switch: stop calling the plugin.
    Disable,
    /// Undo `disable`.
    Enable,
    /// Call `version` beside the active one, log and compare, never show. `null` clears.
    Shadow {
        /// Version, or none to clear.
        #[serde(default)]
        version: Option<String>,
    },
    /// Lift a quarantine.
    Reinstate,
    /// Set and unset `config` values.
    Config {
        /// Keys to set.
        #[serde(default)]
        set: BTreeMap<String, String>,
        /// Keys to remove.
        #[serde(default)]
        unset: Vec<String>,
    },
    /// Replace the limit overrides (`null`: use the defaults). Limits left out follow the
    /// service's `[limits]`.
    Limits {
        /// New overrides.
        #[serde(default)]
        limits: Option<LimitOverrides>,
    },
    /// Replace the placements it may bid in (empty: all).
    Placements {
        /// Placement ids.
        placements: Vec<String>,
    },
}

impl RolloutAction {
    /// The audit action name.
    pub fn name(&self) -> &'static str {
        match self {
            RolloutAction::Canary { .. } => "canary",
            RolloutAction::Promote { .. } => "promote",
            RolloutAction::Rollback => "rollback",
            RolloutAction::Disable => "disable",
            RolloutAction::Enable => "enable",
            RolloutAction::Shadow { .. } => "shadow",
            RolloutAction::Reinstate => "reinstate",
            RolloutAction::Config { .. } => "config",
            RolloutAction::Limits { .. } => "limits",
            RolloutAction::Placements { .. } => "placements",
        }
    }
}

/// A plugin setting's key and value are within bounds.
fn check_setting(key: &str, value: &str) -> Result<(), RegistryError> {
    if key.is_empty() || key.len() > 64 || value.len() > 4096 {
        return Err(RegistryError::Invalid(format!(
            "config key {key:?} must be 1..=64 bytes and its value at most 4096"
        )));
    }
    Ok(())
}

fn has_version(entry: &PluginEntry, v: &str) -> Result<(), RegistryError> {
    if entry.versions.contains_key(v) {
        Ok(())
    } else {
        let known: Vec<&str> = entry.versions.keys().map(String::as_str).collect();
        Err(RegistryError::NotFound(format!(
            "{} has no version {v:?} (uploaded: {})",
            entry.key(),
            known.join(", ")
        )))
    }
}

/// A fresh random token secret (`ofh_` and 48 hex digits).
pub fn new_token_secret() -> Result<String, RegistryError> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)
        .map_err(|e| RegistryError::Invalid(format!("no randomness: {e}")))?;
    Ok(format!("ofh_{}", hex::encode(bytes)))
}

impl Registry {
    /// Applies `action` to plugin `key` (`partner/plugin`). Ops only, except that nothing
    /// here is open to partner tokens: rollout is the issuer's decision.
    pub fn rollout(
        &self,
        actor: &Actor,
        key: &str,
        action: RolloutAction,
    ) -> Result<PluginEntry, RegistryError> {
        actor.require_ops("change rollout state")?;
        if let RolloutAction::Config { set, unset } = &action {
            self.check_config(key, set, unset)?;
        }
        let max_memory = self.sandbox.engine_limits().max_memory_bytes;
        let next = self.commit(actor, action.name(), Vec::new(), |doc| {
            let entry = doc
                .plugins
                .get_mut(key)
                .ok_or_else(|| RegistryError::NotFound(format!("no plugin {key:?}")))?;
            let before = serde_json::to_value(&*entry).unwrap_or_default();
            match &action {
                RolloutAction::Canary { version, percent } => {
                    has_version(entry, version)?;
                    if entry.active.as_deref() == Some(version.as_str()) {
                        return Err(RegistryError::Invalid(format!(
                            "{version} is already active"
                        )));
                    }
                    if !(*percent > 0.0 && *percent <= 100.0) {
                        return Err(RegistryError::Invalid(format!(
                            "percent {percent} must be in (0, 100]"
                        )));
                    }
                    entry.canary = Some(Canary {
                        version: version.clone(),
                        bps: (percent * 100.0).round().max(1.0) as u32,
                    });
                }
                RolloutAction::Promote { version } => {
                    let version = match version {
                        Some(v) => v.clone(),
                        None => entry
                            .canary
                            .as_ref()
                            .map(|c| c.version.clone())
                            .ok_or_else(|| {
                                RegistryError::Invalid(
                                    "no canary to promote; name a version".into(),
                                )
                            })?,
                    };
                    has_version(entry, &version)?;
                    if entry.active.as_deref() == Some(version.as_str()) {
                        return Err(RegistryError::Invalid(format!(
                            "{version} is already active"
                        )));
                    }
                    if let Some(old) = entry.active.replace(version.clone()) {
                        entry.history.push(old);
                    }
                    // A version is never its own shadow.
                    if entry.shadow.as_deref() == Some(version.as_str()) {
                        entry.shadow = None;
                    }
                    if entry.canary.as_ref().is_some_and(|c| c.version == version) {
                        entry.canary = None;
                    }
                }
                RolloutAction::Rollback => {
                    let previous = entry.history.pop().ok_or_else(|| {
                        RegistryError::Invalid(format!(
                            "{key} has no earlier active version to roll back to"
                        ))
                    })?;
                    if entry.shadow.as_ref() == Some(&previous) {
                        entry.shadow = None;
                    }
                    entry.active = Some(previous);
                    entry.canary = None;
                }
                RolloutAction::Disable => entry.disabled = true,
                RolloutAction::Enable => entry.disabled = false,
                RolloutAction::Shadow { version } => {
                    if let Some(v) = version {
                        has_version(entry, v)?;
                        if entry.active.as_deref() == Some(v.as_str()) {
                            return Err(RegistryError::Invalid(format!(
                                "{v} is the active version: a shadow is another version, \
                                 called beside it to compare"
                            )));
                        }
                    }
                    entry.shadow = version.clone();
                }
                RolloutAction::Reinstate => {
                    if entry.quarantined.is_none() {
                        return Err(RegistryError::Invalid(format!("{key} is not quarantined")));
                    }
                    entry.quarantined = None;
                    self.reset_health(key);
                }
                RolloutAction::Config { set, unset } => {
                    for k in unset {
                        entry.config.remove(k);
                    }
                    for (k, v) in set {
                        check_setting(k, v)?;
                        entry.config.insert(k.clone(), v.clone());
                    }
                }
                RolloutAction::Limits { limits } => {
                    if let Some(memory) = limits.and_then(|l| l.memory_bytes)
                        && memory > max_memory
                    {
                        return Err(RegistryError::Invalid(format!(
                            "memory_bytes {memory} exceeds the issuer maximum {max_memory}"
                        )));
                    }
                    entry.limits = *limits;
                }
                RolloutAction::Placements { placements } => entry.placements = placements.clone(),
            }
            let after = serde_json::to_value(&*entry).unwrap_or_default();
            if after == before {
                return Ok(None);
            }
            Ok(Some(AuditParts {
                target: key.to_string(),
                before,
                after,
                digest: None,
            }))
        })?;
        next.1
            .plugins
            .get(key)
            .cloned()
            .ok_or_else(|| RegistryError::NotFound(format!("no plugin {key:?}")))
    }

    /// Calls the versions of plugin `key` that serve (active and canary) on the smoke
    /// features with its configuration changed by `set` and `unset`: a version that
    /// answers `bad-config` refuses the change, which would otherwise take it out of every
    /// slate until someone noticed.
    fn check_config(
        &self,
        key: &str,
        set: &BTreeMap<String, String>,
        unset: &[String],
    ) -> Result<(), RegistryError> {
        for (k, v) in set {
            check_setting(k, v)?;
        }
        // The newest registry, as the commit will see it (another replica may have
        // started a canary since this one last looked).
        self.reload()?;
        let doc = self.doc();
        let Some(entry) = doc.1.plugins.get(key) else {
            // The commit says so.
            return Ok(());
        };
        let mut config = entry.config.clone();
        for k in unset {
            config.remove(k);
        }
        config.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
        let config = std::sync::Arc::new(config);
        let limits = LimitOverrides::effective(entry.limits.as_ref(), self.limits);
        let serving = entry
            .active
            .iter()
            .chain(entry.canary.as_ref().map(|c| &c.version));
        for version in serving {
            let Some(meta) = entry.versions.get(version) else {
                continue;
            };
            let plugin = self.compiled_plugin(&meta.digest)?;
            let smoke = self
                .sandbox
                .bid(&plugin, &self.smoke_features, &config, &limits);
            if let crate::sandbox::Outcome::PluginError {
                error: crate::model::PluginError::BadConfig(why),
            } = smoke.outcome
            {
                return Err(RegistryError::Invalid(format!(
                    "{key} {version} rejects this configuration (bad-config: {why}); nothing was changed"
                )));
            }
        }
        Ok(())
    }

    /// Takes plugin `key` out of slates until ops reinstate it.
    pub fn quarantine(&self, key: &str, reason: &str) -> Result<(), RegistryError> {
        let mut changed = false;
        self.commit(&Actor::system("system"), "quarantine", Vec::new(), |doc| {
            changed = false;
            let Some(entry) = doc.plugins.get_mut(key) else {
                return Ok(None);
            };
            if entry.quarantined.is_some() {
                return Ok(None);
            }
            changed = true;
            let before = serde_json::to_value(&*entry).unwrap_or_default();
            entry.quarantined = Some(reason.to_string());
            Ok(Some(AuditParts {
                target: key.to_string(),
                before,
                after: serde_json::to_value(&*entry).unwrap_or_default(),
                digest: None,
            }))
        })?;
        if changed && let Some((partner, plugin)) = key.split_once('/') {
            self.metrics
                .quarantines
                .get_or_create(&PluginLabels {
                    partner: partner.to_string(),
                    plugin: plugin.to_string(),
                })
                .inc();
        }
        Ok(())
    }

    /// Adds or updates a partner. Ops only.
    pub fn put_partner(&self, actor: &Actor, partner: Partner) -> Result<Partner, RegistryError> {
        actor.require_ops("manage partners")?;
        if !is_slug(&partner.id, 32) {
            return Err(RegistryError::Invalid(format!(
                "partner id {:?} must be kebab-case, 1..=32 bytes",
                partner.id
            )));
        }
        if !(partner.weight.is_finite() && partner.weight > 0.0) {
            return Err(RegistryError::Invalid(format!(
                "weight {} must be > 0",
                partner.weight
            )));
        }
        if let Some(k) = &partner.public_key
            && !hex::decode(k).is_ok_and(|b| b.len() == 32)
        {
            return Err(RegistryError::Invalid(
                "public_key must be 32 bytes of hex (an ed25519 public key)".into(),
            ));
        }
        self.commit(actor, "partner", Vec::new(), |doc| {
            let before = serde_json::to_value(doc.partners.get(&partner.id)).unwrap_or_default();
            if doc.partners.get(&partner.id) == Some(&partner) {
                return Ok(None);
            }
            doc.partners.insert(partner.id.clone(), partner.clone());
            Ok(Some(AuditParts {
                target: partner.id.clone(),
                before,
                after: serde_json::to_value(&partner).unwrap_or_default(),
                digest: None,
            }))
        })?;
        Ok(partner)
    }

    /// Creates a token and returns its secret (shown once; only its hash is stored).
    pub fn create_token(
        &self,
        actor: &Actor,
        name: &str,
        role: Role,
        partner: Option<&str>,
    ) -> Result<String, RegistryError> {
        self.fresh_token(actor, name, role, partner, false)
    }

    /// Creates token `name` with a fresh secret, replacing the token of that name if there
    /// is one (its secret stops working) in the same commit, so that even the only ops
    /// token can be renewed. Returns the new secret.
    pub fn renew_token(
        &self,
        actor: &Actor,
        name: &str,
        role: Role,
        partner: Option<&str>,
    ) -> Result<String, RegistryError> {
        self.fresh_token(actor, name, role, partner, true)
    }

    /// A new token with a fresh secret, replacing one of the same name when `replace`;
    /// its secret.
    fn fresh_token(
        &self,
        actor: &Actor,
        name: &str,
        role: Role,
        partner: Option<&str>,
        replace: bool,
    ) -> Result<String, RegistryError> {
        let secret = new_token_secret()?;
        self.put_token(actor, name, role, partner, &secret, replace)?;
        Ok(secret)
    }

    /// Registers a token with a given secret (bootstrap, tests).
    pub fn add_token(
        &self,
        actor: &Actor,
        name: &str,
        role: Role,
        partner: Option<&str>,
        secret: &str,
    ) -> Result<(), RegistryError> {
        self.put_token(actor, name, role, partner, secret, false)
    }

    /// [`Registry::add_token`], replacing a token of the same name when `replace`.
    fn put_token(
        &self,
        actor: &Actor,
        name: &str,
        role: Role,
        partner: Option<&str>,
        secret: &str,
        replace: bool,
    ) -> Result<(), RegistryError> {
        actor.require_ops("manage tokens")?;
        if !is_slug(name, 64) {
            return Err(RegistryError::Invalid(format!(
                "token name {name:?} must be kebab-case, 1..=64 bytes"
            )));
        }
        if secret.len() < 16 {
            return Err(RegistryError::Invalid(
                "a token must be at least 16 characters".into(),
            ));
        }
        match (role, partner) {
            (Role::Partner, None) => {
                return Err(RegistryError::Invalid(
                    "a partner token needs --partner".into(),
                ));
            }
            (Role::Ops | Role::App, Some(_)) => {
                return Err(RegistryError::Invalid(
                    "only partner tokens name a partner".into(),
                ));
            }
            _ => {}
        }
        let now = self.clock.unix();
        self.commit(actor, "token-create", Vec::new(), |doc| {
            if let Some(p) = partner
                && !doc.partners.contains_key(p)
            {
                return Err(RegistryError::NotFound(format!("no partner {p:?}")));
            }
            let before = (doc.tokens.iter()).find(|(_, t)| t.name == name);
            let before = match before {
                Some(_) if !replace => {
                    return Err(RegistryError::Conflict(format!(
                        "a token named {name:?} exists; revoke it first"
                    )));
                }
                Some((hash, _)) => {
                    let hash = hash.clone();
                    doc.tokens.remove(&hash)
                }
                None => None,
            };
            let meta = TokenMeta {
                name: name.to_string(),
                role,
                partner: partner.map(str::to_string),
                created_at: now,
            };
            doc.tokens.insert(token_hash(secret), meta.clone());
            Ok(Some(AuditParts {
                target: format!("token:{name}"),
                before: serde_json::to_value(&before).unwrap_or_default(),
                after: serde_json::to_value(&meta).unwrap_or_default(),
                digest: None,
            }))
        })?;
        Ok(())
    }

    /// Revokes the token named `name`.
    pub fn revoke_token(&self, actor: &Actor, name: &str) -> Result<(), RegistryError> {
        actor.require_ops("manage tokens")?;
        self.commit(actor, "token-revoke", Vec::new(), |doc| {
            let hash = doc
                .tokens
                .iter()
                .find(|(_, t)| t.name == name)
                .map(|(h, _)| h.clone())
                .ok_or_else(|| RegistryError::NotFound(format!("no token named {name:?}")))?;
            let ops_tokens = doc.tokens.values().filter(|t| t.role == Role::Ops).count();
            if doc.tokens[&hash].role == Role::Ops && ops_tokens == 1 {
                return Err(RegistryError::Invalid(format!(
                    "{name:?} is the last ops token: create another ops token first, or nobody \
                     could manage partners, plugins or tokens any more"
                )));
            }
            let meta = doc.tokens.remove(&hash);
            Ok(Some(AuditParts {
                target: format!("token:{name}"),
                before: serde_json::to_value(&meta).unwrap_or_default(),
                after: serde_json::Value::Null,
                digest: None,
            }))
        })?;
        Ok(())
    }

    /// Seeds the registry from the configuration's `[[partner]]` entries: each partner
    /// not yet registered is added, its plugin file uploaded and activated, its config,
    /// limits and placements set. Partners already in the registry are left alone: after
    /// the first start the registry, not the file, is the source of truth.
    pub fn bootstrap(&self, config: &Config) -> Result<(), RegistryError> {
        let actor = Actor::system("bootstrap");
        for p in config.partners.iter() {
            let doc = self.doc();
            if doc.1.plugins.values().any(|e| e.partner == p.id) {
                continue;
            }
            // A partner left without a plugin by an earlier failed start is completed.
            self.put_partner(
                &actor,
                Partner {
                    id: p.id.clone(),
                    weight: p.weight,
                    allow: p.allow.clone(),
                    segments: p.segments.clone(),
                    public_key: None,
                },
            )?;
            let bytes = std::fs::read(&p.plugin).map_err(|e| {
                RegistryError::Invalid(format!(
                    "partner {}: cannot read plugin {}: {e}",
                    p.id,
                    p.plugin.display()
                ))
            })?;
            let meta = self
                .upload_checked(&actor, &p.id, &bytes, None, false)
                .map_err(|e| {
                    RegistryError::Invalid(format!(
                        "partner {}: plugin {}: {e}",
                        p.id,
                        p.plugin.display()
                    ))
                })?;
            let key = format!("{}/{}", p.id, meta.info.name);
            if !p.config.is_empty() {
                let set = p.config.clone();
                self.rollout(
                    &actor,
                    &key,
                    RolloutAction::Config {
                        set,
                        unset: Vec::new(),
                    },
                )?;
            }
            if p.limits.is_some() {
                self.rollout(&actor, &key, RolloutAction::Limits { limits: p.limits })?;
            }
            if !p.placements.is_empty() {
                self.rollout(
                    &actor,
                    &key,
                    RolloutAction::Placements {
                        placements: p.placements.clone(),
                    },
                )?;
            }
            if !p.enabled {
                self.rollout(&actor, &key, RolloutAction::Disable)?;
            }
        }
        Ok(())
    }
}
