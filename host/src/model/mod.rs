//! The host's own types for what crosses the plugin boundary, with serde for JSON.

mod bid;
mod features;

pub use bid::{
    Bid, DropReason, MAX_AMOUNT_MINOR, MAX_OFFER_ID, MAX_TITLE, MAX_VALUE_MINOR, Money, Offer,
    PluginError, PluginInfo, RejectedBid, Reward, screen_bids,
};
pub use features::{
    Affinity, Channel, Context, DayOfWeek, Features, LifecycleStage, MAX_AFFINITIES, MAX_SEGMENTS,
    PartOfDay, Rfm, Season, Tier, is_slug,
};

/// A request value that breaks a rule: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("{field}: {problem}")]
pub struct FieldError {
    /// Dotted path of the field, such as `rfm.recency` or `affinities[2].weight`.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl FieldError {
    /// An error for `field`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            problem: problem.into(),
        }
    }
}
