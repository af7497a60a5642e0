//! Canary readouts: the active and canary versions of a plugin side by side over the
//! same period, with 95 % confidence intervals, and how often a shadow version's top
//! bid differs from the active version's.
//!
//! Proportions (CTR, conversion rate, failure rate, shadow disagreement) use the Wilson
//! score interval; means (fuel, latency, value per slate) the normal approximation
//! `mean ± 1.96 · sd / √n`; differences (canary − active) the normal approximation
//! with the two arms' variances added. Conversion rate is conversions per impression;
//! value per slate is the bid value of the version's offers that made a slate, per
//! slate it was called for.

use serde::{Deserialize, Serialize};

use super::field;
use crate::store::CounterRow;

const Z: f64 = 1.959_963_984_540_054;

/// An estimate with its 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Estimate {
    /// Point estimate (`null` without observations).
    pub value: Option<f64>,
    /// Lower bound.
    pub low: Option<f64>,
    /// Upper bound.
    pub high: Option<f64>,
    /// Observations it rests on.
    pub n: u64,
}

impl Estimate {
    fn none(n: u64) -> Estimate {
        Estimate {
            value: None,
            low: None,
            high: None,
            n,
        }
    }

    fn of(value: f64, half_width: f64, n: u64, bounds: (f64, f64)) -> Estimate {
        Estimate {
            value: Some(value),
            low: Some((value - half_width).max(bounds.0)),
            high: Some((value + half_width).min(bounds.1)),
            n,
        }
    }

    /// `hits` out of `n`: Wilson score interval.
    pub fn proportion(hits: u64, n: u64) -> Estimate {
        if n == 0 {
            return Estimate::none(0);
        }
        let (nf, p) = (n as f64, hits.min(n) as f64 / n as f64);
        let z2 = Z * Z;
        let centre = (p + z2 / (2.0 * nf)) / (1.0 + z2 / nf);
        let half = Z * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt() / (1.0 + z2 / nf);
        Estimate {
            value: Some(p),
            low: Some((centre - half).max(0.0)),
            high: Some((centre + half).min(1.0)),
            n,
        }
    }

    /// Mean of `n` observations with sum `sum` and sum of squares `sq`.
    pub fn mean(sum: u64, sq: u64, n: u64) -> Estimate {
        if n == 0 {
            return Estimate::none(0);
        }
        let (mean, var) = moments(sum, sq, n);
        Estimate::of(mean, Z * (var / n as f64).sqrt(), n, (0.0, f64::INFINITY))
    }
}

fn moments(sum: u64, sq: u64, n: u64) -> (f64, f64) {
    let nf = n as f64;
    let mean = sum as f64 / nf;
    let var = if n > 1 {
        ((sq as f64 - nf * mean * mean) / (nf - 1.0)).max(0.0)
    } else {
        0.0
    };
    (mean, var)
}

/// One version's side of a readout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Arm {
    /// `active`, `canary` or `shadow`.
    pub role: String,
    /// Version.
    pub version: String,
    /// Live calls (slates it was asked to bid in).
    pub calls: u64,
    /// Share of calls that failed by the plugin's fault.
    pub failure_rate: Estimate,
    /// Fuel per call.
    pub fuel: Estimate,
    /// Call latency as the slate saw it, microseconds.
    pub latency_us: Estimate,
    /// Offers it placed in slates.
    pub served: u64,
    /// Impressions of them.
    pub impressions: u64,
    /// Clicks per impression.
    pub ctr: Estimate,
    /// Conversions per impression.
    pub conversion_rate: Estimate,
    /// Bid value of its offers in a slate, per slate it was called for, minor units.
    pub value_per_slate: Estimate,
}

/// Canary minus active.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Difference {
    /// Of CTR.
    pub ctr: Estimate,
    /// Of conversion rate.
    pub conversion_rate: Estimate,
    /// Of value per slate.
    pub value_per_slate: Estimate,
    /// Of failure rate.
    pub failure_rate: Estimate,
}

/// A shadow version's comparison with the active version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Shadow {
    /// The shadow's own numbers (it serves nothing, so only calls, failures, fuel and
    /// latency are meaningful).
    pub arm: Arm,
    /// Share of compared slates where its top bid differed from the active version's.
    pub top_bid_differs: Estimate,
}

/// The readout of one plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Readout {
    /// `partner/plugin`.
    pub plugin: String,
    /// The active version, over the canary's period when there is a canary.
    pub active: Arm,
    /// The canary, with its share of subjects in basis points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Arm>,
    /// Canary share of subjects, basis points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_bps: Option<u32>,
    /// Canary minus active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difference: Option<Difference>,
    /// The shadow version, if one is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Shadow>,
}

/// The summed counters of one arm row.
#[derive(Default)]
struct Sums(std::collections::BTreeMap<String, u64>);

impl Sums {
    fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }
}

fn sums(rows: &[CounterRow], row: &str) -> Sums {
    Sums(
        rows.iter()
            .find(|r| r.row == row)
            .map(|r| r.fields.clone())
            .unwrap_or_default(),
    )
}

fn arm(role: &str, version: &str, s: &Sums) -> Arm {
    let calls = s.get(field::CALLS);
    let impressions = s.get(field::IMPRESSIONS);
    Arm {
        role: role.into(),
        version: version.into(),
        calls,
        failure_rate: Estimate::proportion(s.get(field::FAILURES), calls),
        fuel: Estimate::mean(s.get(field::FUEL), s.get(field::FUEL_SQ), calls),
        latency_us: Estimate::mean(s.get(field::LATENCY_US), s.get(field::LATENCY_US_SQ), calls),
        served: s.get(field::SERVED),
        impressions,
        ctr: Estimate::proportion(s.get(field::CLICKS), impressions),
        conversion_rate: Estimate::proportion(s.get(field::CONVERSIONS), impressions),
        value_per_slate: Estimate::mean(
            s.get(field::SLATE_VALUE),
            s.get(field::SLATE_VALUE_SQ),
            calls,
        ),
    }
}

fn diff_proportions(a: &Estimate, b: &Estimate) -> Estimate {
    match (a.value, b.value) {
        (Some(pa), Some(pb)) if a.n > 0 && b.n > 0 => {
            let se = (pa * (1.0 - pa) / a.n as f64 + pb * (1.0 - pb) / b.n as f64).sqrt();
            Estimate::of(pb - pa, Z * se, a.n.min(b.n), (-1.0, 1.0))
        }
        _ => Estimate::none(a.n.min(b.n)),
    }
}

fn diff_means(a: (&Sums, &str, &str), b: (&Sums, &str, &str)) -> Estimate {
    let (na, nb) = (a.0.get(field::CALLS), b.0.get(field::CALLS));
    if na == 0 || nb == 0 {
        return Estimate::none(na.min(nb));
    }
    let (ma, va) = moments(a.0.get(a.1), a.0.get(a.2), na);
    let (mb, vb) = moments(b.0.get(b.1), b.0.get(b.2), nb);
    let se = (va / na as f64 + vb / nb as f64).sqrt();
    Estimate::of(
        mb - ma,
        Z * se,
        na.min(nb),
        (f64::NEG_INFINITY, f64::INFINITY),
    )
}

/// The versions a readout is about.
pub struct Versions<'a> {
    /// Active version.
    pub active: &'a str,
    /// Canary version and share.
    pub canary: Option<(&'a str, u32)>,
    /// Shadow version.
    pub shadow: Option<&'a str>,
}

/// Builds the readout of plugin `key` from its arm rows.
pub fn build(key: &str, rows: &[CounterRow], v: &Versions<'_>) -> Readout {
    use super::arm_row;
    let active_row = arm_row(v.active, "active", v.canary.map(|c| c.0));
    let active_sums = sums(rows, &active_row);
    let active = arm("active", v.active, &active_sums);
    let (canary, difference) = match v.canary {
        Some((version, _)) => {
            let s = sums(rows, &arm_row(version, "canary", Some(v.active)));
            let c = arm("canary", version, &s);
            let d = Difference {
                ctr: diff_proportions(&active.ctr, &c.ctr),
                conversion_rate: diff_proportions(&active.conversion_rate, &c.conversion_rate),
                value_per_slate: diff_means(
                    (&active_sums, field::SLATE_VALUE, field::SLATE_VALUE_SQ),
                    (&s, field::SLATE_VALUE, field::SLATE_VALUE_SQ),
                ),
                failure_rate: diff_proportions(&active.failure_rate, &c.failure_rate),
            };
            (Some(c), Some(d))
        }
        None => (None, None),
    };
    let shadow = v.shadow.map(|version| {
        let s = sums(rows, &arm_row(version, "shadow", Some(v.active)));
        Shadow {
            arm: arm("shadow", version, &s),
            top_bid_differs: Estimate::proportion(
                s.get(field::SHADOW_DIFFERED),
                s.get(field::SHADOW_COMPARED),
            ),
        }
    });
    Readout {
        plugin: key.to_string(),
        active,
        canary,
        canary_bps: v.canary.map(|c| c.1),
        difference,
        shadow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_interval_matches_a_worked_example() {
        // 10 of 100: Wilson 95 % interval is about [0.0552, 0.1744].
        let e = Estimate::proportion(10, 100);
        assert!((e.low.unwrap() - 0.0552).abs() < 0.0005, "{e:?}");
        assert!((e.high.unwrap() - 0.1744).abs() < 0.0005, "{e:?}");
        // Zero successes still give an interval above zero.
        let z = Estimate::proportion(0, 20);
        assert_eq!(z.low, Some(0.0));
        assert!(z.high.unwrap() > 0.1);
        assert_eq!(Estimate::proportion(0, 0).value, None);
    }

    #[test]
    fn mean_interval_uses_the_sample_variance() {
        // Observations 2, 4, 6: mean 4, sd 2, half width 1.96 · 2 / √3.
        let e = Estimate::mean(12, 4 + 16 + 36, 3);
        assert_eq!(e.value, Some(4.0));
        let half = Z * 2.0 / 3f64.sqrt();
        assert!((e.high.unwrap() - (4.0 + half)).abs() < 1e-9);
    }
}
