//! `offerhost plugin run`: the partner's local runner.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use serde::Serialize;

use crate::model::{Bid, Features, PluginInfo, RejectedBid, screen_bids};
use crate::sandbox::{Cost, Limits, LogLine, Outcome, PluginConfig, Sandbox, SandboxConfig};

pub(super) const LONG_ABOUT: &str = "\
Run a plugin component once on a request file, exactly as the host would: a fresh \
sandboxed instance, no files, network, environment or real clock, and the same limits. \
Prints one JSON document on stdout with the plugin's description, the outcome, the bids \
the host would accept, the bids it would drop (with reason codes), what the call cost \
(fuel, peak memory, wall time, log lines, output bytes) and what the plugin logged. A \
one-line summary goes to stderr.";

pub(super) const AFTER_HELP: &str = r#"REQUEST FILE
  JSON with the anonymized features of one customer, as the host passes them to the
  plugin. Only `placement` is required; a field left out is "withheld" for the plugin.

    {
      "tier": "high-value",            high-value | growth | mass | at-risk | new
      "lifecycle": "spending",         applied | approved-not-activated |
                                       activated-no-binding | bound-no-spend | spending |
                                       revolving-installment-eligible
      "rfm": {"recency": 5, "frequency": 4, "monetary": 5},      each 1..=5, 5 best
      "affinities": [{"category": "travel", "weight": 0.8}],     at most 8, weight 0..=1
      "cobrand_holder": true,          holds this partner's co-brand card
      "region": "cn-sh",               ISO 3166-2, lowercase
      "placement": "app-home",         required
      "channel": "mobile-app",         mobile-app | web | push | statement | email
      "context": {"day_of_week": "friday", "part_of_day": "evening",
                  "season": "summer", "holiday": false},
      "segments": ["frequent-flyer"]   at most 16
    }

  Examples ship in host/examples/requests/.

EXIT STATUS
  0  the call succeeded and every bid follows the contract
  1  the plugin could not be run: unreadable file, not a component, wrong world or
     version, bad request file or --config value
  2  bad command-line usage
  3  the call failed: fuel, deadline, memory or log limit, trap, invalid output or the
     plugin's own error (the JSON says which)
  4  the call succeeded but the host would drop some bids (see `rejected_bids`)

EXAMPLE
  offerhost plugin run target/plugins/wasm32-wasip2/plugin/plugin_airline.wasm \
      --request host/examples/requests/high-value-traveller.json --config multiplier=4"#;

/// Arguments of `offerhost plugin run`.
#[derive(Debug, Args)]
pub struct PluginRunArgs {
    /// The plugin component (`.wasm`, built for wasm32-wasip2).
    pub component: PathBuf,
    /// JSON file with the customer features to bid on (see REQUEST FILE below).
    #[arg(long, short = 'r', value_name = "FILE")]
    pub request: PathBuf,
    /// A per-plugin configuration value, as ops would set it. Repeat for more.
    #[arg(long = "config", short = 'c', value_name = "KEY=VALUE", value_parser = parse_config)]
    pub config: Vec<(String, String)>,
    /// Fuel for instantiation plus the call.
    #[arg(long, default_value_t = Limits::default().fuel)]
    pub fuel: u64,
    /// Wall-clock deadline, milliseconds.
    #[arg(long, default_value_t = Limits::default().deadline_ms)]
    pub deadline_ms: u64,
    /// Linear memory limit, MiB.
    #[arg(long, default_value_t = Limits::default().memory_bytes >> 20)]
    pub memory_mib: u64,
    /// Most bids accepted from one call.
    #[arg(long, default_value_t = Limits::default().max_bids)]
    pub max_bids: u32,
    /// Most bytes of strings accepted from one call.
    #[arg(long, default_value_t = Limits::default().max_output_bytes)]
    pub max_output_bytes: u64,
    /// Most bytes of log messages one call may write.
    #[arg(long, default_value_t = Limits::default().max_log_bytes)]
    pub max_log_bytes: u64,
}

/// Parses `KEY=VALUE`.
pub(super) fn parse_config(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

#[derive(Serialize)]
struct RunOutput {
    component: String,
    plugin: Option<PluginInfo>,
    outcome: Outcome,
    bids: Vec<Bid>,
    rejected_bids: Vec<RejectedBid>,
    cost: Cost,
    logs: Vec<LogLine>,
    limits: Limits,
}

pub(super) fn run(args: PluginRunArgs) -> ExitCode {
    match try_run(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(1)
        }
    }
}

fn try_run(args: &PluginRunArgs) -> Result<ExitCode, String> {
    let component_name = args.component.display().to_string();
    let bytes = std::fs::read(&args.component)
        .map_err(|e| format!("cannot read component {component_name}: {e}"))?;
    let request = std::fs::read_to_string(&args.request)
        .map_err(|e| format!("cannot read request {}: {e}", args.request.display()))?;
    let features: Features = serde_json::from_str(&request)
        .map_err(|e| format!("request {}: {e}", args.request.display()))?;
    features
        .validate()
        .map_err(|e| format!("request {}: {e}", args.request.display()))?;

    let limits = Limits {
        fuel: args.fuel,
        deadline_ms: args.deadline_ms,
        memory_bytes: args.memory_mib << 20,
        max_bids: args.max_bids,
        max_output_bytes: args.max_output_bytes,
        max_log_bytes: args.max_log_bytes,
    };
    let mut sandbox_config = SandboxConfig::default();
    sandbox_config.engine.max_concurrent_instances = 4;
    sandbox_config.engine.max_memory_bytes = sandbox_config
        .engine
        .max_memory_bytes
        .max(limits.memory_bytes);
    let sandbox = Sandbox::new(&sandbox_config).map_err(|e| e.to_string())?;
    let plugin = sandbox
        .load(&bytes)
        .map_err(|e| format!("{component_name}: {e}"))?;
    let config: Arc<PluginConfig> = Arc::new(args.config.iter().cloned().collect());

    let described = sandbox.describe(&plugin, &limits);
    let report = if described.outcome.is_ok() {
        sandbox.bid(&plugin, &features, &config, &limits)
    } else {
        described.clone().map_value_none()
    };
    let (bids, rejected_bids) = screen_bids(report.value.clone().unwrap_or_default());
    let output = RunOutput {
        component: component_name.clone(),
        plugin: described.value,
        outcome: report.outcome.clone(),
        bids,
        rejected_bids,
        cost: report.cost,
        logs: report.logs,
        limits,
    };
    let json = serde_json::to_string_pretty(&output).map_err(|e| e.to_string())?;
    super::write_out(&format!("{json}\n")).map_err(|e| format!("{e:#}"))?;

    let c = &output.cost;
    let step = if described.outcome.is_ok() {
        "bid"
    } else {
        "describe"
    };
    eprintln!(
        "{component_name}: {step} {}; {} bid(s) accepted, {} rejected; fuel {}, peak memory {} KiB, {} us, {} log line(s)",
        output.outcome,
        output.bids.len(),
        output.rejected_bids.len(),
        c.fuel_used,
        c.peak_memory_bytes >> 10,
        c.wall_time_us,
        c.log_lines,
    );
    Ok(if !output.outcome.is_ok() {
        ExitCode::from(3)
    } else if !output.rejected_bids.is_empty() {
        ExitCode::from(4)
    } else {
        ExitCode::SUCCESS
    })
}

trait NoValue<U> {
    fn map_value_none(self) -> U;
}

impl<T, U> NoValue<crate::sandbox::CallReport<U>> for crate::sandbox::CallReport<T> {
    fn map_value_none(self) -> crate::sandbox::CallReport<U> {
        crate::sandbox::CallReport {
            outcome: self.outcome,
            value: None,
            cost: self.cost,
            logs: self.logs,
        }
    }
}
