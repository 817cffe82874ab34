//! `cargo run --release -p tviews-benches -- [--scale small|medium|large] [--runs N]
//! [--out DIR] [--no-install] [--seed N]`: builds and installs a release build of pg_tviews,
//! runs the benchmark on a scratch cluster, and writes report.md, results.json, chart.png and
//! profile.md into the output directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Parser;
use tviews_benches::approach::Approach;
use tviews_benches::results::Results;
use tviews_benches::runner::{self, Config};
use tviews_benches::scale::Scale;
use tviews_benches::{chart, machine, report};

#[derive(Debug, Parser)]
#[command(
    name = "tviews-benches",
    about = "Benchmarks pg_tviews against plain DML, hand-written triggers, materialized views and pg_ivm",
    long_about = "Benchmarks pg_tviews against plain DML, hand-written triggers (row and statement \
level), REFRESH MATERIALIZED VIEW [CONCURRENTLY] and pg_ivm (when installed), on the demo's \
e-commerce read model, in a scratch PostgreSQL cluster with fsync and synchronous_commit on.\n\n\
First builds and installs a release build of pg_tviews into the system PostgreSQL \
(cargo pgrx install --release), unless --no-install. Unless --preload, a second cluster \
with pg_tviews in shared_preload_libraries (shared-memory statistics on) runs pg_tviews and \
plain DML on the same data, interleaved with the rest, for the statistics comparison. Writes \
report.md, results.json, chart.png and profile.md into --out."
)]
struct Args {
    /// Data size: small = 1K products (a few minutes), medium = 100K, large = 1M.
    #[arg(long, value_enum, default_value = "small")]
    scale: Scale,
    /// Repeated runs (each measures every operation in every approach); default 3.
    #[arg(long)]
    runs: Option<u32>,
    /// Single-row transactions per sample (default: 60, 30 at large scale).
    #[arg(long)]
    iterations: Option<u64>,
    /// Output directory (default: target/bench/<scale> in the workspace).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Do not build and install pg_tviews first: measure the build already installed (the
    /// report then says it was not built by this command).
    #[arg(long)]
    no_install: bool,
    /// With --no-install: how the installed library was built, for the report (e.g. "release
    /// build of commit abc1234, cargo pgrx package").
    #[arg(long, requires = "no_install")]
    build_note: Option<String>,
    /// Seed of the generated data and of the keys each transaction uses.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Load pg_tviews through shared_preload_libraries in the main cluster (shared-memory
    /// statistics on); there is then no statistics comparison.
    #[arg(long)]
    preload: bool,
    /// Measure only these approaches besides plain DML and pg_tviews (comma-separated:
    /// triggers_row, triggers_stmt, matview, matview_concurrently, pg_ivm, and tviews_preloaded
    /// or plain_preloaded for the statistics comparison, which measures both).
    #[arg(long, value_delimiter = ',')]
    approaches: Option<Vec<String>>,
    /// Measure only operations whose id starts with one of these (comma-separated; for
    /// development: deletes need their inserts to have run).
    #[arg(long, value_delimiter = ',')]
    ops: Option<Vec<String>>,
    /// Seconds of timed transactions per materialized-view sample; when refreshes are slower,
    /// fewer transactions are timed.
    #[arg(long, default_value_t = 1.0)]
    matview_budget: f64,
    /// Skip the chart (no Python needed).
    #[arg(long)]
    no_chart: bool,
    /// Measure nothing: render report.md and chart.png again from the results.json in --out.
    #[arg(long)]
    rerender: bool,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = real_main(args) {
        eprintln!("tviews-benches: {e:#}");
        std::process::exit(1);
    }
}

fn real_main(args: Args) -> Result<()> {
    let approaches = match &args.approaches {
        Some(ids) => Some(
            ids.iter()
                .map(|id| Approach::from_id(id).with_context(|| format!("unknown approach {id:?}")))
                .collect::<Result<Vec<_>>>()?,
        ),
        None => None,
    };
    let out = args.out.clone().unwrap_or_else(|| {
        machine::workspace_root()
            .join("target")
            .join("bench")
            .join(args.scale.name())
    });
    if args.rerender {
        let json = std::fs::read_to_string(out.join("results.json"))
            .with_context(|| format!("reading {}", out.join("results.json").display()))?;
        let results: Results = serde_json::from_str(&json)?;
        return write_outputs(results, &out, args.no_chart);
    }
    let installed = if args.no_install {
        None
    } else {
        install_release()?;
        Some(format!(
            "release build of {}, installed by this command",
            workspace_commit()
        ))
    };
    runner::preflight()?;
    let command = format!(
        "cargo run --release -p tviews-benches --{}",
        std::env::args()
            .skip(1)
            .map(|a| format!(" {a}"))
            .collect::<String>()
    );
    let cfg = Config {
        scale: args.scale,
        runs: args.runs.unwrap_or(args.scale.default_runs()).max(1),
        iterations: args
            .iterations
            .unwrap_or(args.scale.default_iterations())
            .max(1),
        seed: args.seed,
        out: out.clone(),
        matview_budget: args.matview_budget,
        preload: args.preload,
        approaches,
        ops: args.ops.clone(),
        installed,
        build_note: args.build_note.clone(),
        command,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let results = runtime.block_on(runner::run(cfg))?;
    write_outputs(results, &out, args.no_chart)
}

/// report.md, results.json (with the statistics comparison computed from the samples) and
/// (unless `no_chart`) chart.png in `out`.
fn write_outputs(mut results: Results, out: &Path, no_chart: bool) -> Result<()> {
    results.preload_comparison = results.preload_comparison();
    let results = &results;
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(results)?,
    )?;
    std::fs::write(out.join("report.md"), report::render(results))?;
    eprintln!("tviews-benches: wrote {}", out.join("report.md").display());
    let wrong: Vec<String> = results
        .checks
        .iter()
        .filter(|c| !c.ok())
        .map(|c| format!("{} {}", c.approach.label(), c.when))
        .collect();
    let chart = if no_chart {
        Ok(None)
    } else {
        chart::draw(results, out).map(Some)
    };
    for (op, ratio, against) in results.tviews_vs_triggers().iter().take(3) {
        eprintln!(
            "tviews-benches: {op}: pg_tviews costs {} of {}",
            report::times(Some(*ratio)),
            against.label()
        );
    }
    if let Some(p) = &results.preload_comparison {
        eprintln!(
            "tviews-benches: statistics on vs off: {}",
            report::preload_verdict(p)
        );
    }
    if !wrong.is_empty() {
        eprintln!(
            "tviews-benches: read models found wrong (their runs are void): {}",
            wrong.join("; ")
        );
    }
    match chart {
        Ok(Some(png)) => eprintln!("tviews-benches: wrote {}", png.display()),
        Ok(None) => {}
        Err(e) => bail!("the report is written, but the chart failed: {e:#}"),
    }
    Ok(())
}

/// The workspace's commit, with "+ uncommitted changes" when the tree is dirty.
fn workspace_commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(machine::workspace_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(commit) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("commit {commit} + uncommitted changes")
            } else {
                format!("commit {commit}")
            }
        }
        None => "an unknown commit".to_owned(),
    }
}

/// `cargo pgrx install --release -p pg_tviews --pg-config <pg_config>` from the workspace root.
fn install_release() -> Result<()> {
    let pg_config = std::env::var("PG_CONFIG").unwrap_or_else(|_| "/usr/bin/pg_config".to_owned());
    eprintln!("tviews-benches: building and installing a release build of pg_tviews ({pg_config})");
    let status = Command::new("cargo")
        .args([
            "pgrx",
            "install",
            "--release",
            "-p",
            "pg_tviews",
            "--pg-config",
            &pg_config,
        ])
        .current_dir(machine::workspace_root())
        .status()
        .context("could not run cargo pgrx install (is cargo-pgrx installed? scripts/setup.sh)")?;
    if !status.success() {
        bail!("cargo pgrx install --release failed ({status})");
    }
    Ok(())
}
