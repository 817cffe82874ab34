//! What a benchmark run measured: written as `results.json`, rendered as `report.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::approach::Approach;
use crate::stats::{MedianCi, Summary, median_ci, paired_ratios, ratio, summarize};
use crate::workload::{Group, Op};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    pub meta: Meta,
    pub approaches: Vec<ApproachStatus>,
    pub checks: Vec<Check>,
    /// After the runs, untimed: each read model checked after concurrent writers changed
    /// products of one shared category.
    #[serde(default)]
    pub safety: Vec<Check>,
    pub ops: Vec<OpResult>,
    /// EXPLAIN (ANALYZE, BUFFERS) timings of pg_tviews' refresh statements.
    #[serde(default)]
    pub profile: Vec<ProfileEntry>,
    /// pg_tviews with its library in shared_preload_libraries (statistics on) against without,
    /// computed from the samples ([`Results::preload_comparison`]) when the results are written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preload_comparison: Option<PreloadComparison>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    /// UTC, from the server: `YYYY-MM-DD HH:MM`.
    pub date: String,
    pub scale: String,
    pub seed: u64,
    pub runs: u32,
    /// Single-row transactions per sample.
    pub iterations: u64,
    /// Row counts of the sources after loading: category, product, review, inventory.
    pub rows: BTreeMap<String, u64>,
    pub postgres: String,
    /// The PostgreSQL installation (`pg_config --bindir`).
    #[serde(default)]
    pub bindir: String,
    pub tviews_version: String,
    /// How the installed pg_tviews library was built, and by whom.
    pub tviews_build: String,
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    /// Non-default server settings (name, value).
    pub settings: Vec<(String, String)>,
    pub preload: bool,
    pub command: String,
    pub seconds: f64,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApproachStatus {
    pub approach: Approach,
    pub included: bool,
    pub note: Option<String>,
}

/// A comparison of an approach's read model with the definitions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Check {
    pub approach: Approach,
    /// "before the runs", "after run 2".
    pub when: String,
    /// (table, rows that differ) per read-model table; pg_tviews adds `pg_tviews_diff(...)`.
    pub differing: Vec<(String, i64)>,
}

impl Check {
    pub fn ok(&self) -> bool {
        self.differing.iter().all(|(_, n)| *n == 0)
    }

    /// "hw_category: 2 rows differ, ..." for the tables that differ.
    pub fn differences(&self) -> String {
        self.differing
            .iter()
            .filter(|(_, n)| *n != 0)
            .map(|(t, n)| format!("{t}: {n} rows differ"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Seconds per transaction, measured over a sample of transactions.
    SecondsPerTxn,
    /// Committed transactions per second (all clients).
    TxnPerSecond,
    /// Seconds for the whole operation.
    Seconds,
}

impl Unit {
    /// The value as a cost (higher is worse), so every ratio reads the same way.
    pub fn cost(self, value: f64) -> f64 {
        match self {
            Unit::TxnPerSecond => 1.0 / value,
            Unit::SecondsPerTxn | Unit::Seconds => value,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpResult {
    pub op: Op,
    pub id: String,
    pub title: String,
    pub group: Group,
    pub unit: Unit,
    /// Source rows written per transaction.
    pub rows_per_txn: u64,
    pub samples: Vec<Sample>,
    pub notes: Vec<String>,
}

/// One approach's measurement of one operation in one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    pub approach: Approach,
    pub run: u32,
    /// Latency per transaction: the median of the sample's transactions; throughput: the
    /// median over the sample's windows; creation: seconds.
    pub value: f64,
    /// The mean of the same (for the time breakdown, whose counters are totals).
    #[serde(default)]
    pub mean: Option<f64>,
    /// Transactions timed (materialized views may time fewer than they apply).
    pub timed: u64,
    /// Transactions applied.
    pub total: u64,
    /// WAL written by the timed transactions (`pg_current_wal_lsn()` difference).
    pub wal_bytes: Option<u64>,
    /// Of which full-page images (pg_walinspect; None when it is not available).
    #[serde(default)]
    pub wal_fpi_bytes: Option<u64>,
    /// Transactions that failed (serialization failures, deadlocks) and were not counted.
    pub errors: u64,
    /// The read model was found wrong after this run: the sample measured a wrong answer.
    pub void: bool,
    /// Where pg_tviews' time went (pg_tviews only).
    pub tviews: Option<TviewsBreakdown>,
    /// Every transaction's latency (or every window's throughput), in order: kept for the
    /// approaches of the statistics comparison, whose transactions are paired one by one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<f64>,
}

impl Sample {
    /// A sample whose value is the median of `values` (latencies or throughputs), with their
    /// mean; None without values.
    pub fn of_values(
        approach: Approach,
        run: u32,
        values: &[f64],
        timed: u64,
        total: u64,
    ) -> Option<Sample> {
        let summary = summarize(values)?;
        Some(Sample {
            approach,
            run,
            value: summary.median,
            mean: Some(values.iter().sum::<f64>() / values.len() as f64),
            timed,
            total,
            wal_bytes: None,
            wal_fpi_bytes: None,
            errors: 0,
            void: false,
            tviews: None,
            values: Vec::new(),
        })
    }
}

/// Counters from `pg_tviews_session_stats()` and `pg_tviews_session_source_stats()`: totals
/// since a reset, or the difference over one transaction.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TviewsCounters {
    /// Milliseconds in the capture triggers of the source tables (statement time), TVIEWs read
    /// by other TVIEWs left out.
    pub capture_ms: f64,
    /// Milliseconds in the capture triggers of TVIEWs read by other TVIEWs (a cascade): part of
    /// the upstream TVIEW's flush time.
    #[serde(default)]
    pub cascade_capture_ms: f64,
    /// Milliseconds refreshing each TVIEW at commit (derive, apply; a cascade's capture on a
    /// TVIEW is inside its upstream TVIEW's time).
    pub flush_ms: BTreeMap<String, f64>,
    pub statements: i64,
    pub keys: i64,
    pub written: i64,
    pub skipped: i64,
}

impl TviewsCounters {
    /// What happened between `earlier` and `self` (cumulative counters of one session).
    pub fn since(&self, earlier: &TviewsCounters) -> TviewsCounters {
        TviewsCounters {
            capture_ms: self.capture_ms - earlier.capture_ms,
            cascade_capture_ms: self.cascade_capture_ms - earlier.cascade_capture_ms,
            flush_ms: self
                .flush_ms
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v - earlier.flush_ms.get(k).copied().unwrap_or(0.0),
                    )
                })
                .collect(),
            statements: self.statements - earlier.statements,
            keys: self.keys - earlier.keys,
            written: self.written - earlier.written,
            skipped: self.skipped - earlier.skipped,
        }
    }
}

/// Where a typical pg_tviews transaction spends its time: means over the transactions whose
/// latency lies between the sample's 25th and 75th percentiles (robust to bursts of noise,
/// and additive, unlike medians of each part).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TviewsBreakdown {
    pub transactions: u64,
    /// Seconds, as timed by the client.
    pub latency: f64,
    /// Seconds in the capture triggers of the source tables.
    pub capture: f64,
    /// Seconds in the capture triggers of TVIEWs read by other TVIEWs (inside `flush`).
    #[serde(default)]
    pub cascade_capture: f64,
    /// Seconds refreshing each TVIEW at commit.
    pub flush: BTreeMap<String, f64>,
    pub statements: f64,
    pub keys: f64,
    pub written: f64,
    pub skipped: f64,
}

impl TviewsBreakdown {
    /// From each transaction's latency (seconds) and counters.
    pub fn from_transactions(txns: &[(f64, TviewsCounters)]) -> Option<TviewsBreakdown> {
        if txns.is_empty() {
            return None;
        }
        let mut sorted: Vec<&(f64, TviewsCounters)> = txns.iter().collect();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (lo, hi) = (sorted.len() / 4, sorted.len() - sorted.len() / 4);
        let middle = &sorted[lo..hi.max(lo + 1)];
        let n = middle.len() as f64;
        let mean = |f: &dyn Fn(&(f64, TviewsCounters)) -> f64| {
            middle.iter().map(|t| f(t)).sum::<f64>() / n
        };
        let mut flush = BTreeMap::new();
        for (_, c) in middle.iter() {
            for (k, ms) in &c.flush_ms {
                *flush.entry(k.clone()).or_insert(0.0) += ms / 1e3 / n;
            }
        }
        Some(TviewsBreakdown {
            transactions: middle.len() as u64,
            latency: mean(&|t| t.0),
            capture: mean(&|t| t.1.capture_ms / 1e3),
            cascade_capture: mean(&|t| t.1.cascade_capture_ms / 1e3),
            flush,
            statements: mean(&|t| t.1.statements as f64),
            keys: mean(&|t| t.1.keys as f64),
            written: mean(&|t| t.1.written as f64),
            skipped: mean(&|t| t.1.skipped as f64),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileEntry {
    pub statement: String,
    pub keys: String,
    pub execution_ms: Option<f64>,
    pub planning_ms: Option<f64>,
    /// The top of the plan (first lines of EXPLAIN), for the report.
    pub plan_head: String,
}

/// One line of an operation's table: an approach's summary and its ratios.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub approach: Approach,
    /// Of the values, in the operation's unit (valid runs only).
    pub summary: Summary,
    /// Median cost ÷ plain DML's median cost.
    pub vs_plain: Option<f64>,
    /// Median cost ÷ pg_tviews' median cost (> 1: pg_tviews is cheaper).
    pub vs_tviews: Option<f64>,
    /// The same ratio computed within each run: its min/median/max.
    pub vs_tviews_runs: Option<Summary>,
    pub void_runs: usize,
    pub timed: u64,
    pub total: u64,
    pub errors: u64,
    /// Median WAL bytes per changed source row.
    pub wal_per_row: Option<f64>,
    /// The same without full-page images.
    pub wal_per_row_no_fpi: Option<f64>,
}

/// pg_tviews preloaded (shared-memory statistics on) against not preloaded, over the operations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreloadComparison {
    pub ops: Vec<PreloadRatio>,
    pub summary: PreloadSummary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreloadSummary {
    pub operations: usize,
    pub within_noise: usize,
    /// Operations where pg_tviews moved, but plain DML moved as much between the clusters.
    #[serde(default)]
    pub as_control: Vec<String>,
    /// Operations where preloading cost measurably more, or less.
    pub costlier: Vec<String>,
    pub cheaper: Vec<String>,
    /// Over the operations: each one's median per-run ratio (preloaded ÷ not preloaded).
    pub ratio_medians: Option<Summary>,
    /// The same for plain DML in the two clusters.
    pub control_medians: Option<Summary>,
}

/// Whether an operation's ratio stands out of the noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The runs do not agree on a side of 1, or the paired interval contains 1.
    WithinNoise,
    /// Every run's ratio above 1, and the paired interval above 1.
    Costlier,
    /// Every run's ratio below 1, and the paired interval below 1.
    Cheaper,
    /// Costlier or cheaper, but plain DML (the control, where pg_tviews does no work) moved as
    /// much between the two clusters: the paired intervals overlap, so the clusters differ, not
    /// pg_tviews' statistics.
    AsControl,
}

impl Verdict {
    /// Costlier or cheaper only when the runs agree and the paired interval (if there is one)
    /// excludes 1.
    pub fn of(per_run: Option<Summary>, paired: Option<MedianCi>) -> Verdict {
        let Some(runs) = per_run else {
            return Verdict::WithinNoise;
        };
        let above = runs.n >= 2 && runs.min > 1.0 && paired.is_none_or(|p| p.low > 1.0);
        let below = runs.n >= 2 && runs.max < 1.0 && paired.is_none_or(|p| p.high < 1.0);
        if above {
            Verdict::Costlier
        } else if below {
            Verdict::Cheaper
        } else {
            Verdict::WithinNoise
        }
    }

    /// This verdict once the control is taken into account: a difference stands only when
    /// pg_tviews' paired interval lies beyond the control's (entirely above it when costlier,
    /// below when cheaper).
    pub fn against_control(self, paired: Option<MedianCi>, control: Option<MedianCi>) -> Verdict {
        match (self, paired, control) {
            (Verdict::Costlier, Some(p), Some(c)) if p.low <= c.high => Verdict::AsControl,
            (Verdict::Cheaper, Some(p), Some(c)) if p.high >= c.low => Verdict::AsControl,
            (v, _, _) => v,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Verdict::WithinNoise => "within noise",
            Verdict::Costlier => "costlier preloaded",
            Verdict::Cheaper => "cheaper preloaded",
            Verdict::AsControl => "as the control",
        }
    }
}

/// One operation's ratio of costs, preloaded ÷ not preloaded (above 1: preloading costs more).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreloadRatio {
    pub op: String,
    pub unit: Unit,
    /// Median over runs of each side's sample value, in the operation's unit.
    pub not_preloaded: Option<f64>,
    pub preloaded: Option<f64>,
    /// The ratio of the two samples of each run: min, median, max over runs.
    pub per_run: Option<Summary>,
    /// The ratio of each transaction (or throughput window) to its twin, the one with the same
    /// keys and position in the same run: median over all runs, with its 95% interval.
    pub paired: Option<MedianCi>,
    /// The same two for plain DML in the two clusters (pg_tviews does no work there).
    pub control_per_run: Option<Summary>,
    pub control_paired: Option<MedianCi>,
    pub verdict: Verdict,
}

impl OpResult {
    /// The preloaded twin's cost over `base`'s: per run, and per paired transaction.
    fn twin_ratios(&self, base: Approach) -> (Option<Summary>, Option<MedianCi>) {
        let Some(twin) = base.preloaded_twin() else {
            return (None, None);
        };
        let runs = self.samples.iter().map(|s| s.run).max().unwrap_or(0);
        let per_run = paired_ratios(
            &self.costs_by_run(twin, runs),
            &self.costs_by_run(base, runs),
        );
        let valid = |a: Approach, run: u32| {
            self.samples
                .iter()
                .find(|s| s.approach == a && s.run == run && !s.void)
        };
        let mut pairs = Vec::new();
        for run in 1..=runs {
            if let (Some(b), Some(t)) = (valid(base, run), valid(twin, run)) {
                pairs.extend(b.values.iter().zip(&t.values).filter_map(|(b, t)| {
                    ratio(Some(self.unit.cost(*t)), Some(self.unit.cost(*b)))
                }));
            }
        }
        (per_run, median_ci(&pairs))
    }

    /// pg_tviews preloaded ÷ not preloaded for this operation; None without both measured.
    pub fn preload_ratio(&self) -> Option<PreloadRatio> {
        let (per_run, paired) = self.twin_ratios(Approach::Tviews);
        per_run?;
        let (control_per_run, control_paired) = self.twin_ratios(Approach::Plain);
        let median = |a: Approach| {
            let v: Vec<f64> = self
                .samples
                .iter()
                .filter(|s| s.approach == a && !s.void)
                .map(|s| s.value)
                .collect();
            summarize(&v).map(|s| s.median)
        };
        Some(PreloadRatio {
            op: self.id.clone(),
            unit: self.unit,
            not_preloaded: median(Approach::Tviews),
            preloaded: median(Approach::TviewsPreloaded),
            per_run,
            paired,
            control_per_run,
            control_paired,
            verdict: Verdict::of(per_run, paired).against_control(paired, control_paired),
        })
    }

    /// Each approach's valid values by run (None where a run has no valid sample).
    fn costs_by_run(&self, approach: Approach, runs: u32) -> Vec<Option<f64>> {
        (1..=runs)
            .map(|run| {
                self.samples
                    .iter()
                    .find(|s| s.approach == approach && s.run == run && !s.void)
                    .map(|s| self.unit.cost(s.value))
            })
            .collect()
    }

    fn median_cost(&self, approach: Approach) -> Option<f64> {
        let costs: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.approach == approach && !s.void)
            .map(|s| self.unit.cost(s.value))
            .collect();
        summarize(&costs).map(|s| s.median)
    }

    /// The table rows, in the order the approaches were given.
    pub fn rows(&self, approaches: &[Approach]) -> Vec<Row> {
        let runs = self.samples.iter().map(|s| s.run).max().unwrap_or(0);
        let plain = self.median_cost(Approach::Plain);
        let tviews = self.median_cost(Approach::Tviews);
        let tviews_runs = self.costs_by_run(Approach::Tviews, runs);
        approaches
            .iter()
            .filter_map(|&a| {
                let mine: Vec<&Sample> = self.samples.iter().filter(|s| s.approach == a).collect();
                let valid: Vec<f64> = mine.iter().filter(|s| !s.void).map(|s| s.value).collect();
                let summary = summarize(&valid)?;
                let cost = self.median_cost(a);
                let wal: Vec<f64> = mine
                    .iter()
                    .filter(|s| !s.void && s.timed > 0 && self.rows_per_txn > 0)
                    .filter_map(|s| {
                        s.wal_bytes
                            .map(|w| w as f64 / (s.timed * self.rows_per_txn) as f64)
                    })
                    .collect();
                let wal_no_fpi: Vec<f64> = mine
                    .iter()
                    .filter(|s| !s.void && s.timed > 0 && self.rows_per_txn > 0)
                    .filter_map(|s| {
                        let (w, f) = (s.wal_bytes?, s.wal_fpi_bytes?);
                        Some(w.saturating_sub(f) as f64 / (s.timed * self.rows_per_txn) as f64)
                    })
                    .collect();
                Some(Row {
                    approach: a,
                    summary,
                    vs_plain: ratio(cost, plain),
                    vs_tviews: ratio(cost, tviews),
                    vs_tviews_runs: paired_ratios(&self.costs_by_run(a, runs), &tviews_runs),
                    void_runs: mine.iter().filter(|s| s.void).count(),
                    timed: mine.iter().map(|s| s.timed).sum(),
                    total: mine.iter().map(|s| s.total).sum(),
                    errors: mine.iter().map(|s| s.errors).sum(),
                    wal_per_row: summarize(&wal).map(|s| s.median),
                    wal_per_row_no_fpi: summarize(&wal_no_fpi).map(|s| s.median),
                })
            })
            .collect()
    }
}

impl Results {
    pub fn included(&self) -> Vec<Approach> {
        self.approaches
            .iter()
            .filter(|a| a.included)
            .map(|a| a.approach)
            .collect()
    }

    /// The approaches of the tables per operation and the chart: those measured, without the
    /// preloaded twins (which only serve the statistics comparison).
    pub fn compared(&self) -> Vec<Approach> {
        self.included()
            .into_iter()
            .filter(|a| !a.is_preloaded_twin())
            .collect()
    }

    /// pg_tviews preloaded (statistics on) against not, per operation, with plain DML in the
    /// same two clusters as the control; None when the preloaded twin was not measured.
    pub fn preload_comparison(&self) -> Option<PreloadComparison> {
        if !self.included().contains(&Approach::TviewsPreloaded) {
            return None;
        }
        let ops: Vec<PreloadRatio> = self
            .ops
            .iter()
            .filter_map(|op| op.preload_ratio())
            .collect();
        if ops.is_empty() {
            return None;
        }
        let count = |v: Verdict| ops.iter().filter(|o| o.verdict == v).count();
        let names = |v: Verdict| {
            ops.iter()
                .filter(|o| o.verdict == v)
                .map(|o| o.op.clone())
                .collect()
        };
        let medians: Vec<f64> = ops
            .iter()
            .filter_map(|o| o.per_run.map(|s| s.median))
            .collect();
        let control: Vec<f64> = ops
            .iter()
            .filter_map(|o| o.control_per_run.map(|s| s.median))
            .collect();
        let summary = PreloadSummary {
            operations: ops.len(),
            within_noise: count(Verdict::WithinNoise),
            as_control: names(Verdict::AsControl),
            costlier: names(Verdict::Costlier),
            cheaper: names(Verdict::Cheaper),
            ratio_medians: summarize(&medians),
            control_medians: summarize(&control),
        };
        Some(PreloadComparison { ops, summary })
    }

    /// pg_tviews' median cost ÷ the cheaper hand-written trigger variant's, per operation,
    /// worst (highest) first: where pg_tviews loses most to the approach it must beat.
    pub fn tviews_vs_triggers(&self) -> Vec<(String, f64, Approach)> {
        let mut out: Vec<(String, f64, Approach)> = self
            .ops
            .iter()
            .filter_map(|op| {
                let rows = op.rows(&[Approach::TriggersRow, Approach::TriggersStmt]);
                // vs_tviews is trigger ÷ pg_tviews; invert it for pg_tviews ÷ trigger.
                rows.iter()
                    .filter_map(|r| r.vs_tviews.map(|v| (1.0 / v, r.approach)))
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(ratio, a)| (op.id.clone(), ratio, a))
            })
            .filter(|(_, r, _)| r.is_finite())
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        out
    }
}

/// A small, fixed set of results for the tests of the report and the chart.
#[cfg(test)]
pub fn fixture() -> Results {
    use crate::workload::{Action, Level};
    let meta = Meta {
        date: "2026-01-01 12:00 UTC".into(),
        scale: "small".into(),
        seed: 42,
        runs: 2,
        iterations: 60,
        rows: [
            ("category", 20),
            ("product", 1000),
            ("review", 3000),
            ("inventory", 903),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect(),
        postgres: "15.20".into(),
        bindir: "/usr/lib/postgresql/15/bin".into(),
        tviews_version: "0.1.0".into(),
        tviews_build: "release build of commit abc1234, installed by this command".into(),
        cpu: "Test CPU".into(),
        cores: 2,
        memory: "8 GiB".into(),
        settings: vec![
            ("fsync".into(), "on".into()),
            ("synchronous_commit".into(), "on".into()),
        ],
        preload: false,
        command: "cargo run --release -p tviews-benches --".into(),
        seconds: 123.0,
        notes: vec!["A note.".into()],
    };
    let sample = |approach, run, value: f64, wal: u64| Sample {
        wal_bytes: Some(wal),
        wal_fpi_bytes: Some(wal / 2),
        ..Sample::of_values(approach, run, &[value], 60, 60).unwrap()
    };
    // The statistics comparison's samples keep every transaction: pg_tviews preloaded costs 5%
    // more in every transaction; plain DML's control moves both ways.
    let with_values = |approach, run, values: Vec<f64>, wal: u64| Sample {
        wal_bytes: Some(wal),
        wal_fpi_bytes: Some(wal / 2),
        values: values.clone(),
        ..Sample::of_values(approach, run, &values, 60, 60).unwrap()
    };
    let scaled = |v: &[f64], by: &[f64]| -> Vec<f64> {
        v.iter()
            .zip(by.iter().cycle())
            .map(|(x, f)| x * f)
            .collect()
    };
    let tv_run1 = [0.0019, 0.002, 0.0021, 0.002, 0.0018, 0.0022];
    let plain_run1 = [0.0002, 0.00019, 0.00021, 0.0002, 0.00018, 0.00022];
    let twins: Vec<Sample> = [1u32, 2]
        .iter()
        .flat_map(|&run| {
            let f = if run == 1 { 1.0 } else { 1.5 };
            let tv = scaled(&tv_run1, &[f]);
            let plain = scaled(&plain_run1, &[f]);
            [
                with_values(Approach::TviewsPreloaded, run, scaled(&tv, &[1.05]), 4000),
                with_values(
                    Approach::PlainPreloaded,
                    run,
                    scaled(&plain, &[1.02, 0.98, 1.01, 0.99, 1.0, 1.03]),
                    1000,
                ),
            ]
        })
        .collect();
    let row_op = Op::Row {
        level: Level::Product,
        action: Action::Update,
    };
    let mut tv1 = with_values(Approach::Tviews, 1, tv_run1.to_vec(), 4000);
    let mut breakdown = TviewsBreakdown {
        transactions: 30,
        latency: 0.002,
        capture: 0.0001,
        statements: 8.0,
        keys: 5.0,
        written: 2.0,
        skipped: 3.0,
        ..TviewsBreakdown::default()
    };
    breakdown.flush.insert("tv_product".into(), 0.0003);
    breakdown.flush.insert("tv_category".into(), 0.0006);
    tv1.tviews = Some(breakdown);
    let conc = Op::Concurrent {
        clients: 8,
        hot: false,
    };
    let op = |op: Op, unit: Unit, samples: Vec<Sample>| OpResult {
        op,
        id: op.id(),
        title: op.title(),
        group: op.group(),
        unit,
        rows_per_txn: op.rows_per_txn(),
        samples,
        notes: Vec::new(),
    };
    let mut void = sample(Approach::TriggersRow, 2, 0.5, 100);
    void.void = true;
    Results {
        meta,
        approaches: vec![
            ApproachStatus {
                approach: Approach::Plain,
                included: true,
                note: None,
            },
            ApproachStatus {
                approach: Approach::Tviews,
                included: true,
                note: None,
            },
            ApproachStatus {
                approach: Approach::TriggersRow,
                included: true,
                note: Some("Not safe under concurrency".into()),
            },
            ApproachStatus {
                approach: Approach::PgIvm,
                included: false,
                note: Some("pg_ivm is not installed".into()),
            },
            ApproachStatus {
                approach: Approach::PlainPreloaded,
                included: true,
                note: None,
            },
            ApproachStatus {
                approach: Approach::TviewsPreloaded,
                included: true,
                note: Some("In a second cluster".into()),
            },
        ],
        checks: vec![
            Check {
                approach: Approach::Tviews,
                when: "before the runs".into(),
                differing: vec![("tv_product".into(), 0)],
            },
            Check {
                approach: Approach::TriggersRow,
                when: "after run 2".into(),
                differing: vec![("hw_category".into(), 2)],
            },
        ],
        safety: vec![
            Check {
                approach: Approach::Tviews,
                when: "round 1: 100 price changes by 8 clients on category 3".into(),
                differing: vec![("tv_category".into(), 0)],
            },
            Check {
                approach: Approach::TriggersRow,
                when: "round 1: 300 price changes by 8 clients on category 3".into(),
                differing: vec![("hw_category".into(), 2)],
            },
        ],
        ops: vec![
            op(
                row_op,
                Unit::SecondsPerTxn,
                [
                    with_values(Approach::Plain, 1, plain_run1.to_vec(), 1000),
                    with_values(Approach::Plain, 2, scaled(&plain_run1, &[1.5]), 1000),
                    tv1,
                    with_values(Approach::Tviews, 2, scaled(&tv_run1, &[1.5]), 4000),
                    sample(Approach::TriggersRow, 1, 0.001, 3000),
                    void,
                ]
                .into_iter()
                .chain(twins)
                .collect(),
            ),
            op(
                conc,
                Unit::TxnPerSecond,
                vec![
                    Sample::of_values(Approach::Plain, 1, &[8000.0, 9000.0, 10000.0], 27000, 27000)
                        .unwrap(),
                    Sample::of_values(Approach::Tviews, 1, &[700.0], 700, 700).unwrap(),
                    Sample::of_values(Approach::TriggersRow, 1, &[1400.0], 1400, 1400).unwrap(),
                ],
            ),
        ],
        profile: vec![ProfileEntry {
            statement: "tv_product apply_keys".into(),
            keys: "1 product".into(),
            execution_ms: Some(0.25),
            planning_ms: None,
            plan_head: "Aggregate".into(),
        }],
        preload_comparison: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{Action, Level};

    fn sample(approach: Approach, run: u32, value: f64) -> Sample {
        Sample {
            approach,
            run,
            value,
            mean: None,
            timed: 10,
            total: 10,
            wal_bytes: Some(1000),
            wal_fpi_bytes: Some(400),
            errors: 0,
            void: false,
            tviews: None,
            values: Vec::new(),
        }
    }

    fn op(unit: Unit, samples: Vec<Sample>) -> OpResult {
        let op = Op::Row {
            level: Level::Product,
            action: Action::Update,
        };
        OpResult {
            op,
            id: op.id(),
            title: op.title(),
            group: op.group(),
            unit,
            rows_per_txn: 1,
            samples,
            notes: Vec::new(),
        }
    }

    #[test]
    fn ratios_are_of_medians_and_per_run() {
        use Approach::*;
        let r = op(
            Unit::SecondsPerTxn,
            vec![
                sample(Plain, 1, 1.0),
                sample(Plain, 2, 1.0),
                sample(Plain, 3, 1.0),
                sample(Tviews, 1, 2.0),
                sample(Tviews, 2, 4.0),
                sample(Tviews, 3, 3.0),
                sample(TriggersRow, 1, 4.0),
                sample(TriggersRow, 2, 4.0),
                sample(TriggersRow, 3, 6.0),
            ],
        );
        let rows = r.rows(&[Plain, Tviews, TriggersRow, PgIvm]);
        assert_eq!(rows.len(), 3, "no samples, no row");
        assert_eq!(rows[1].vs_plain, Some(3.0));
        assert_eq!(rows[2].vs_tviews, Some(4.0 / 3.0));
        let per_run = rows[2].vs_tviews_runs.unwrap();
        assert_eq!((per_run.min, per_run.median, per_run.max), (1.0, 2.0, 2.0));
        assert_eq!(rows[0].wal_per_row, Some(100.0));
        assert_eq!(rows[0].wal_per_row_no_fpi, Some(60.0));
    }

    #[test]
    fn throughput_ratios_are_costs() {
        use Approach::*;
        let r = op(
            Unit::TxnPerSecond,
            vec![sample(Plain, 1, 1000.0), sample(Tviews, 1, 250.0)],
        );
        let rows = r.rows(&[Plain, Tviews]);
        assert_eq!(rows[1].vs_plain, Some(4.0));
        assert_eq!(rows[1].summary.median, 250.0);
    }

    #[test]
    fn the_summary_compares_with_the_cheaper_trigger() {
        use Approach::*;
        let mut results = Results {
            meta: serde_json::from_value(serde_json::json!({
                "date": "2026-01-01 00:00 UTC", "scale": "small", "seed": 1, "runs": 1,
                "iterations": 10, "rows": {}, "postgres": "15", "tviews_version": "0.1.0",
                "tviews_build": "test", "cpu": "cpu", "cores": 2, "memory": "1 GiB",
                "settings": [], "preload": false, "command": "test", "seconds": 1.0, "notes": []
            }))
            .unwrap(),
            approaches: Vec::new(),
            checks: Vec::new(),
            safety: Vec::new(),
            ops: vec![op(
                Unit::SecondsPerTxn,
                vec![
                    sample(Tviews, 1, 3.0),
                    sample(TriggersRow, 1, 1.0),
                    sample(TriggersStmt, 1, 2.0),
                ],
            )],
            profile: Vec::new(),
            preload_comparison: None,
        };
        let worst = results.tviews_vs_triggers();
        assert_eq!(worst, vec![("update_product".to_owned(), 3.0, TriggersRow)]);
        results.ops[0].samples.truncate(1);
        assert!(results.tviews_vs_triggers().is_empty());
    }

    #[test]
    fn the_breakdown_averages_the_middle_half() {
        let txn = |latency: f64, capture_ms: f64| {
            let mut c = TviewsCounters {
                capture_ms,
                statements: 4,
                ..TviewsCounters::default()
            };
            c.flush_ms.insert("tv_product".into(), 2.0 * capture_ms);
            (latency, c)
        };
        // The fastest and the slowest (a burst of noise) are left out.
        let b = TviewsBreakdown::from_transactions(&[
            txn(0.001, 0.1),
            txn(0.002, 0.2),
            txn(0.004, 0.4),
            txn(0.100, 9.0),
        ])
        .unwrap();
        assert_eq!(b.transactions, 2);
        assert!((b.latency - 0.003).abs() < 1e-12);
        assert!((b.capture - 0.0003).abs() < 1e-12);
        assert!((b.flush["tv_product"] - 0.0006).abs() < 1e-12);
        assert_eq!(b.statements, 4.0);
        let one = TviewsBreakdown::from_transactions(&[txn(0.5, 1.0)]).unwrap();
        assert_eq!(one.transactions, 1);
        assert_eq!(TviewsBreakdown::from_transactions(&[]), None);
        let later = txn(0.0, 3.0).1;
        let earlier = txn(0.0, 1.0).1;
        assert_eq!(later.since(&earlier).capture_ms, 2.0);
        assert_eq!(later.since(&earlier).statements, 0);
    }

    #[test]
    fn the_preload_comparison_pairs_transactions() {
        let results = fixture();
        let p = results.preload_comparison().expect("twins measured");
        // Only the operation where both twins were measured.
        assert_eq!(p.ops.len(), 1);
        let o = &p.ops[0];
        assert_eq!(o.op, "update_product");
        let runs = o.per_run.unwrap();
        assert!((runs.min - 1.05).abs() < 1e-9 && (runs.max - 1.05).abs() < 1e-9);
        let paired = o.paired.unwrap();
        assert_eq!(paired.n, 12);
        assert!(paired.low > 1.04 && paired.high < 1.06);
        assert_eq!(o.verdict, Verdict::Costlier);
        // The control moves both ways: within noise.
        let c = o.control_paired.unwrap();
        assert!(c.low < 1.0 && c.high > 1.0, "{c:?}");
        assert_eq!(
            Verdict::of(o.control_per_run, o.control_paired),
            Verdict::WithinNoise
        );
        assert_eq!(p.summary.costlier, vec!["update_product".to_owned()]);
        assert_eq!(p.summary.within_noise, 0);
        // The twins stay out of the tables per operation.
        assert!(!results.compared().contains(&Approach::TviewsPreloaded));
    }

    #[test]
    fn a_verdict_needs_every_run_and_the_interval() {
        let runs = |min, max| Summary {
            min,
            median: (min + max) / 2.0,
            max,
            n: 3,
        };
        let ci = |low, high| MedianCi {
            median: (low + high) / 2.0,
            low,
            high,
            n: 100,
        };
        use Verdict::*;
        assert_eq!(
            Verdict::of(Some(runs(1.01, 1.03)), Some(ci(1.01, 1.02))),
            Costlier
        );
        assert_eq!(
            Verdict::of(Some(runs(0.99, 1.03)), Some(ci(1.01, 1.02))),
            WithinNoise
        );
        // The control moved as much (overlapping intervals), or less.
        assert_eq!(
            Costlier.against_control(Some(ci(1.01, 1.05)), Some(ci(1.03, 1.08))),
            AsControl
        );
        assert_eq!(
            Costlier.against_control(Some(ci(1.04, 1.06)), Some(ci(0.99, 1.02))),
            Costlier
        );
        assert_eq!(
            Cheaper.against_control(Some(ci(0.90, 0.95)), Some(ci(0.94, 1.01))),
            AsControl
        );
        assert_eq!(
            WithinNoise.against_control(Some(ci(0.99, 1.01)), Some(ci(1.05, 1.08))),
            WithinNoise
        );
        assert_eq!(
            Verdict::of(Some(runs(1.01, 1.03)), Some(ci(0.99, 1.02))),
            WithinNoise
        );
        assert_eq!(Verdict::of(Some(runs(0.9, 0.95)), None), Cheaper);
        assert_eq!(Verdict::of(None, None), WithinNoise);
        let one_run = Summary {
            n: 1,
            ..runs(1.1, 1.1)
        };
        assert_eq!(Verdict::of(Some(one_run), None), WithinNoise);
    }

    #[test]
    fn void_samples_are_left_out() {
        use Approach::*;
        let mut bad = sample(TriggersRow, 2, 100.0);
        bad.void = true;
        let r = op(
            Unit::SecondsPerTxn,
            vec![
                sample(Tviews, 1, 1.0),
                sample(Tviews, 2, 1.0),
                sample(TriggersRow, 1, 2.0),
                bad,
            ],
        );
        let rows = r.rows(&[Tviews, TriggersRow]);
        assert_eq!(rows[1].summary.max, 2.0);
        assert_eq!(rows[1].void_runs, 1);
    }
}
