//! `chart.png`: heatmaps of the cost ratios, drawn by matplotlib in a virtual environment under
//! the target directory (created and filled with `pip install matplotlib` on first use).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::approach::Approach;
use crate::results::Results;
use crate::workload::Group;

const SCRIPT: &str = include_str!("chart.py");
const MATPLOTLIB: &str = "matplotlib>=3.7,<4";

#[derive(Debug, Serialize, PartialEq)]
pub struct ChartData {
    pub title: String,
    pub ops: Vec<String>,
    pub panels: Vec<Panel>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Panel {
    pub title: String,
    pub approaches: Vec<String>,
    /// `values[op][approach]`: a median cost ratio, or None.
    pub values: Vec<Vec<Option<f64>>>,
}

/// The operations in report order and, per panel, the ratio of each approach's median cost to
/// plain DML's and to pg_tviews'.
pub fn chart_data(results: &Results) -> ChartData {
    let included = results.compared();
    let order = [
        Group::Row,
        Group::Bulk,
        Group::Concurrency,
        Group::Creation,
        Group::Read,
    ];
    let ops: Vec<_> = order
        .iter()
        .flat_map(|g| results.ops.iter().filter(move |o| o.group == *g))
        .collect();
    let panel = |title: &str, skip: Approach, pick: fn(&crate::results::Row) -> Option<f64>| {
        let approaches: Vec<Approach> = included.iter().copied().filter(|a| *a != skip).collect();
        Panel {
            title: title.to_owned(),
            approaches: approaches.iter().map(|a| a.label().to_owned()).collect(),
            values: ops
                .iter()
                .map(|op| {
                    let rows = op.rows(&approaches);
                    approaches
                        .iter()
                        .map(|a| rows.iter().find(|r| r.approach == *a).and_then(pick))
                        .collect()
                })
                .collect(),
        }
    };
    ChartData {
        title: format!(
            "pg_tviews benchmark, {} scale, {} ({} runs; median cost ratios; red = costlier than the reference)",
            results.meta.scale, results.meta.date, results.meta.runs
        ),
        ops: ops.iter().map(|o| o.id.clone()).collect(),
        panels: vec![
            panel("cost × plain DML", Approach::Plain, |r| r.vs_plain),
            panel(
                "cost ÷ pg_tviews (above 1: pg_tviews is cheaper)",
                Approach::Tviews,
                |r| r.vs_tviews,
            ),
        ],
    }
}

/// Where the virtual environment lives: `$CARGO_TARGET_DIR/bench-venv`, or `target/bench-venv`
/// in the workspace.
pub fn venv_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|t| !t.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::machine::workspace_root().join("target"));
    target.join("bench-venv")
}

/// Makes sure the venv has matplotlib; returns its python.
pub fn ensure_matplotlib() -> Result<PathBuf> {
    let venv = venv_dir();
    let python = venv.join("bin").join("python");
    let has = |python: &Path| {
        Command::new(python)
            .args(["-c", "import matplotlib"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if python.exists() && has(&python) {
        return Ok(python);
    }
    eprintln!(
        "tviews-benches: installing matplotlib into {} (for the chart)",
        venv.display()
    );
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv)).context(
        "python3 -m venv failed (on Debian: apt-get install python3-venv), needed for the chart",
    )?;
    run(Command::new(&python).args(["-m", "pip", "install", "--quiet", MATPLOTLIB]))
        .context("pip install matplotlib failed, needed for the chart")?;
    if !has(&python) {
        bail!(
            "matplotlib still cannot be imported by {}",
            python.display()
        );
    }
    Ok(python)
}

/// Writes `chart.png` into `out` (through `chart-data.json` and `chart.py`, removed after).
pub fn draw(results: &Results, out: &Path) -> Result<PathBuf> {
    let data_path = out.join("chart-data.json");
    std::fs::write(
        &data_path,
        serde_json::to_string_pretty(&chart_data(results))?,
    )?;
    let script = out.join("chart.py");
    std::fs::write(&script, SCRIPT)?;
    let python = ensure_matplotlib()?;
    let png = out.join("chart.png");
    run(Command::new(python).arg(&script).arg(&data_path).arg(&png))
        .context("drawing the chart")?;
    let _ = std::fs::remove_file(&script);
    let _ = std::fs::remove_file(&data_path);
    Ok(png)
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("could not run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_operation_and_the_reference_left_out() {
        let data = chart_data(&crate::results::fixture());
        assert_eq!(data.ops, vec!["update_product", "concurrent_8_disjoint"]);
        let [vs_plain, vs_tviews] = &data.panels[..] else {
            panic!("two panels")
        };
        assert_eq!(vs_plain.approaches, vec!["pg_tviews", "triggers (row)"]);
        assert_eq!(vs_tviews.approaches, vec!["plain DML", "triggers (row)"]);
        // update_product: pg_tviews 2.5 ms (median of 2 and 3) over plain 0.25 ms.
        let r = vs_plain.values[0][0].unwrap();
        assert!((r - 10.0).abs() < 1e-9, "{r}");
        // Throughput as cost: pg_tviews 700 tx/s against triggers 1400 tx/s.
        assert_eq!(vs_tviews.values[1][1], Some(0.5));
    }
}
