//! The plugin registry: partners, plugin versions and their rollout, tokens and the audit
//! log, all in the store; and the immutable [`Deployment`] snapshot built from it that
//! slates use.
//!
//! Every change is one atomic commit of the whole registry document (checked against
//! its revision, so two writers never lose each other's change) together with its audit
//! entry. After a commit the snapshot is rebuilt and swapped: requests in flight keep the
//! snapshot they started with.

mod artifacts;
mod health;
pub mod model;
mod rollout;
mod upload;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};

use crate::clock::Clock;
use crate::metrics::{ActionLabels, ArmLabels, Metrics};
use crate::model::Features;
use crate::sandbox::{LimitOverrides, Limits, Plugin, Sandbox};
use crate::slate::deployment::{DeployedPlugin, Deployment, Variant};
use crate::store::{Store, StoreError};
pub(crate) use health::{HealthCell, is_failure};
pub use health::{HealthReport, QuarantinePolicy};
pub use model::{
    AuditEntry, Canary, Partner, PluginEntry, RegistryDoc, Role, TokenMeta, VersionMeta,
};
pub use rollout::{RolloutAction, new_token_secret};
pub use upload::UploadLimits;

/// Who is making a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Token name (or `system`, `bootstrap`).
    pub name: String,
    /// Role.
    pub role: Role,
    /// Partner, for partner tokens.
    pub partner: Option<String>,
}

impl Actor {
    /// The host itself (quarantine, bootstrap).
    pub fn system(name: &str) -> Actor {
        Actor {
            name: name.to_string(),
            role: Role::Ops,
            partner: None,
        }
    }

    /// Refuses unless the actor is ops: "`name` may not `what`".
    pub fn require_ops(&self, what: &str) -> Result<(), RegistryError> {
        if self.role == Role::Ops {
            Ok(())
        } else {
            Err(RegistryError::Forbidden(format!(
                "{} may not {what}",
                self.name
            )))
        }
    }

    /// May this actor act on `partner`'s plugins?
    pub fn may_manage(&self, partner: &str) -> bool {
        match self.role {
            Role::Ops => true,
            Role::Partner => self.partner.as_deref() == Some(partner),
            Role::App => false,
        }
    }
}

/// Why a registry operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Something named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed or breaks a rule.
    #[error("{0}")]
    Invalid(String),
    /// The upload was refused (the registry is unchanged).
    #[error("{0}")]
    Rejected(String),
    /// It conflicts with what is there.
    #[error("{0}")]
    Conflict(String),
    /// The actor may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The registry service.
pub struct Registry {
    store: Arc<dyn Store>,
    sandbox: Arc<Sandbox>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    upload_limits: UploadLimits,
    current: ArcSwap<(u64, RegistryDoc)>,
    deployment: ArcSwap<Deployment>,
    /// Compiled plugins by component digest.
    compiled: Mutex<HashMap<String, Plugin>>,
    /// Serializes commits from this process (the revision check covers other processes).
    write_lock: Mutex<()>,
    /// Serializes installing a snapshot, so an older revision never replaces a newer one.
    install_lock: Mutex<()>,
    /// Features of the smoke call every upload must pass.
    smoke_features: Features,
    quarantine_policy: QuarantinePolicy,
    health: Mutex<health::HealthBook>,
    metrics: Arc<Metrics>,
}

const COMMIT_ATTEMPTS: usize = 5;

impl Registry {
    /// Opens the registry in `store` and builds the first snapshot.
    pub fn open(
        store: Arc<dyn Store>,
        sandbox: Arc<Sandbox>,
        clock: Arc<dyn Clock>,
        limits: Limits,
        upload_limits: UploadLimits,
        quarantine_policy: QuarantinePolicy,
    ) -> Result<Registry, RegistryError> {
        let registry = Registry {
            store,
            sandbox,
            clock,
            limits,
            upload_limits,
            current: ArcSwap::from_pointee((0, RegistryDoc::default())),
            deployment: ArcSwap::from_pointee(Deployment::default()),
            compiled: Mutex::new(HashMap::new()),
            write_lock: Mutex::new(()),
            install_lock: Mutex::new(()),
            smoke_features: upload::smoke_features(),
            quarantine_policy,
            health: Mutex::new(Default::default()),
            metrics: Arc::new(Metrics::default()),
        };
        registry.reload()?;
        Ok(registry)
    }

    /// The current snapshot.
    pub fn deployment(&self) -> Arc<Deployment> {
        self.deployment.load_full()
    }

    /// The current document and its revision.
    pub fn doc(&self) -> Arc<(u64, RegistryDoc)> {
        self.current.load_full()
    }

    /// The service's metrics (kept here because registry changes count in them).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The sandbox plugins run in.
    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    /// Re-reads the document from the store and swaps the snapshot if it changed.
    /// Returns the revision now in effect.
    pub fn reload(&self) -> Result<u64, RegistryError> {
        let (rev, bytes) = self.store.registry()?;
        if rev == self.current.load().0 && rev != 0 {
            return Ok(rev);
        }
        let doc: RegistryDoc = match bytes {
            Some(b) => serde_json::from_slice(&b).map_err(|e| StoreError::Corrupt {
                key: "registry".into(),
                message: e.to_string(),
            })?,
            None => RegistryDoc::default(),
        };
        self.install(rev, doc)?;
        Ok(rev)
    }

    fn install(&self, rev: u64, doc: RegistryDoc) -> Result<(), RegistryError> {
        let deployment = self.build_deployment(&doc);
        self.install_built(rev, doc, deployment);
        Ok(())
    }

    fn install_built(&self, rev: u64, doc: RegistryDoc, deployment: Deployment) {
        let _guard = self.install_lock.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.current.load().0;
        if rev < current || (rev == current && rev != 0) {
            return;
        }
        self.current.store(Arc::new((rev, doc)));
        self.deployment.store(Arc::new(deployment));
    }

    /// Applies `change` to the document and commits it with an audit entry. `change`
    /// returns `(target, before, after, digest)` for the audit entry, or `None` when
    /// there is nothing to change.
    pub(crate) fn commit(
        &self,
        actor: &Actor,
        action: &str,
        blobs: Vec<(String, Vec<u8>)>,
        mut change: impl FnMut(&mut RegistryDoc) -> Result<Option<AuditParts>, RegistryError>,
    ) -> Result<Arc<(u64, RegistryDoc)>, RegistryError> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..COMMIT_ATTEMPTS {
            self.reload()?;
            let current = self.current.load_full();
            let mut doc = current.1.clone();
            let Some(parts) = change(&mut doc)? else {
                return Ok(current);
            };
            // Build the new snapshot before committing, so a commit never leaves the
            // store with a registry this host cannot load.
            let deployment = self.build_deployment(&doc);
            let entry = AuditEntry {
                seq: 0,
                at: self.clock.unix(),
                actor: actor.name.clone(),
                action: action.to_string(),
                target: parts.target,
                before: parts.before,
                after: parts.after,
                digest: parts.digest,
            };
            let doc_bytes = serde_json::to_vec(&doc).expect("registry serializes");
            let audit_bytes = serde_json::to_vec(&entry).expect("audit serializes");
            if self
                .store
                .commit_registry(current.0, &doc_bytes, &audit_bytes, &blobs)?
            {
                self.install_built(current.0 + 1, doc, deployment);
                self.metrics
                    .registry_changes
                    .get_or_create(&ActionLabels {
                        action: action.to_string(),
                    })
                    .inc();
                let next = self.current.load_full();
                tracing::info!(actor = %actor.name, action, target = %entry.target, rev = next.0, "registry change");
                return Ok(next);
            }
        }
        Err(RegistryError::Conflict(
            "the registry kept changing under this request; retry".into(),
        ))
    }

    /// Audit entries after `after`.
    pub fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, RegistryError> {
        self.store
            .audit(after, limit)?
            .into_iter()
            .map(|(seq, bytes)| {
                let mut e: AuditEntry =
                    serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                        key: format!("audit/{seq}"),
                        message: e.to_string(),
                    })?;
                e.seq = seq;
                Ok(e)
            })
            .collect()
    }

    /// The token's holder, if the token is known.
    pub fn authenticate(&self, token: &str) -> Option<Actor> {
        let doc = self.current.load();
        doc.1.tokens.get(&token_hash(token)).map(|t| Actor {
            name: t.name.clone(),
            role: t.role,
            partner: t.partner.clone(),
        })
    }

    /// The snapshot for `doc`. A plugin whose stored component cannot be loaded is left
    /// out (and logged) rather than failing every other plugin with it.
    fn build_deployment(&self, doc: &RegistryDoc) -> Deployment {
        let mut plugins = Vec::new();
        for entry in doc.plugins.values() {
            if entry.disabled || entry.quarantined.is_some() {
                continue;
            }
            let (Some(active), Some(partner)) = (&entry.active, doc.partners.get(&entry.partner))
            else {
                continue;
            };
            let canary = entry.canary.as_ref().map(|c| c.version.as_str());
            // Each version's role, stats row and metric handles are fixed for the life
            // of the snapshot: plugin calls only look them up.
            let variant = |version: &str,
                           role: &'static str,
                           beside: Option<&str>|
             -> Result<Arc<Variant>, RegistryError> {
                let meta = entry.versions.get(version).ok_or_else(|| {
                    RegistryError::NotFound(format!("{} has no version {version}", entry.key()))
                })?;
                Ok(Arc::new(Variant {
                    plugin: self.compiled_plugin(&meta.digest)?,
                    info: meta.info.clone(),
                    version: meta.version.clone(),
                    digest: meta.digest.clone(),
                    role,
                    arm_row: crate::report::arm_row(version, role, beside),
                    metrics: Arc::new(self.metrics.call_metrics(ArmLabels {
                        partner: entry.partner.clone(),
                        plugin: meta.info.name.clone(),
                        version: meta.version.clone(),
                        arm: role,
                    })),
                }))
            };
            let deployed = (|| -> Result<DeployedPlugin, RegistryError> {
                Ok(DeployedPlugin {
                    key: entry.key(),
                    arm_bucket: crate::report::arm_bucket(&entry.key()),
                    partner: partner.id.clone(),
                    weight: partner.weight,
                    allow: partner.allow.clone(),
                    segments: partner.segments.clone(),
                    placements: entry.placements.clone(),
                    active: variant(active, "active", canary)?,
                    canary: match &entry.canary {
                        Some(c) => Some((variant(&c.version, "canary", Some(active))?, c.bps)),
                        None => None,
                    },
                    shadow: match &entry.shadow {
                        Some(v) => Some(variant(v, "shadow", Some(active))?),
                        None => None,
                    },
                    config: Arc::new(entry.config.clone()),
                    limits: LimitOverrides::effective(entry.limits.as_ref(), self.limits),
                    health: self.health_cell(&entry.key()),
                })
            })();
            match deployed {
                Ok(p) => plugins.push(Arc::new(p)),
                Err(e) => {
                    tracing::error!(plugin = %entry.key(), error = %e, "plugin left out of the deployment: it cannot be loaded")
                }
            }
        }
        Deployment { plugins }
    }
}

/// The parts of an audit entry a change supplies.
pub(crate) struct AuditParts {
    pub(crate) target: String,
    pub(crate) before: serde_json::Value,
    pub(crate) after: serde_json::Value,
    pub(crate) digest: Option<String>,
}

/// SHA-256 of a token, hex: what the registry stores.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
