//! The set of partner plugins that slates call: an immutable snapshot, swapped whole.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::{Config, PartnerConfig};
use crate::model::PluginInfo;
use crate::sandbox::{Limits, LoadError, Plugin, PluginConfig, Sandbox};

use super::profile::FeatureField;

/// One partner's plugin, ready to call.
pub struct DeployedPlugin {
    /// Partner id.
    pub partner: String,
    /// Ranking weight.
    pub weight: f64,
    /// Features the partner may see.
    pub allow: Vec<FeatureField>,
    /// Segment labels the partner may see.
    pub segments: Vec<String>,
    /// Placements it bids in; empty = all.
    pub placements: Vec<String>,
    /// The compiled plugin.
    pub plugin: Plugin,
    /// What `describe` returned at load.
    pub info: PluginInfo,
    /// Its configuration.
    pub config: Arc<PluginConfig>,
    /// Its per-call limits.
    pub limits: Limits,
}

impl DeployedPlugin {
    /// Whether it bids in `placement`.
    pub fn serves(&self, placement: &str) -> bool {
        self.placements.is_empty() || self.placements.iter().any(|p| p == placement)
    }
}

/// Every deployed plugin. Requests hold an `Arc` to the snapshot they started with, so
/// a change never disturbs a request in flight.
#[derive(Default)]
pub struct Deployment {
    /// Plugins, in partner-id order.
    pub plugins: Vec<Arc<DeployedPlugin>>,
}

/// Why a plugin from the configuration could not be deployed.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The file could not be read.
    #[error("partner {partner}: cannot read plugin {path}: {source}")]
    Read {
        /// Partner id.
        partner: String,
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The component was refused.
    #[error("partner {partner}: plugin {path}: {source}")]
    Load {
        /// Partner id.
        partner: String,
        /// The file.
        path: PathBuf,
        /// Cause.
        source: LoadError,
    },
    /// `describe` failed.
    #[error("partner {partner}: plugin {path}: describe failed: {outcome}")]
    Describe {
        /// Partner id.
        partner: String,
        /// The file.
        path: PathBuf,
        /// How it failed.
        outcome: String,
    },
}

impl Deployment {
    /// Loads every enabled partner's plugin from `config`.
    pub fn from_config(config: &Config, sandbox: &Sandbox) -> Result<Deployment, DeployError> {
        let mut plugins = Vec::new();
        for p in config.partners.iter().filter(|p| p.enabled) {
            plugins.push(Arc::new(deploy(p, config, sandbox)?));
        }
        plugins.sort_by(|a, b| a.partner.cmp(&b.partner));
        Ok(Deployment { plugins })
    }
}

fn deploy(
    p: &PartnerConfig,
    config: &Config,
    sandbox: &Sandbox,
) -> Result<DeployedPlugin, DeployError> {
    let bytes = std::fs::read(&p.plugin).map_err(|source| DeployError::Read {
        partner: p.id.clone(),
        path: p.plugin.clone(),
        source,
    })?;
    let plugin = sandbox.load(&bytes).map_err(|source| DeployError::Load {
        partner: p.id.clone(),
        path: p.plugin.clone(),
        source,
    })?;
    let limits = p.limits.unwrap_or(config.limits);
    let described = sandbox.describe(&plugin, &limits);
    let info = described.value.ok_or_else(|| DeployError::Describe {
        partner: p.id.clone(),
        path: p.plugin.clone(),
        outcome: described.outcome.to_string(),
    })?;
    Ok(DeployedPlugin {
        partner: p.id.clone(),
        weight: p.weight,
        allow: p.allow.clone(),
        segments: p.segments.clone(),
        placements: p.placements.clone(),
        plugin,
        info,
        config: Arc::new(p.config.clone()),
        limits,
    })
}
