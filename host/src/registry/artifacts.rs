//! Compiled plugins: in memory by digest, on disk as precompiled artifacts keyed by
//! digest and engine compatibility, so a restart with many versions deployed does not
//! recompile them.

use super::{Registry, RegistryError};
use crate::sandbox::Plugin;
use crate::store::StoreError;

/// Store key of a component's bytes.
pub(crate) fn wasm_key(digest: &str) -> String {
    format!("wasm/{digest}")
}

fn cwasm_key(digest: &str, compat: &str) -> String {
    format!("cwasm/{digest}/{compat}")
}

impl Registry {
    pub(crate) fn remember_compiled(&self, digest: &str, plugin: Plugin) {
        self.compiled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(digest.to_string(), plugin);
    }

    /// Stores the precompiled artifact of an accepted plugin, if not there yet.
    pub(crate) fn store_precompiled(&self, digest: &str, plugin: &Plugin) {
        if !self.upload_limits.use_precompiled {
            return;
        }
        let key = cwasm_key(digest, &self.sandbox.compatibility_key());
        if matches!(self.store.blob(&key), Ok(Some(_))) {
            return;
        }
        match self.sandbox.precompiled(plugin) {
            Ok(artifact) => {
                if let Err(e) = self.store.put_blob(&key, &artifact) {
                    tracing::warn!(%digest, error = %e, "could not store the precompiled artifact");
                }
            }
            Err(e) => {
                tracing::warn!(%digest, error = %e, "could not serialize the compiled plugin")
            }
        }
    }

    /// The compiled plugin for `digest`: from memory, else from its precompiled artifact,
    /// else compiled from the component (and the artifact stored for next time).
    pub(crate) fn compiled_plugin(&self, digest: &str) -> Result<Plugin, RegistryError> {
        if let Some(p) = self
            .compiled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
        {
            return Ok(p.clone());
        }
        let compat = self.sandbox.compatibility_key();
        let key = cwasm_key(digest, &compat);
        let plugin = match self.store.blob(&key)? {
            Some(artifact) if self.upload_limits.use_precompiled => {
                self.sandbox.load_precompiled(&artifact).ok()
            }
            _ => None,
        };
        let plugin = match plugin {
            Some(p) => p,
            None => {
                let bytes =
                    self.store
                        .blob(&wasm_key(digest))?
                        .ok_or_else(|| StoreError::Corrupt {
                            key: wasm_key(digest),
                            message: "component bytes missing".into(),
                        })?;
                let plugin = self.sandbox.load(&bytes).map_err(|e| {
                    RegistryError::Invalid(format!(
                        "stored component {digest} no longer loads: {e}"
                    ))
                })?;
                self.store_precompiled(digest, &plugin);
                plugin
            }
        };
        self.remember_compiled(digest, plugin.clone());
        Ok(plugin)
    }
}
