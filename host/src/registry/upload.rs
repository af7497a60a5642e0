//! Uploads: every check a component must pass before it enters the registry.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::artifacts::wasm_key;
use super::{Actor, AuditParts, PluginEntry, Registry, RegistryError, VersionMeta};
use crate::model::{
    Channel, Context, DayOfWeek, Features, LifecycleStage, PartOfDay, Rfm, Season, Tier, is_slug,
};
use crate::sandbox::{Outcome, WIT_VERSION};

/// Upload rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadLimits {
    /// Largest component accepted, bytes. Default 8 MiB.
    pub max_component_bytes: u64,
    /// Keep precompiled artifacts so restarts do not recompile. Default true.
    pub use_precompiled: bool,
}

impl Default for UploadLimits {
    fn default() -> Self {
        UploadLimits {
            max_component_bytes: 8 << 20,
            use_precompiled: true,
        }
    }
}

/// Features of the smoke call: every field set, as a partner with a full allow-list
/// would see them.
pub(crate) fn smoke_features() -> Features {
    Features {
        tier: Some(Tier::HighValue),
        lifecycle: Some(LifecycleStage::Spending),
        rfm: Some(Rfm {
            recency: 4,
            frequency: 3,
            monetary: 4,
        }),
        affinities: vec![
            crate::model::Affinity {
                category: "travel".into(),
                weight: 0.5,
            },
            crate::model::Affinity {
                category: "grocery".into(),
                weight: 0.3,
            },
        ],
        cobrand_holder: Some(true),
        region: Some("cn-sh".into()),
        placement: "app-home".into(),
        channel: Channel::MobileApp,
        context: Some(Context {
            day_of_week: DayOfWeek::Saturday,
            part_of_day: PartOfDay::Evening,
            season: Season::Summer,
            holiday: false,
        }),
        segments: vec!["frequent-flyer".into()],
    }
}

impl Registry {
    /// Validates and stores a new plugin version for `partner`. The first version of a
    /// plugin becomes active; later ones are staged until promoted or canaried.
    /// Uploading the same version with the same bytes again changes nothing.
    pub fn upload(
        &self,
        actor: &Actor,
        partner: &str,
        bytes: &[u8],
        signature: Option<&str>,
    ) -> Result<VersionMeta, RegistryError> {
        self.upload_checked(actor, partner, bytes, signature, true)
    }

    /// [`Registry::upload`], with the smoke call's failure fatal or only logged. Only
    /// the configuration bootstrap logs: ops named those files explicitly, and a plugin
    /// that keeps failing is quarantined anyway.
    pub(crate) fn upload_checked(
        &self,
        actor: &Actor,
        partner: &str,
        bytes: &[u8],
        signature: Option<&str>,
        smoke_is_fatal: bool,
    ) -> Result<VersionMeta, RegistryError> {
        if !actor.may_manage(partner) {
            return Err(RegistryError::Forbidden(format!(
                "{} may not upload for partner {partner}",
                actor.name
            )));
        }
        let doc = self.doc();
        let p = doc
            .1
            .partners
            .get(partner)
            .ok_or_else(|| RegistryError::NotFound(format!("no partner {partner:?}")))?;
        if bytes.len() as u64 > self.upload_limits.max_component_bytes {
            return Err(RegistryError::Rejected(format!(
                "the component is {} bytes, the limit is {}",
                bytes.len(),
                self.upload_limits.max_component_bytes
            )));
        }
        let digest_bytes = Sha256::digest(bytes);
        let digest = hex::encode(digest_bytes);
        if let Some(key) = &p.public_key {
            verify_signature(key, &digest_bytes, signature)?;
        }
        let plugin = self
            .sandbox
            .load(bytes)
            .map_err(|e| RegistryError::Rejected(e.to_string()))?;
        let described = self.sandbox.describe(&plugin, &self.limits);
        let info = described.value.ok_or_else(|| {
            RegistryError::Rejected(format!("describe failed: {}", described.outcome))
        })?;
        if !is_slug(&info.name, 64) {
            return Err(RegistryError::Rejected(format!(
                "plugin name {:?} is not kebab-case of 1..=64 bytes",
                info.name
            )));
        }
        if info.categories.len() > 16 || info.categories.iter().any(|c| !is_slug(c, 32)) {
            return Err(RegistryError::Rejected(format!(
                "describe lists categories {:?}: at most 16 kebab-case ids of 1..=32 bytes",
                info.categories
            )));
        }
        semver::Version::parse(&info.version).map_err(|e| {
            RegistryError::Rejected(format!(
                "plugin version {:?} is not semver: {e}",
                info.version
            ))
        })?;
        let smoke = self.sandbox.bid(
            &plugin,
            &self.smoke_features,
            &Default::default(),
            &self.limits,
        );
        match &smoke.outcome {
            Outcome::Ok | Outcome::PluginError { .. } => {}
            other if smoke_is_fatal => {
                return Err(RegistryError::Rejected(format!(
                    "the smoke call on sample features failed: {other}"
                )));
            }
            other => {
                tracing::warn!(partner, plugin = %info.name, outcome = %other, "smoke call failed; deploying anyway as configured")
            }
        }

        let key = format!("{partner}/{}", info.name);
        let meta = VersionMeta {
            version: info.version.clone(),
            digest: digest.clone(),
            size: bytes.len() as u64,
            uploaded_by: actor.name.clone(),
            uploaded_at: self.clock.unix(),
            wit_version: WIT_VERSION.to_string(),
            info: info.clone(),
        };
        let mut result = meta.clone();
        // The snapshot built inside the commit needs the compiled plugin before its bytes
        // are in the store.
        self.remember_compiled(&digest, plugin.clone());
        self.commit(actor, "upload", vec![(wasm_key(&digest), bytes.to_vec())], |doc| {
            let entry = doc.plugins.entry(key.clone()).or_insert_with(|| PluginEntry {
                partner: partner.to_string(),
                name: info.name.clone(),
                versions: Default::default(),
                active: None,
                history: Vec::new(),
                canary: None,
                shadow: None,
                disabled: false,
                quarantined: None,
                config: Default::default(),
                limits: None,
                placements: Vec::new(),
            });
            if let Some(existing) = entry.versions.get(&info.version) {
                if existing.digest == digest {
                    result = existing.clone();
                    return Ok(None);
                }
                return Err(RegistryError::Rejected(format!(
                    "{key} {} already exists with different bytes (digest {}); bump the version",
                    info.version, existing.digest
                )));
            }
            let before = serde_json::to_value(&*entry).unwrap_or_default();
            entry.versions.insert(info.version.clone(), meta.clone());
            if entry.active.is_none() {
                entry.active = Some(info.version.clone());
            }
            Ok(Some(AuditParts {
                target: key.clone(),
                before,
                after: serde_json::to_value(&*entry).unwrap_or_default(),
                digest: Some(digest.clone()),
            }))
        })?;
        self.store_precompiled(&digest, &plugin);
        Ok(result)
    }
}

fn verify_signature(
    public_key: &str,
    digest: &[u8],
    signature: Option<&str>,
) -> Result<(), RegistryError> {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    let signature = signature.ok_or_else(|| {
        RegistryError::Rejected("this partner requires signed uploads: send the ed25519 signature of the component's SHA-256 digest".into())
    })?;
    let key_bytes: [u8; 32] = hex::decode(public_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            RegistryError::Invalid("the partner's public key is not 32 bytes of hex".into())
        })?;
    let key = VerifyingKey::from_bytes(&key_bytes)
        .map_err(|e| RegistryError::Invalid(format!("the partner's public key is invalid: {e}")))?;
    let sig_bytes: [u8; 64] = hex::decode(signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| RegistryError::Rejected("the signature is not 64 bytes of hex".into()))?;
    key.verify(digest, &Signature::from_bytes(&sig_bytes))
        .map_err(|_| {
            RegistryError::Rejected(
                "the signature does not match the component and the partner's key".into(),
            )
        })
}
