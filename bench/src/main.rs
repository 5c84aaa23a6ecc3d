//! `bench`: the Joyfull Hub benchmark suite in one command.
//!
//! It builds the release server, starts it (in production mode) on its own PostgreSQL under
//! `--dir`, starts a local upstream in a second process, seeds users, API keys and a tool through the
//! public GraphQL API, then loads the server from this process over loopback and prints one table:
//! requests per second, p50, p99, p99.9, errors and the server's peak RSS per scenario. See
//! `load.rs` for the load generator (closed and open loop, HDR histograms).
//!
//! Run from the repository root: `cargo run --release -p joyfull-bench -- [options]`.

mod floor_meter;
mod hello;
mod load;
mod readme;
mod report;
mod scenarios;
mod server;
mod upstream;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "Benchmarks the Joyfull Hub server, one table per run"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Scenarios to run, comma-separated: e (ceiling), a (dashboard read), b (invokeTool vs the
    /// upstream), c (usage at scale), d (login), f (invokeToolStream vs the upstream streaming).
    #[arg(long, default_value = "e,a,b,c,d,f")]
    scenarios: String,
    /// Measured seconds per scenario (after the warm-up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Warm-up seconds per scenario (not measured).
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Usage rows in the database for scenario c (generated once, reused by later runs).
    #[arg(long, default_value_t = 10_000_000)]
    usage_rows: i64,
    /// Where the server's data (its PostgreSQL cluster), logs and results live.
    #[arg(long, default_value = "target/bench")]
    dir: PathBuf,
    /// Use the server binary next to this one as it is, without `cargo build --release` first.
    #[arg(long)]
    no_build: bool,
    /// Scenario b's open-loop rates (calls per second over its 50 callers), comma-separated.
    #[arg(long, default_value = "250,500,1000")]
    invoke_rates: String,
    /// Scenario a's open-loop rate (requests per second); default: half what 64 closed-loop
    /// connections reached in the same run. A fixed rate compares two builds at the same load.
    #[arg(long)]
    read_rate: Option<f64>,
    /// The server's log filter (`RUST_LOG`): `info` logs a line per request, `warn` none, which
    /// measures what the request log costs.
    #[arg(long, default_value = "info")]
    hub_log: String,
    /// Write the table into README.md (between its `bench:results` markers) as well.
    #[arg(long)]
    update_readme: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the local upstream (started by the suite itself).
    #[command(hide = true)]
    Upstream,
    /// Serve the bare framework baseline (started by the suite itself).
    #[command(hide = true)]
    Hello,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Upstream) => return upstream::serve().await,
        Some(Command::Hello) => return hello::serve().await,
        None => {}
    }
    let options = scenarios::Options {
        scenarios: cli
            .scenarios
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect(),
        duration: std::time::Duration::from_secs(cli.duration.max(1)),
        warmup: std::time::Duration::from_secs(cli.warmup),
        usage_rows: cli.usage_rows,
        dir: cli.dir,
        build: !cli.no_build,
        hub_log: cli.hub_log,
        readme: cli
            .update_readme
            .then(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md")),
        invoke_rates: cli
            .invoke_rates
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("--invoke-rates: {e}"))?,
        read_rate: match cli.read_rate {
            Some(rate) if !(rate.is_finite() && rate > 0.0) => {
                anyhow::bail!("--read-rate: {rate} is not a positive number of requests per second")
            }
            rate => rate,
        },
    };
    scenarios::run_all(options).await
}
