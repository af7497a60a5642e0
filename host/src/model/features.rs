//! The anonymized segment features a plugin receives, as the host holds them.
//!
//! These mirror the WIT `features` record one to one and are what `plugin run` reads from
//! its request file. Field and value names follow the WIT: `high-value`, `mobile-app`, ...

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::FieldError;

/// The issuer's value tier for the customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// Top spenders with long tenure.
    HighValue,
    /// Rising spend or potential.
    Growth,
    /// The broad base.
    Mass,
    /// Dormant or declining.
    AtRisk,
    /// Too new to have a history.
    New,
}

/// Card life-cycle stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum LifecycleStage {
    /// Applied, not approved.
    Applied,
    /// Approved, not activated.
    ApprovedNotActivated,
    /// Activated, not bound to a wallet.
    ActivatedNoBinding,
    /// Bound, no purchase yet.
    BoundNoSpend,
    /// Spending regularly.
    Spending,
    /// Revolving or installment-eligible.
    RevolvingInstallmentEligible,
}

impl Tier {
    /// The name the API and reports use (`high-value`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Tier::HighValue => "high-value",
            Tier::Growth => "growth",
            Tier::Mass => "mass",
            Tier::AtRisk => "at-risk",
            Tier::New => "new",
        }
    }
}

impl LifecycleStage {
    /// The name the API and reports use (`spending`, ...).
    pub fn name(self) -> &'static str {
        match self {
            LifecycleStage::Applied => "applied",
            LifecycleStage::ApprovedNotActivated => "approved-not-activated",
            LifecycleStage::ActivatedNoBinding => "activated-no-binding",
            LifecycleStage::BoundNoSpend => "bound-no-spend",
            LifecycleStage::Spending => "spending",
            LifecycleStage::RevolvingInstallmentEligible => "revolving-installment-eligible",
        }
    }
}

/// Channel of the placement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    /// Mobile banking app.
    #[default]
    MobileApp,
    /// Website.
    Web,
    /// Push notification.
    Push,
    /// Monthly statement.
    Statement,
    /// E-mail campaign.
    Email,
}

/// Day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum DayOfWeek {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

/// Coarse part of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum PartOfDay {
    Morning,
    Afternoon,
    Evening,
    Night,
}

/// Season.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum Season {
    Spring,
    Summer,
    Autumn,
    Winter,
}

/// RFM quintile buckets, each `1..=5`, 5 best.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rfm {
    /// 5 = purchased very recently.
    pub recency: u8,
    /// 5 = most purchases in 90 days.
    pub frequency: u8,
    /// 5 = highest spend in 90 days.
    pub monetary: u8,
}

/// One category affinity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Affinity {
    /// Category id, kebab-case, 1..=32 bytes.
    pub category: String,
    /// Weight `0.0..=1.0`.
    pub weight: f32,
}

/// Coarse time context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// Day of the week.
    pub day_of_week: DayOfWeek,
    /// Part of the day.
    pub part_of_day: PartOfDay,
    /// Season.
    pub season: Season,
    /// Holiday or shopping festival.
    #[serde(default)]
    pub holiday: bool,
}

/// The features of one customer as one partner may see them. `None` or empty = withheld.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Features {
    /// Value tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// Life-cycle stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<LifecycleStage>,
    /// RFM buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rfm: Option<Rfm>,
    /// Up to [`MAX_AFFINITIES`] affinities, strongest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub affinities: Vec<Affinity>,
    /// Holds the calling partner's co-brand card.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cobrand_holder: Option<bool>,
    /// ISO 3166-2 region code, lowercase (`cn-sh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Placement id.
    pub placement: String,
    /// Channel.
    #[serde(default)]
    pub channel: Channel,
    /// Time context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Context>,
    /// Segment labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<String>,
}

/// Most affinities a plugin receives.
pub const MAX_AFFINITIES: usize = 8;
/// Most segment labels a plugin receives.
pub const MAX_SEGMENTS: usize = 16;

impl Features {
    /// Checks every range and format the WIT documents; the error names the field.
    pub fn validate(&self) -> Result<(), FieldError> {
        if let Some(rfm) = &self.rfm {
            for (name, v) in [
                ("rfm.recency", rfm.recency),
                ("rfm.frequency", rfm.frequency),
                ("rfm.monetary", rfm.monetary),
            ] {
                if !(1..=5).contains(&v) {
                    return Err(FieldError::new(name, format!("{v} is outside 1..=5")));
                }
            }
        }
        if self.affinities.len() > MAX_AFFINITIES {
            return Err(FieldError::new(
                "affinities",
                format!(
                    "{} entries, at most {MAX_AFFINITIES}",
                    self.affinities.len()
                ),
            ));
        }
        for (i, a) in self.affinities.iter().enumerate() {
            if !is_slug(&a.category, 32) {
                return Err(FieldError::new(
                    format!("affinities[{i}].category"),
                    format!("{:?} is not a kebab-case id of 1..=32 bytes", a.category),
                ));
            }
            if !(0.0..=1.0).contains(&a.weight) {
                return Err(FieldError::new(
                    format!("affinities[{i}].weight"),
                    format!("{} is outside 0.0..=1.0", a.weight),
                ));
            }
        }
        if let Some(region) = &self.region
            && !is_region(region)
        {
            return Err(FieldError::new(
                "region",
                format!("{region:?} is not a coarse ISO 3166-2 code such as \"cn-sh\""),
            ));
        }
        if !is_slug(&self.placement, 32) {
            return Err(FieldError::new(
                "placement",
                format!(
                    "{:?} is not a kebab-case id of 1..=32 bytes",
                    self.placement
                ),
            ));
        }
        if self.segments.len() > MAX_SEGMENTS {
            return Err(FieldError::new(
                "segments",
                format!("{} labels, at most {MAX_SEGMENTS}", self.segments.len()),
            ));
        }
        for (i, s) in self.segments.iter().enumerate() {
            if !is_slug(s, 48) {
                return Err(FieldError::new(
                    format!("segments[{i}]"),
                    format!("{s:?} is not a kebab-case label of 1..=48 bytes"),
                ));
            }
        }
        Ok(())
    }
}

/// Lowercase ASCII letters, digits and single dashes, `1..=max` bytes.
pub fn is_slug(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `cc-sub`: a two-letter country and a 1..=3 character subdivision, lowercase.
fn is_region(s: &str) -> bool {
    let Some((country, sub)) = s.split_once('-') else {
        return false;
    };
    country.len() == 2
        && country.bytes().all(|b| b.is_ascii_lowercase())
        && (1..=3).contains(&sub.len())
        && sub
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::{LifecycleStage, Tier};

    /// The names slates and reports are labelled with are the API's own.
    #[test]
    fn names_are_the_serialized_names() {
        use LifecycleStage::*;
        use Tier::*;
        for tier in [HighValue, Growth, Mass, AtRisk, New] {
            assert_eq!(serde_json::to_value(tier).unwrap(), tier.name(), "{tier:?}");
        }
        for stage in [
            Applied,
            ApprovedNotActivated,
            ActivatedNoBinding,
            BoundNoSpend,
            Spending,
            RevolvingInstallmentEligible,
        ] {
            assert_eq!(
                serde_json::to_value(stage).unwrap(),
                stage.name(),
                "{stage:?}"
            );
        }
    }
}
