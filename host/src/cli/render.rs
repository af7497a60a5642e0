//! Plain-text tables for reports and readouts.

use std::fmt::Write as _;

use crate::report::offers::Report;
use crate::report::readout::{Arm, Estimate, Readout};

/// Lays out rows in columns, the first row as the header.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

fn percent(e: &Estimate) -> String {
    match (e.value, e.low, e.high) {
        (Some(v), Some(l), Some(h)) => {
            format!("{:.2} % [{:.2}, {:.2}]", v * 100.0, l * 100.0, h * 100.0)
        }
        _ => "-".into(),
    }
}

fn number(e: &Estimate) -> String {
    match (e.value, e.low, e.high) {
        (Some(v), Some(l), Some(h)) => format!("{v:.1} [{l:.1}, {h:.1}]"),
        _ => "-".into(),
    }
}

fn points(e: &Estimate) -> String {
    match (e.value, e.low, e.high) {
        (Some(v), Some(l), Some(h)) => format!(
            "{:+.2} pp [{:+.2}, {:+.2}]",
            v * 100.0,
            l * 100.0,
            h * 100.0
        ),
        _ => "-".into(),
    }
}

/// A readout as a table: one column per arm, then the difference.
pub fn readout(r: &Readout) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", r.plugin);
    match (&r.canary, r.canary_bps) {
        (Some(c), Some(bps)) => {
            let _ = writeln!(
                out,
                "canary {} on {:.2} % of subjects; active {} over the same period",
                c.version,
                bps as f64 / 100.0,
                r.active.version
            );
        }
        _ => {
            let _ = writeln!(out, "no canary; active {}", r.active.version);
        }
    }
    let _ = writeln!(out, "95 % intervals in brackets\n");
    let arms: Vec<&Arm> = std::iter::once(&r.active)
        .chain(r.canary.as_ref())
        .collect();
    let mut header = vec!["metric".to_string()];
    header.extend(arms.iter().map(|a| format!("{} {}", a.role, a.version)));
    if r.difference.is_some() {
        header.push("canary - active".into());
    }
    let mut rows = vec![header];
    let d = r.difference.as_ref();
    let mut line = |name: &str, f: &dyn Fn(&Arm) -> String, diff: Option<String>| {
        let mut row = vec![name.to_string()];
        row.extend(arms.iter().map(|a| f(a)));
        row.extend(diff);
        rows.push(row);
    };
    line("calls", &|a| a.calls.to_string(), d.map(|_| String::new()));
    line(
        "failure rate",
        &|a| percent(&a.failure_rate),
        d.map(|d| points(&d.failure_rate)),
    );
    line(
        "fuel / call",
        &|a| number(&a.fuel),
        d.map(|_| String::new()),
    );
    line(
        "latency µs / call",
        &|a| number(&a.latency_us),
        d.map(|_| String::new()),
    );
    line(
        "served",
        &|a| a.served.to_string(),
        d.map(|_| String::new()),
    );
    line(
        "impressions",
        &|a| a.impressions.to_string(),
        d.map(|_| String::new()),
    );
    line("CTR", &|a| percent(&a.ctr), d.map(|d| points(&d.ctr)));
    line(
        "conversion rate",
        &|a| percent(&a.conversion_rate),
        d.map(|d| points(&d.conversion_rate)),
    );
    line(
        "value / slate (minor)",
        &|a| number(&a.value_per_slate),
        d.map(|d| number(&d.value_per_slate)),
    );
    out.push_str(&table(&rows));
    if let Some(s) = &r.shadow {
        let _ = writeln!(
            out,
            "\nshadow {}: top bid differs from the active version's in {} of {} compared slates; failure rate {}",
            s.arm.version,
            percent(&s.top_bid_differs),
            s.top_bid_differs.n,
            percent(&s.arm.failure_rate)
        );
    }
    out
}

/// A report as a table.
pub fn report(r: &Report) -> String {
    let mut out = String::new();
    let who = r.partner.as_deref().unwrap_or("all partners");
    let _ = writeln!(out, "{} report, {} to {}, {who}", r.kind, r.from, r.to);
    let exact = r.privacy.is_none();
    let mut header: Vec<String> = r.by.iter().map(|d| d.name().to_string()).collect();
    header.extend(
        [
            "served",
            "impressions",
            "clicks",
            "conversions",
            "CTR",
            "conv. rate",
        ]
        .map(str::to_string),
    );
    if exact {
        header.extend(["subjects", "value served", "spend"].map(str::to_string));
    }
    let mut rows = vec![header];
    let rate = |r: Option<f64>| r.map_or("-".into(), |v| format!("{:.2} %", v * 100.0));
    for row in &r.rows {
        let mut cells: Vec<String> =
            r.by.iter()
                .map(|d| row.key.get(d.name()).cloned().unwrap_or_default())
                .collect();
        cells.extend([
            row.served.to_string(),
            row.impressions.to_string(),
            row.clicks.to_string(),
            row.conversions.to_string(),
            rate(row.ctr),
            rate(row.conversion_rate),
        ]);
        if exact {
            let n = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
            cells.extend([
                n(row.subjects),
                n(row.value_served_minor),
                n(row.spend_minor),
            ]);
        }
        rows.push(cells);
    }
    out.push_str(&table(&rows));
    if let Some(p) = &r.privacy {
        let _ = writeln!(
            out,
            "\nprotected: every row counts at least {} customers; counts carry Laplace noise \
             of scale {:.1} (epsilon {} per row, sensitivity {}); {} small rows merged into \
             \"other\"{}",
            p.k,
            p.noise_scale,
            p.epsilon,
            p.sensitivity,
            p.merged_rows,
            if p.other_suppressed {
                ", which was itself below k and is left out"
            } else {
                ""
            }
        );
    }
    out
}
