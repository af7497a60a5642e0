//! What a call came to: a typed outcome callers can report, and what it cost.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::PluginError;

/// How one plugin call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Outcome {
    /// The call returned a well-formed answer.
    Ok,
    /// The plugin used all its fuel.
    FuelExhausted,
    /// The plugin ran past its wall-clock deadline.
    Deadline,
    /// The plugin tried to grow its memory past its limit.
    MemoryLimit,
    /// The plugin wrote more log bytes than its budget.
    LogLimit,
    /// The plugin trapped: a panic, a stack overflow, an `unreachable`, ...
    Trap {
        /// The trap and, for a panic, the plugin's own message.
        message: String,
    },
    /// The answer broke an output limit (too many bids, too many bytes); all its bids
    /// are dropped.
    InvalidOutput {
        /// Which limit, and by how much.
        reason: String,
    },
    /// The plugin returned its error variant.
    PluginError {
        /// The error.
        error: PluginError,
    },
    /// The host could not create an instance (for example every pool slot is busy).
    InstantiationFailed {
        /// Why.
        message: String,
    },
    /// The slate's deadline passed before the call finished; its bids were not waited for.
    /// (Reported by the slate, not the sandbox.)
    Late,
}

impl Outcome {
    /// True for [`Outcome::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Ok)
    }

    /// The kebab-case name of the outcome, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::FuelExhausted => "fuel-exhausted",
            Outcome::Deadline => "deadline",
            Outcome::MemoryLimit => "memory-limit",
            Outcome::LogLimit => "log-limit",
            Outcome::Trap { .. } => "trap",
            Outcome::InvalidOutput { .. } => "invalid-output",
            Outcome::PluginError { .. } => "plugin-error",
            Outcome::InstantiationFailed { .. } => "instantiation-failed",
            Outcome::Late => "late",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Trap { message } => write!(f, "trap: {message}"),
            Outcome::InvalidOutput { reason } => write!(f, "invalid output: {reason}"),
            Outcome::PluginError { error } => write!(f, "plugin error: {error}"),
            Outcome::InstantiationFailed { message } => {
                write!(f, "instantiation failed: {message}")
            }
            other => f.write_str(other.kind()),
        }
    }
}

/// What a call cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Cost {
    /// Fuel consumed by instantiation and the call.
    pub fuel_used: u64,
    /// Largest linear memory the instance reached, bytes.
    pub peak_memory_bytes: u64,
    /// Wall time of instantiation, the call and tearing the instance down, microseconds
    /// (rounded to the nearest).
    pub wall_time_us: u64,
    /// Log lines kept.
    pub log_lines: u32,
    /// Log bytes written (kept lines).
    pub log_bytes: u64,
    /// Bytes of strings in the answer.
    pub output_bytes: u64,
}

/// Severity of a plugin log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// One line a plugin logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// Severity.
    pub level: LogLevel,
    /// The message, as written.
    pub message: String,
}

/// Everything one call produced. `value` is `Some` only when the outcome is `Ok`.
#[derive(Debug, Clone)]
pub struct CallReport<T> {
    /// How the call ended.
    pub outcome: Outcome,
    /// The answer, for an `Ok` outcome.
    pub value: Option<T>,
    /// What it cost.
    pub cost: Cost,
    /// What it logged, up to the log budget.
    pub logs: Vec<LogLine>,
}
