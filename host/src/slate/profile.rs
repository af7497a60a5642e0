//! From what the app knows about a customer to what a partner may see.
//!
//! The app sends (or the store holds) a [`Profile`] with raw attributes. The host buckets
//! them (RFM quintiles against [`RfmCutPoints`]), coarsens the region and the affinity
//! weights, derives the time context from its clock, and then builds one
//! [`Features`] per partner holding only the fields that partner's allow-list grants.
//! The subject id never enters [`Features`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{
    Affinity, Channel, Context, DayOfWeek, Features, FieldError, LifecycleStage, MAX_AFFINITIES,
    PartOfDay, Rfm, Season, Tier, is_slug,
};

/// What the app knows about one customer. Every field is optional; what is missing is
/// simply not passed on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Days since the last card purchase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_since_last_purchase: Option<u32>,
    /// Card purchases over the last 90 days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purchases_90d: Option<u32>,
    /// Card spend over the last 90 days, minor units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend_90d_minor: Option<u64>,
    /// Share of spend per category, each `0.0..=1.0`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub category_spend_share: BTreeMap<String, f32>,
    /// The issuer's value tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// Card life-cycle stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<LifecycleStage>,
    /// ISO 3166-2 region, as precise as the app has it (`CN-SH`, `cn-sh-pd`); only the
    /// country and first-level subdivision are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Partner ids whose co-brand card the customer holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cobrand_cards: Vec<String>,
    /// Whether the customer agreed to partner marketing. Without it no partner offer is
    /// shown. Default false.
    #[serde(default)]
    pub marketing_consent: bool,
    /// Issuer segment labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<String>,
}

impl Profile {
    /// Checks ranges and formats; the error names the field (prefixed with `prefix`).
    pub fn validate(&self, prefix: &str) -> Result<(), FieldError> {
        for (category, share) in &self.category_spend_share {
            if !is_slug(category, 32) {
                return Err(FieldError::new(
                    format!("{prefix}category_spend_share"),
                    format!("{category:?} is not a kebab-case category id of 1..=32 bytes"),
                ));
            }
            if !(0.0..=1.0).contains(share) {
                return Err(FieldError::new(
                    format!("{prefix}category_spend_share.{category}"),
                    format!("{share} is outside 0.0..=1.0"),
                ));
            }
        }
        // Shares of one whole; a little over 1.0 is rounding in the issuer's export.
        let total: f64 = self
            .category_spend_share
            .values()
            .map(|s| f64::from(*s))
            .sum();
        if total > 1.001 {
            return Err(FieldError::new(
                format!("{prefix}category_spend_share"),
                format!(
                    "the shares add up to {total:.3}: they are parts of the customer's spend, at most 1.0 in all"
                ),
            ));
        }
        if let Some(region) = &self.region
            && coarse_region(region).is_none()
        {
            return Err(FieldError::new(
                format!("{prefix}region"),
                format!("{region:?} is not an ISO 3166-2 code such as \"CN-SH\""),
            ));
        }
        for (i, id) in self.cobrand_cards.iter().enumerate() {
            if !is_slug(id, 32) {
                return Err(FieldError::new(
                    format!("{prefix}cobrand_cards[{i}]"),
                    format!("{id:?} is not a partner id"),
                ));
            }
        }
        for (i, s) in self.segments.iter().enumerate() {
            if !is_slug(s, 48) {
                return Err(FieldError::new(
                    format!("{prefix}segments[{i}]"),
                    format!("{s:?} is not a kebab-case label of 1..=48 bytes"),
                ));
            }
        }
        Ok(())
    }
}

/// Cut points that turn raw RFM values into quintile buckets 1..=5.
///
/// Each list holds four ascending thresholds. Recency is "lower is better": a customer
/// whose last purchase was at most `recency_days[0]` days ago is in bucket 5, at most
/// `recency_days[3]` in bucket 2, older (or never) in bucket 1. Frequency and monetary are
/// "higher is better": at least `[3]` is bucket 5, below `[0]` bucket 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RfmCutPoints {
    /// Days since last purchase. Default `[7, 14, 30, 60]`.
    pub recency_days: [u32; 4],
    /// Purchases in 90 days. Default `[3, 8, 15, 30]`.
    pub frequency_90d: [u32; 4],
    /// Spend in 90 days, minor units. Default `[50_000, 150_000, 400_000, 1_000_000]`.
    pub monetary_90d_minor: [u64; 4],
}

impl Default for RfmCutPoints {
    fn default() -> Self {
        RfmCutPoints {
            recency_days: [7, 14, 30, 60],
            frequency_90d: [3, 8, 15, 30],
            monetary_90d_minor: [50_000, 150_000, 400_000, 1_000_000],
        }
    }
}

impl RfmCutPoints {
    pub(crate) fn check(&self) -> Result<(), String> {
        let ascending = |v: &[u64]| v.windows(2).all(|w| w[0] < w[1]);
        let r: Vec<u64> = self.recency_days.iter().map(|&x| x as u64).collect();
        let f: Vec<u64> = self.frequency_90d.iter().map(|&x| x as u64).collect();
        if !ascending(&r) || !ascending(&f) || !ascending(&self.monetary_90d_minor) {
            return Err("rfm cut points must be strictly ascending".into());
        }
        Ok(())
    }

    /// Buckets a profile's raw values; `None` unless all three are known.
    pub fn bucket(&self, p: &Profile) -> Option<Rfm> {
        let days = p.days_since_last_purchase?;
        let purchases = p.purchases_90d?;
        let spend = p.spend_90d_minor?;
        let recency = 5 - self.recency_days.iter().filter(|&&c| days > c).count() as u8;
        let frequency = 1 + self
            .frequency_90d
            .iter()
            .filter(|&&c| purchases >= c)
            .count() as u8;
        let monetary = 1 + self
            .monetary_90d_minor
            .iter()
            .filter(|&&c| spend >= c)
            .count() as u8;
        Some(Rfm {
            recency,
            frequency,
            monetary,
        })
    }
}

/// A feature a partner may be granted.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FeatureField {
    /// Value tier.
    Tier,
    /// Life-cycle stage.
    Lifecycle,
    /// RFM buckets.
    Rfm,
    /// Category affinities.
    Affinities,
    /// Whether the customer holds this partner's card.
    CobrandHolder,
    /// Coarse region.
    Region,
    /// Time context.
    Context,
    /// Segment labels (further limited to the partner's `segments` list).
    Segments,
}

/// What the host derives once per slate, before any per-partner filtering.
#[derive(Debug, Clone)]
pub struct Derived {
    pub(crate) tier: Option<Tier>,
    pub(crate) lifecycle: Option<LifecycleStage>,
    pub(crate) rfm: Option<Rfm>,
    pub(crate) affinities: Vec<Affinity>,
    pub(crate) region: Option<String>,
    pub(crate) context: Context,
    pub(crate) cobrand_cards: Vec<String>,
    pub(crate) segments: Vec<String>,
}

/// Derives the anonymized attributes of a profile at local time `local`.
pub fn derive(
    profile: &Profile,
    cuts: &RfmCutPoints,
    local: time::PrimitiveDateTime,
    holiday: bool,
) -> Derived {
    let mut affinities: Vec<Affinity> = profile
        .category_spend_share
        .iter()
        .filter(|(_, share)| **share > 0.0)
        .map(|(category, share)| Affinity {
            category: category.clone(),
            // Steps of 0.05: enough to rank interests, too coarse to fingerprint spend.
            weight: ((share * 20.0).round() / 20.0).clamp(0.0, 1.0),
        })
        .filter(|a| a.weight > 0.0)
        .collect();
    affinities.sort_by(|a, b| {
        b.weight
            .total_cmp(&a.weight)
            .then_with(|| a.category.cmp(&b.category))
    });
    affinities.truncate(MAX_AFFINITIES);
    Derived {
        tier: profile.tier,
        lifecycle: profile.lifecycle,
        rfm: cuts.bucket(profile),
        affinities,
        region: profile.region.as_deref().and_then(coarse_region),
        context: context_at(local, holiday),
        cobrand_cards: profile.cobrand_cards.clone(),
        segments: profile.segments.clone(),
    }
}

/// The features one partner may see.
pub fn features_for(
    derived: &Derived,
    partner_id: &str,
    allow: &[FeatureField],
    allowed_segments: &[String],
    placement: &str,
    channel: Channel,
) -> Features {
    let has = |f: FeatureField| allow.contains(&f);
    Features {
        tier: derived.tier.filter(|_| has(FeatureField::Tier)),
        lifecycle: derived.lifecycle.filter(|_| has(FeatureField::Lifecycle)),
        rfm: derived.rfm.filter(|_| has(FeatureField::Rfm)),
        affinities: if has(FeatureField::Affinities) {
            derived.affinities.clone()
        } else {
            Vec::new()
        },
        cobrand_holder: has(FeatureField::CobrandHolder)
            .then(|| derived.cobrand_cards.iter().any(|c| c == partner_id)),
        region: derived.region.clone().filter(|_| has(FeatureField::Region)),
        placement: placement.to_string(),
        channel,
        context: has(FeatureField::Context).then_some(derived.context),
        segments: if has(FeatureField::Segments) {
            derived
                .segments
                .iter()
                .filter(|s| allowed_segments.contains(s))
                .take(crate::model::MAX_SEGMENTS)
                .cloned()
                .collect()
        } else {
            Vec::new()
        },
    }
}

/// `CN-SH-PD` or `cn-sh` to `cn-sh`; `None` if it is not an ISO 3166-2 shape.
pub fn coarse_region(region: &str) -> Option<String> {
    let lower = region.trim().to_ascii_lowercase();
    let mut parts = lower.split('-');
    let country = parts.next()?;
    let sub = parts.next()?;
    let ok = country.len() == 2
        && country.bytes().all(|b| b.is_ascii_lowercase())
        && (1..=3).contains(&sub.len())
        && sub.bytes().all(|b| b.is_ascii_alphanumeric());
    ok.then(|| format!("{country}-{sub}"))
}

fn context_at(local: time::PrimitiveDateTime, holiday: bool) -> Context {
    use time::{Month, Weekday};
    let day_of_week = match local.weekday() {
        Weekday::Monday => DayOfWeek::Monday,
        Weekday::Tuesday => DayOfWeek::Tuesday,
        Weekday::Wednesday => DayOfWeek::Wednesday,
        Weekday::Thursday => DayOfWeek::Thursday,
        Weekday::Friday => DayOfWeek::Friday,
        Weekday::Saturday => DayOfWeek::Saturday,
        Weekday::Sunday => DayOfWeek::Sunday,
    };
    let part_of_day = match local.hour() {
        5..=11 => PartOfDay::Morning,
        12..=17 => PartOfDay::Afternoon,
        18..=22 => PartOfDay::Evening,
        _ => PartOfDay::Night,
    };
    let season = match local.month() {
        Month::March | Month::April | Month::May => Season::Spring,
        Month::June | Month::July | Month::August => Season::Summer,
        Month::September | Month::October | Month::November => Season::Autumn,
        Month::December | Month::January | Month::February => Season::Winter,
    };
    Context {
        day_of_week,
        part_of_day,
        season,
        holiday,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfm_buckets_follow_the_cut_points() {
        let cuts = RfmCutPoints::default();
        let p = |days, n, spend| Profile {
            days_since_last_purchase: Some(days),
            purchases_90d: Some(n),
            spend_90d_minor: Some(spend),
            ..Profile::default()
        };
        let rfm = |days, n, spend| {
            let r = cuts.bucket(&p(days, n, spend)).unwrap();
            (r.recency, r.frequency, r.monetary)
        };
        assert_eq!(rfm(0, 0, 0), (5, 1, 1));
        assert_eq!(rfm(7, 3, 50_000), (5, 2, 2));
        assert_eq!(rfm(8, 8, 150_000), (4, 3, 3));
        assert_eq!(rfm(30, 15, 400_000), (3, 4, 4));
        assert_eq!(rfm(60, 30, 1_000_000), (2, 5, 5));
        assert_eq!(rfm(61, 500, u64::MAX), (1, 5, 5));
        assert!(cuts.bucket(&Profile::default()).is_none());
    }

    #[test]
    fn regions_are_coarsened() {
        assert_eq!(coarse_region("CN-SH-PD").as_deref(), Some("cn-sh"));
        assert_eq!(coarse_region("us-ca").as_deref(), Some("us-ca"));
        assert_eq!(coarse_region("Shanghai"), None);
        assert_eq!(coarse_region("31.2,121.5"), None);
    }
}
