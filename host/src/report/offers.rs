//! Offer reports: the aggregates grouped by the dimensions the caller picks.
//!
//! Ops reports are exact. Partner reports protect customers in two ways:
//!
//! 1. **k-threshold.** Every row a partner sees counts at least `k` distinct customers
//!    (default 50). Rows below `k` are merged into one row whose dimensions read
//!    `other`; if even that row counts fewer than `k` customers it is left out, and the
//!    report says how many rows were merged and left out. Subjects are counted as a
//!    union over the row's days and cells, never as a sum.
//! 2. **Laplace noise.** Each published count (`served`, `impressions`, `clicks`,
//!    `conversions`) gets independent Laplace noise of scale `b = 4 × sensitivity / ε`,
//!    then is rounded and clamped at zero. With `sensitivity` the most one customer adds
//!    to one count of one row, the four counts of a row together are ε-differentially
//!    private for that customer (basic composition, ε/4 each): a partner cannot tell
//!    from the report whether any one customer is in the row. Rates are computed from
//!    the noisy counts. Value sums are not in partner reports: their sensitivity is the
//!    largest possible bid, so noise that hides a customer would drown them.
//!
//! The noise is a function of a secret, the query (range and grouping) and the row, so
//! asking the same question again returns the same answer instead of fresh noise to
//! average away. Different questions get independent noise: the guarantee degrades
//! with the number of different questions about the same customers (each costs up to
//! ε), which is why partner reports are limited to whole days and a bounded range.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::field;
use crate::store::CounterRow;

/// Privacy parameters of partner reports (`[reports]` in the configuration).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// Fewest distinct customers in a row a partner may see. Default 50.
    pub k: u32,
    /// Privacy budget ε of one row of one partner report. Default 1.0.
    pub epsilon: f64,
    /// The most one customer adds to one count of one row. Default 5: set it to at
    /// least the tightest frequency cap per offer over the report's range.
    pub sensitivity: f64,
    /// Longest range of one report, days. Default 92.
    pub max_days: u32,
    /// Days a day's aggregates are kept after it ends (counts and the hashed subjects
    /// that make distinct-customer counts); older days are deleted from the store, and a
    /// report reaching back further is refused. Default 184: the longest report range
    /// and the one before it.
    pub retention_days: u32,
    /// Fixed noise secret (tests and reproducible demos only). Default: a random
    /// secret kept in the store, the same for every replica.
    pub noise_seed: Option<String>,
}

impl Default for ReportConfig {
    fn default() -> Self {
        ReportConfig {
            k: 50,
            epsilon: 1.0,
            sensitivity: 5.0,
            max_days: 92,
            retention_days: 184,
            noise_seed: None,
        }
    }
}

impl ReportConfig {
    /// Checks the values make sense.
    pub fn validate(&self) -> Result<(), String> {
        if self.k == 0 {
            return Err("reports.k must be at least 1".into());
        }
        if !(self.epsilon.is_finite() && self.epsilon > 0.0) {
            return Err(format!("reports.epsilon must be > 0, got {}", self.epsilon));
        }
        if !(self.sensitivity.is_finite() && self.sensitivity > 0.0) {
            return Err(format!(
                "reports.sensitivity must be > 0, got {}",
                self.sensitivity
            ));
        }
        if self.max_days == 0 {
            return Err("reports.max_days must be at least 1".into());
        }
        if !(1..=MAX_RETENTION_DAYS).contains(&self.retention_days) {
            return Err(format!(
                "reports.retention_days must be within 1..={MAX_RETENTION_DAYS}, got {}",
                self.retention_days
            ));
        }
        Ok(())
    }

    /// The Laplace scale of each count.
    pub fn noise_scale(&self) -> f64 {
        NOISY_COUNTS as f64 * self.sensitivity / self.epsilon
    }
}

/// The longest `retention_days`: a century.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// Counts that carry noise in a partner report.
const NOISY_COUNTS: usize = 4;

/// A dimension rows can be grouped by.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Dim {
    /// Local day, `YYYY-MM-DD`.
    Day,
    /// Partner id.
    Partner,
    /// Plugin name.
    Plugin,
    /// Plugin version.
    Version,
    /// Offer id.
    Offer,
    /// Placement id.
    Placement,
    /// Customer tier.
    Tier,
    /// Life-cycle stage.
    Stage,
}

impl Dim {
    /// Every dimension.
    pub const ALL: [Dim; 8] = [
        Dim::Day,
        Dim::Partner,
        Dim::Plugin,
        Dim::Version,
        Dim::Offer,
        Dim::Placement,
        Dim::Tier,
        Dim::Stage,
    ];

    /// Its name in queries and rows.
    pub fn name(self) -> &'static str {
        match self {
            Dim::Day => "day",
            Dim::Partner => "partner",
            Dim::Plugin => "plugin",
            Dim::Version => "version",
            Dim::Offer => "offer",
            Dim::Placement => "placement",
            Dim::Tier => "tier",
            Dim::Stage => "stage",
        }
    }

    /// Parses a comma-separated list (`offer,tier`).
    pub fn parse_list(s: &str) -> Result<Vec<Dim>, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let dim = Dim::ALL
                .into_iter()
                .find(|d| d.name() == part)
                .ok_or_else(|| {
                    let names: Vec<&str> = Dim::ALL.iter().map(|d| d.name()).collect();
                    format!("unknown dimension {part:?}; use {}", names.join(", "))
                })?;
            if !out.contains(&dim) {
                out.push(dim);
            }
        }
        Ok(out)
    }
}

/// One row of a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReportRow {
    /// The row's value of each grouping dimension (`other` in a merged row).
    pub key: BTreeMap<String, String>,
    /// Offers served.
    pub served: u64,
    /// Impressions.
    pub impressions: u64,
    /// Clicks.
    pub clicks: u64,
    /// Conversions.
    pub conversions: u64,
    /// Clicks per impression (`null` without impressions).
    pub ctr: Option<f64>,
    /// Conversions per impression (`null` without impressions).
    pub conversion_rate: Option<f64>,
    /// Distinct customers (ops reports only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects: Option<u64>,
    /// Bid value of the offers served, minor units (ops reports only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_served_minor: Option<u64>,
    /// Bid value of the impressions, minor units (ops reports only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend_minor: Option<u64>,
}

/// How a partner report was protected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Privacy {
    /// Fewest distinct customers in a row shown.
    pub k: u32,
    /// Privacy budget of one row.
    pub epsilon: f64,
    /// Assumed most one customer adds to one count.
    pub sensitivity: f64,
    /// Laplace scale of each count.
    pub noise_scale: f64,
    /// Rows below `k` merged into the `other` row.
    pub merged_rows: u64,
    /// Whether the `other` row was itself below `k` and left out.
    pub other_suppressed: bool,
}

/// A report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    /// First day, inclusive.
    pub from: String,
    /// Last day, inclusive.
    pub to: String,
    /// Partner the report is restricted to, if any.
    pub partner: Option<String>,
    /// Grouping dimensions.
    pub by: Vec<Dim>,
    /// `exact` (ops) or `protected` (partner).
    pub kind: String,
    /// The protection applied, for partner reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<Privacy>,
    /// Rows, largest `served` first.
    pub rows: Vec<ReportRow>,
}

/// One day's stored rows.
pub struct DayRows {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Rows of `agg|day`.
    pub rows: Vec<CounterRow>,
}

#[derive(Default)]
struct Group {
    fields: BTreeMap<String, u64>,
    members: HashSet<String>,
}

impl Group {
    fn absorb(
        &mut self,
        fields: &BTreeMap<String, u64>,
        members: impl IntoIterator<Item = String>,
    ) {
        for (k, v) in fields {
            let e = self.fields.entry(k.clone()).or_default();
            *e = e.saturating_add(*v);
        }
        self.members.extend(members);
    }

    fn get(&self, name: &str) -> u64 {
        self.fields.get(name).copied().unwrap_or(0)
    }
}

/// What a report is over.
pub struct Query<'a> {
    /// First day.
    pub from: &'a str,
    /// Last day.
    pub to: &'a str,
    /// Only this partner's rows.
    pub partner: Option<&'a str>,
    /// Grouping.
    pub by: &'a [Dim],
}

/// Builds a report from the stored rows. `protect` is `Some((config, secret))` for a
/// partner report.
pub fn build(
    query: &Query<'_>,
    days: Vec<DayRows>,
    protect: Option<(&ReportConfig, &[u8])>,
) -> Report {
    let mut groups: BTreeMap<Vec<String>, Group> = BTreeMap::new();
    for day in days {
        for row in day.rows {
            let parts: Vec<&str> = row.row.split('|').collect();
            if parts.len() != 7 {
                continue;
            }
            if query.partner.is_some_and(|p| p != parts[0]) {
                continue;
            }
            let key = query
                .by
                .iter()
                .map(|d| match d {
                    Dim::Day => day.day.clone(),
                    Dim::Partner => parts[0].to_string(),
                    Dim::Plugin => parts[1].to_string(),
                    Dim::Version => parts[2].to_string(),
                    Dim::Offer => parts[3].to_string(),
                    Dim::Placement => parts[4].to_string(),
                    Dim::Tier => parts[5].to_string(),
                    Dim::Stage => parts[6].to_string(),
                })
                .collect();
            groups
                .entry(key)
                .or_default()
                .absorb(&row.fields, row.members);
        }
    }
    let named = |key: &[String]| -> BTreeMap<String, String> {
        query
            .by
            .iter()
            .zip(key)
            .map(|(d, v)| (d.name().to_string(), v.clone()))
            .collect()
    };
    let mut report = Report {
        from: query.from.to_string(),
        to: query.to.to_string(),
        partner: query.partner.map(str::to_string),
        by: query.by.to_vec(),
        kind: if protect.is_some() {
            "protected"
        } else {
            "exact"
        }
        .into(),
        privacy: None,
        rows: Vec::new(),
    };
    match protect {
        None => {
            for (key, g) in groups {
                let mut row = counts_row(
                    named(&key),
                    [
                        g.get(field::SERVED),
                        g.get(field::IMPRESSIONS),
                        g.get(field::CLICKS),
                        g.get(field::CONVERSIONS),
                    ],
                );
                row.subjects = Some(g.members.len() as u64);
                row.value_served_minor = Some(g.get(field::VALUE_SERVED));
                row.spend_minor = Some(g.get(field::SPEND));
                report.rows.push(row);
            }
        }
        Some((config, secret)) => {
            let k = config.k as usize;
            let mut other = Group::default();
            let mut merged = 0;
            let mut shown = Vec::new();
            for (key, g) in groups {
                if g.members.len() >= k {
                    shown.push((named(&key), g));
                } else {
                    merged += 1;
                    let fields = g.fields;
                    other.absorb(&fields, g.members);
                }
            }
            let other_suppressed = merged > 0 && other.members.len() < k;
            if merged > 0 && !other_suppressed {
                let key = query
                    .by
                    .iter()
                    .map(|d| (d.name().to_string(), "other".to_string()))
                    .collect();
                shown.push((key, other));
            }
            let scale = config.noise_scale();
            let context = format!(
                "{}|{}|{:?}|{:?}",
                query.from, query.to, query.partner, query.by
            );
            for (key, g) in shown {
                let row_id = format!("{context}|{key:?}");
                let names = [
                    field::SERVED,
                    field::IMPRESSIONS,
                    field::CLICKS,
                    field::CONVERSIONS,
                ];
                let noisy = names.map(|name| {
                    let noise = laplace(scale, secret, &format!("{row_id}|{name}"));
                    (g.get(name) as f64 + noise).round().max(0.0) as u64
                });
                report.rows.push(counts_row(key, noisy));
            }
            report.privacy = Some(Privacy {
                k: config.k,
                epsilon: config.epsilon,
                sensitivity: config.sensitivity,
                noise_scale: scale,
                merged_rows: merged,
                other_suppressed,
            });
        }
    }
    report
        .rows
        .sort_by(|a, b| b.served.cmp(&a.served).then_with(|| a.key.cmp(&b.key)));
    report
}

fn counts_row(
    key: BTreeMap<String, String>,
    [served, impressions, clicks, conversions]: [u64; 4],
) -> ReportRow {
    let rate = |n: u64| (impressions > 0).then(|| (n as f64 / impressions as f64).min(1.0));
    ReportRow {
        key,
        served,
        impressions,
        clicks,
        conversions,
        ctr: rate(clicks),
        conversion_rate: rate(conversions),
        subjects: None,
        value_served_minor: None,
        spend_minor: None,
    }
}

/// A Laplace(0, `scale`) draw determined by `secret` and `label`.
pub fn laplace(scale: f64, secret: &[u8], label: &str) -> f64 {
    let digest = Sha256::new()
        .chain_update(secret)
        .chain_update([0])
        .chain_update(label.as_bytes())
        .finalize();
    let bits = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    // Uniform on the open interval (0, 1): 53 random bits, offset by half a step.
    let u = ((bits >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    // Inverse CDF of the Laplace distribution.
    let centred = u - 0.5;
    -scale * centred.signum() * (1.0 - 2.0 * centred.abs()).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(scale: f64) -> (f64, f64, f64) {
        let n = 20_000;
        let draws: Vec<f64> = (0..n)
            .map(|i| laplace(scale, b"fixed test seed", &format!("cell-{i}")))
            .collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let mean_abs = draws.iter().map(|d| d.abs()).sum::<f64>() / n as f64;
        // P(|X| > b ln 20) = 5 % for Laplace(0, b).
        let beyond = draws
            .iter()
            .filter(|d| d.abs() > scale * 20f64.ln())
            .count() as f64
            / n as f64;
        (mean, mean_abs, beyond)
    }

    #[test]
    fn laplace_noise_has_the_documented_distribution() {
        for scale in [1.0, 20.0] {
            let (mean, mean_abs, beyond) = stats(scale);
            // Standard error of the mean is b·√2/√n ≈ 0.01 b; of E|X| ≈ 0.007 b.
            assert!(mean.abs() < 0.05 * scale, "mean {mean} at scale {scale}");
            assert!(
                (mean_abs - scale).abs() < 0.04 * scale,
                "E|X| {mean_abs} at scale {scale}"
            );
            assert!(
                (beyond - 0.05).abs() < 0.01,
                "tail share {beyond} at scale {scale}"
            );
        }
    }

    #[test]
    fn noise_is_a_function_of_secret_and_label() {
        assert_eq!(laplace(3.0, b"s", "a"), laplace(3.0, b"s", "a"));
        assert_ne!(laplace(3.0, b"s", "a"), laplace(3.0, b"s", "b"));
        assert_ne!(laplace(3.0, b"s", "a"), laplace(3.0, b"t", "a"));
    }

    fn row(row: &str, served: u64, members: std::ops::Range<u32>) -> CounterRow {
        CounterRow {
            row: row.into(),
            fields: [(field::SERVED.to_string(), served)].into_iter().collect(),
            members: members.map(|m| format!("s{m}")).collect(),
        }
    }

    #[test]
    fn small_rows_merge_into_other_and_subjects_are_a_union() {
        let config = ReportConfig {
            k: 10,
            ..Default::default()
        };
        let days = || {
            vec![
                DayRows {
                    day: "2026-01-01".into(),
                    rows: vec![
                        row("acme|air|1.0.0|big|home|gold|active", 100, 0..30),
                        row("acme|air|1.0.0|small-a|home|gold|active", 5, 0..6),
                        row("zeta|z|1.0.0|theirs|home|gold|active", 500, 0..100),
                    ],
                },
                DayRows {
                    day: "2026-01-02".into(),
                    // The same six customers again: still six, not twelve.
                    rows: vec![row("acme|air|1.0.0|small-b|home|gold|active", 5, 0..6)],
                },
            ]
        };
        let query = Query {
            from: "2026-01-01",
            to: "2026-01-02",
            partner: Some("acme"),
            by: &[Dim::Offer],
        };
        let report = build(&query, days(), Some((&config, b"seed")));
        let privacy = report.privacy.clone().unwrap();
        assert_eq!(privacy.merged_rows, 2);
        // small-a and small-b together still count only six customers: left out.
        assert!(privacy.other_suppressed);
        let offers: Vec<&str> = report
            .rows
            .iter()
            .map(|r| r.key["offer"].as_str())
            .collect();
        assert_eq!(offers, ["big"]);

        let exact = build(&query, days(), None);
        let small: Vec<_> = exact
            .rows
            .iter()
            .filter(|r| r.key["offer"] != "big")
            .collect();
        assert_eq!(small.len(), 2);
        assert!(small.iter().all(|r| r.subjects == Some(6)));

        // Grouped by nothing but the partner, everything is one row of 30 customers.
        let by_partner = Query {
            by: &[Dim::Partner],
            ..query
        };
        let one = build(&by_partner, days(), None);
        assert_eq!(one.rows.len(), 1);
        assert_eq!(one.rows[0].subjects, Some(30));
        assert_eq!(one.rows[0].served, 110);
    }
}
