//! What the host gives a plugin: read-only configuration and a bounded log.
//!
//! Inside the sandbox these call the host. In a native build (`cargo test`) they read and
//! write a per-thread stand-in that [`crate::testing`] controls, so plugin logic can be
//! unit-tested without WebAssembly.

use std::str::FromStr;

use crate::PluginError;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogLevel {
    /// Verbose diagnostics.
    Debug,
    /// Normal events.
    Info,
    /// Something unexpected the plugin worked around.
    Warn,
    /// Something failed.
    Error,
}

/// Reads the per-plugin configuration value `key` that issuer ops set, if any.
pub fn config(key: &str) -> Option<String> {
    imp::config(key)
}

/// Reads `key` and parses it, falling back to `default` when it is not set.
///
/// A value that does not parse is a [`PluginError::BadConfig`] naming the key, the value
/// and what was expected, so ops see exactly what to fix.
///
/// ```
/// use offerhost_sdk::{config_or, testing};
///
/// testing::set_config([("cashback_bps", "250")]);
/// assert_eq!(config_or("cashback_bps", 100u32), Ok(250));
/// assert_eq!(config_or("missing", 100u32), Ok(100));
/// testing::set_config([("cashback_bps", "lots")]);
/// assert!(config_or("cashback_bps", 100u32).is_err());
/// ```
pub fn config_or<T: FromStr>(key: &str, default: T) -> Result<T, PluginError> {
    match config(key) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|_| {
            PluginError::BadConfig(format!(
                "`{key}` = {raw:?} is not a valid {}",
                std::any::type_name::<T>()
            ))
        }),
    }
}

/// Writes a log line. The host keeps it with the call's report (the local runner's output,
/// slate diagnostics), within a per-call byte budget; a plugin that writes past the
/// budget is stopped.
pub fn log(level: LogLevel, message: &str) {
    imp::log(level, message)
}

/// Writes a debug line. See [`log`].
pub fn debug(message: &str) {
    log(LogLevel::Debug, message)
}

/// Writes an info line. See [`log`].
pub fn info(message: &str) {
    log(LogLevel::Info, message)
}

/// Writes a warning line. See [`log`].
pub fn warn(message: &str) {
    log(LogLevel::Warn, message)
}

/// Writes an error line. See [`log`].
pub fn error(message: &str) {
    log(LogLevel::Error, message)
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::LogLevel;
    use crate::wit::offerhost::plugin::host;

    pub(super) fn config(key: &str) -> Option<String> {
        host::config(key)
    }

    pub(super) fn log(level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Debug => host::LogLevel::Debug,
            LogLevel::Info => host::LogLevel::Info,
            LogLevel::Warn => host::LogLevel::Warn,
            LogLevel::Error => host::LogLevel::Error,
        };
        host::log(level, message)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::LogLevel;
    use crate::testing::NATIVE;

    pub(super) fn config(key: &str) -> Option<String> {
        NATIVE.with(|n| n.borrow().config.get(key).cloned())
    }

    pub(super) fn log(level: LogLevel, message: &str) {
        NATIVE.with(|n| n.borrow_mut().logs.push((level, message.to_string())))
    }
}
