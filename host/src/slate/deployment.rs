//! The set of partner plugins that slates call: an immutable snapshot built from the
//! registry and swapped whole.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::metrics::CallMetrics;
use crate::model::PluginInfo;
use crate::sandbox::{Limits, Plugin, PluginConfig};
use crate::store::SubjectKey;

use super::profile::FeatureField;

/// One version of a plugin, compiled.
#[derive(Clone)]
#[repr(align(128))]
pub struct Variant {
    /// The compiled plugin.
    pub plugin: Plugin,
    /// What `describe` returned at upload.
    pub info: PluginInfo,
    /// Its semver version.
    pub version: String,
    /// Component digest.
    pub digest: String,
    /// The role it plays in this snapshot: `active`, `canary` or `shadow`.
    pub role: &'static str,
    /// The row its experiment stats go to ([`crate::report::arm_row`]).
    pub arm_row: String,
    /// Its metric handles in this role.
    pub metrics: Arc<CallMetrics>,
}

/// One partner plugin, ready to call.
#[repr(align(128))]
pub struct DeployedPlugin {
    /// `partner/plugin`.
    pub key: String,
    /// Partner id.
    pub partner: String,
    /// The bucket its experiment stats go to ([`crate::report::arm_bucket`]).
    pub arm_bucket: String,
    /// Ranking weight.
    pub weight: f64,
    /// Features the partner may see.
    pub allow: Vec<FeatureField>,
    /// Segment labels the partner may see.
    pub segments: Vec<String>,
    /// Placements it bids in; empty = all.
    pub placements: Vec<String>,
    /// The active version.
    pub active: Arc<Variant>,
    /// A canary version and its share in basis points.
    pub canary: Option<(Arc<Variant>, u32)>,
    /// A shadow version.
    pub shadow: Option<Arc<Variant>>,
    /// Its configuration.
    pub config: Arc<PluginConfig>,
    /// Its per-call limits.
    pub limits: Limits,
    /// Its health, which each of its calls counts into.
    pub(crate) health: crate::registry::HealthCell,
}

/// Buckets per plugin for canary assignment.
pub const BUCKETS: u32 = 10_000;

impl DeployedPlugin {
    /// Whether it bids in `placement`.
    pub fn serves(&self, placement: &str) -> bool {
        self.placements.is_empty() || self.placements.iter().any(|p| p == placement)
    }

    /// The subject's sticky bucket `0..10_000` for this plugin. The subject key is
    /// already a salted hash; mixing in the plugin key decorrelates canaries of
    /// different plugins.
    pub fn bucket(&self, subject: &SubjectKey) -> u32 {
        let digest = Sha256::new()
            .chain_update(subject.0.as_bytes())
            .chain_update(b"/")
            .chain_update(self.key.as_bytes())
            .finalize();
        u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]) % BUCKETS
    }

    /// The version this subject gets.
    pub fn variant_for(&self, subject: &SubjectKey) -> &Arc<Variant> {
        match &self.canary {
            Some((canary, bps)) if self.bucket(subject) < *bps => canary,
            _ => &self.active,
        }
    }
}

/// Every deployed plugin. Requests hold an `Arc` to the snapshot they started with, so
/// a change never disturbs a request in flight.
#[derive(Default)]
pub struct Deployment {
    /// Plugins, in key order.
    pub plugins: Vec<Arc<DeployedPlugin>>,
}
