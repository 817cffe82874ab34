//! `report.md`: the results as Markdown, one table per operation.

use std::fmt::Write as _;

use crate::approach::Approach;
use crate::results::{
    Check, OpResult, PreloadComparison, Results, Row, TviewsBreakdown, Unit, Verdict,
};
use crate::stats::{MedianCi, Summary, summarize};
use crate::workload::Group;

/// Formats seconds with a unit that keeps three significant digits: 412 µs, 3.21 ms, 1.25 s.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "–".to_owned();
    }
    let (v, unit) = if seconds >= 1.0 {
        (seconds, "s")
    } else if seconds >= 1e-3 {
        (seconds * 1e3, "ms")
    } else {
        (seconds * 1e6, "µs")
    };
    format!("{} {unit}", sig3(v))
}

/// Three significant digits, no exponent: 1234 → "1234", 12.345 → "12.3", 0.01234 → "0.0123".
pub fn sig3(v: f64) -> String {
    if !v.is_finite() {
        return "–".to_owned();
    }
    let a = v.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        let digits = (-a.log10().floor()) as usize + 2;
        format!("{v:.digits$}")
    }
}

pub fn times(r: Option<f64>) -> String {
    match r {
        Some(r) if r.is_finite() => format!("{}×", sig3(r)),
        _ => "–".to_owned(),
    }
}

fn bytes(b: f64) -> String {
    if b >= 1024.0 * 1024.0 {
        format!("{} MiB", sig3(b / 1024.0 / 1024.0))
    } else if b >= 1024.0 {
        format!("{} KiB", sig3(b / 1024.0))
    } else {
        format!("{} B", sig3(b))
    }
}

fn value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::SecondsPerTxn | Unit::Seconds => duration(v),
        Unit::TxnPerSecond => format!("{} tx/s", sig3(v)),
    }
}

fn group_title(g: Group) -> &'static str {
    match g {
        Group::Row => "Single-row transactions",
        Group::Bulk => "Bulk statements",
        Group::Read => "Reads",
        Group::Concurrency => "Concurrent clients (throughput)",
        Group::Creation => "Initial creation",
    }
}

fn group_intro(g: Group) -> &'static str {
    match g {
        Group::Row => {
            "Latency per transaction, timed from the client: one statement in autocommit \
             (materialized views: the statement, then the REFRESH of every view it can affect in a \
             second transaction, timed together). A sample's value is the median of its \
             transactions."
        }
        Group::Bulk => {
            "Latency per statement (autocommit; materialized views: with their refresh), timed \
             from the client; a sample's value is the median of its statements."
        }
        Group::Read => {
            "Latency of `SELECT data ... WHERE key = $1` on the approach's documents; plain DML \
             has none and computes the document from its definition. pg_ivm's product and category \
             documents are views assembled at read time (see Approaches)."
        }
        Group::Concurrency => {
            "Committed transactions per second over all clients, each client on its own \
             connection, in three short windows per sample that alternate between the approaches \
             (the sample's value is their median); the cost ratios are inverse throughputs \
             (> 1: fewer transactions per second)."
        }
        Group::Creation => {
            "Seconds to build the read model from the loaded sources in one transaction (tables, \
             keys, indexes, triggers), against `CREATE TABLE AS` of the three definitions (plus \
             the index the category documents are computed through)."
        }
    }
}

/// The whole report.
pub fn render(results: &Results) -> String {
    let m = &results.meta;
    let approaches = results.compared();
    let mut out = String::new();
    let _ = writeln!(out, "# pg_tviews benchmark: {} scale\n", m.scale);
    let rows: Vec<String> = ["category", "product", "review", "inventory"]
        .iter()
        .map(|t| format!("{} {t}", m.rows.get(*t).copied().unwrap_or(0)))
        .collect();
    let _ = writeln!(out, "- **Date:** {}", m.date);
    let _ = writeln!(
        out,
        "- **Machine:** {} ({} cores), {} memory",
        m.cpu, m.cores, m.memory
    );
    let _ = writeln!(out, "- **PostgreSQL:** {} ({})", m.postgres, m.bindir);
    let _ = writeln!(
        out,
        "- **pg_tviews:** {}, {}{}",
        m.tviews_version,
        m.tviews_build,
        if m.preload {
            ", in shared_preload_libraries"
        } else if results.included().contains(&Approach::TviewsPreloaded) {
            ", not preloaded (a second cluster preloads it for the statistics comparison)"
        } else {
            ", not preloaded"
        }
    );
    let _ = writeln!(
        out,
        "- **Data:** {} rows (seed {}), every category with 50 products",
        rows.join(", "),
        m.seed
    );
    let _ = writeln!(
        out,
        "- **Runs:** {}, {} single-row transactions per sample; the order of the approaches rotates between runs",
        m.runs, m.iterations
    );
    let setting = |name: &str| {
        m.settings
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("default")
            .to_owned()
    };
    let durable = setting("fsync") == "on" && setting("synchronous_commit") == "on";
    let _ = writeln!(
        out,
        "- **Durability:** fsync = {}, synchronous_commit = {}, full_page_writes = {}{}",
        setting("fsync"),
        setting("synchronous_commit"),
        setting("full_page_writes"),
        if durable {
            " (every commit waits for its WAL flush to disk)"
        } else {
            " (**not durable**: commits do not wait for the disk)"
        }
    );
    let _ = writeln!(out, "- **Command:** `{}`", m.command);
    let _ = writeln!(out, "- **Took:** {}", duration(m.seconds));
    out.push('\n');
    out.push_str(
        "Within a run, the approaches take turns transaction by transaction (each transaction \
         of an operation runs in every approach before the next one runs in any), so that noise \
         on the machine hits them alike. Every figure is the median over the runs, with the \
         minimum and maximum. Ratios are \
         ratios of medians of costs (time per transaction, or 1 / throughput): **× plain** is \
         the cost over plain DML on the same tables with no read model; **÷ pg_tviews** is the \
         approach's cost over pg_tviews' (above 1: pg_tviews is cheaper); *per run* is that ratio \
         computed within each run (min–max), where both were measured side by side. Each \
         approach's read model is compared with its definition before the runs and after each \
         run (`EXCEPT ALL` both ways on each row's text); a run whose check failed is void and \
         left out.\n\n",
    );
    out.push_str("![ratios per operation](chart.png)\n\n");
    out.push_str("Raw data: [results.json](results.json). Refresh statement plans: [profile.md](profile.md).\n\n");

    render_summary(results, &mut out);
    render_preload(results, &mut out);
    render_approaches(results, &mut out);
    render_checks(results, &mut out);
    render_safety(results, &mut out);

    for group in [
        Group::Row,
        Group::Bulk,
        Group::Concurrency,
        Group::Creation,
        Group::Read,
    ] {
        let ops: Vec<&OpResult> = results.ops.iter().filter(|o| o.group == group).collect();
        if ops.is_empty() {
            continue;
        }
        let _ = writeln!(out, "## {}\n\n{}\n", group_title(group), group_intro(group));
        for op in ops {
            render_op(op, &approaches, &mut out);
        }
    }
    render_wal(results, &approaches, &mut out);
    render_breakdown(results, &mut out);
    render_profile(results, &mut out);

    out.push_str("## Server settings\n\nEvery setting not at its default:\n\n| setting | value |\n|---|---|\n");
    for (k, v) in &m.settings {
        let _ = writeln!(out, "| {k} | {v} |");
    }
    out.push('\n');
    if !m.notes.is_empty() {
        out.push_str("## Notes\n\n");
        for n in &m.notes {
            let _ = writeln!(out, "- {n}");
        }
        out.push('\n');
    }
    out
}

fn render_summary(results: &Results, out: &mut String) {
    let worst = results.tviews_vs_triggers();
    if worst.is_empty() {
        return;
    }
    out.push_str("## pg_tviews against hand-written triggers\n\n");
    out.push_str(
        "pg_tviews' median cost over the cheaper of the two trigger variants (below 1: pg_tviews \
         is cheaper), worst first:\n\n| operation | pg_tviews ÷ best trigger | best trigger |\n|---|---|---|\n",
    );
    for (id, r, a) in &worst {
        let _ = writeln!(out, "| {id} | {} | {} |", times(Some(*r)), a.label());
    }
    out.push('\n');
}

/// "1.00×–1.04× (median 1.02×)" of ratios.
fn ratio_range(s: &Summary) -> String {
    format!(
        "{}–{} (median {})",
        times(Some(s.min)),
        times(Some(s.max)),
        times(Some(s.median))
    )
}

fn per_run(s: Option<Summary>) -> String {
    s.map_or_else(
        || "–".to_owned(),
        |s| {
            format!(
                "{} / {} / {}",
                times(Some(s.min)),
                times(Some(s.median)),
                times(Some(s.max))
            )
        },
    )
}

fn paired(p: Option<MedianCi>) -> String {
    p.map_or_else(
        || "–".to_owned(),
        |p| {
            format!(
                "{} [{}, {}] (n = {})",
                times(Some(p.median)),
                times(Some(p.low)),
                times(Some(p.high)),
                p.n
            )
        },
    )
}

/// The statistics comparison's verdict in a few sentences.
pub fn preload_verdict(p: &PreloadComparison) -> String {
    let s = &p.summary;
    let mut out = format!(
        "within noise in {} of {} operations",
        s.within_noise, s.operations
    );
    if !s.as_control.is_empty() {
        let _ = write!(
            out,
            ", and in {} more the difference is the control's too (plain DML moved as much \
             between the two clusters: {})",
            s.as_control.len(),
            s.as_control
                .iter()
                .map(|o| format!("`{o}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(r) = &s.ratio_medians {
        let _ = write!(
            out,
            "; each operation's median ratio (preloaded ÷ not preloaded) lies in {}",
            ratio_range(r)
        );
    }
    if let Some(c) = &s.control_medians {
        let _ = write!(
            out,
            "; plain DML in the same two clusters (no TVIEWs there): {}",
            ratio_range(c)
        );
    }
    out.push('.');
    for (verdict, names) in [
        (Verdict::Costlier, &s.costlier),
        (Verdict::Cheaper, &s.cheaper),
    ] {
        if names.is_empty() {
            continue;
        }
        let items: Vec<String> = p
            .ops
            .iter()
            .filter(|o| o.verdict == verdict)
            .map(|o| {
                let mut item = format!("`{}`", o.op);
                if let Some(r) = o.per_run {
                    let _ = write!(item, " {} per run", ratio_range(&r));
                }
                if let Some(p) = o.paired {
                    let _ = write!(
                        item,
                        ", paired {} (95%: {}–{})",
                        times(Some(p.median)),
                        times(Some(p.low)),
                        times(Some(p.high))
                    );
                }
                item
            })
            .collect();
        let _ = write!(
            out,
            " Preloaded {} in every run, with the paired 95% interval {} 1: {}.",
            match verdict {
                Verdict::Costlier => "costlier",
                _ => "cheaper",
            },
            match verdict {
                Verdict::Costlier => "above",
                _ => "below",
            },
            items.join("; ")
        );
    }
    out
}

fn render_preload(results: &Results, out: &mut String) {
    let Some(p) = results.preload_comparison() else {
        return;
    };
    out.push_str(
        "## Statistics on or off: pg_tviews preloaded or not

Shared-memory statistics exist \
         only when pg_tviews is in `shared_preload_libraries`. A second cluster, started with the \
         same settings plus `shared_preload_libraries = 'pg_tviews'` and loaded with the same \
         data, holds pg_tviews and plain DML; they take their turns in the same interleaving as \
         every other approach (transaction by transaction, same keys). Ratios are preloaded cost \
         ÷ not-preloaded cost (above 1: preloading costs more). *Per run*: the ratio of the two \
         samples within each run, min / median / max over the runs. *Paired*: the ratio of each \
         transaction (throughput: each window) to its twin with the same keys in the same run, \
         median over all runs with its 95% interval (order statistics). *Plain DML* is the \
         control: the same comparison where pg_tviews maintains nothing (no TVIEWs; the \
         preloading cluster still loads its library into every backend), so it shows what the \
         two clusters differ by apart from pg_tviews' work. The verdict is *costlier* (or *cheaper*) \
         only when every run's ratio is above (below) 1, the paired interval excludes 1, and it \
         lies beyond the control's paired interval; *as the control* when the first two hold but \
         the intervals overlap (plain DML moved as much: the clusters differ, not pg_tviews' \
         statistics); otherwise *within noise*.\n\n",
    );
    let _ = writeln!(out, "**Verdict:** {}\n", preload_verdict(&p));
    out.push_str(
        "| operation | not preloaded | preloaded | per run: min / median / max | paired [95%] | plain DML per run | plain DML paired [95%] | verdict |\n|---|---|---|---|---|---|---|---|\n",
    );
    for o in &p.ops {
        let v = |x: Option<f64>| x.map_or_else(|| "–".to_owned(), |x| value(o.unit, x));
        let verdict = match o.verdict {
            Verdict::WithinNoise | Verdict::AsControl => o.verdict.label().to_owned(),
            other => format!("**{}**", other.label()),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} | {verdict} |",
            o.op,
            v(o.not_preloaded),
            v(o.preloaded),
            per_run(o.per_run),
            paired(o.paired),
            per_run(o.control_per_run),
            paired(o.control_paired),
        );
    }
    out.push('\n');
}

fn render_approaches(results: &Results, out: &mut String) {
    out.push_str("## Approaches\n\n");
    for a in &results.approaches {
        let what = match a.approach {
            Approach::Plain => "the writes alone, no read model (the floor)",
            Approach::Tviews => {
                "the demo's TVIEWs tv_review, tv_product, tv_category (a cascade), plus an index on tv_product (fk_category)"
            }
            Approach::TriggersRow => {
                "tables hw_review, hw_product, hw_category kept by AFTER ... FOR EACH ROW triggers (benches/sql/triggers_row.sql)"
            }
            Approach::TriggersStmt => {
                "the same tables kept by statement-level triggers with transition tables, set-based (benches/sql/triggers_stmt.sql)"
            }
            Approach::Matview => {
                "materialized views, refreshed after each change commits (in one more transaction, timed with it), only those the change can affect"
            }
            Approach::MatviewConcurrently => "the same with REFRESH MATERIALIZED VIEW CONCURRENTLY",
            Approach::PgIvm => "pg_ivm IMMVs (benches/sql/pg_ivm.sql)",
            Approach::PlainPreloaded => "plain DML with pg_tviews preloaded (the control)",
            Approach::TviewsPreloaded => {
                "pg_tviews with its library in shared_preload_libraries (shared-memory statistics on)"
            }
        };
        let status = if a.included { "" } else { " — **skipped**" };
        let _ = write!(out, "- **{}**{status}: {what}", a.approach.label());
        if let Some(note) = &a.note {
            let _ = write!(out, ". {note}");
        }
        out.push('\n');
    }
    out.push('\n');
}

fn render_checks(results: &Results, out: &mut String) {
    out.push_str("## Correctness checks\n\n| approach | checks | result |\n|---|---|---|\n");
    for a in results.included() {
        if a.base() == Approach::Plain {
            continue;
        }
        let checks: Vec<_> = results.checks.iter().filter(|c| c.approach == a).collect();
        let failed: Vec<String> = checks
            .iter()
            .filter(|c| !c.ok())
            .map(|c| format!("{}: {}", c.when, c.differences()))
            .collect();
        let result = if failed.is_empty() {
            "exact every time".to_owned()
        } else {
            format!("**WRONG** — {}", failed.join("; "))
        };
        let _ = writeln!(out, "| {} | {} | {result} |", a.label(), checks.len());
    }
    out.push('\n');
}

fn render_safety(results: &Results, out: &mut String) {
    if results.safety.is_empty() {
        return;
    }
    out.push_str(
        "## Concurrency safety\n\nAfter the runs, untimed: eight clients change the prices of \
         products of one category for half a second (distinct products, one shared category \
         document), then the read model is compared with its definition (and rebuilt if \
         wrong); a few rounds per approach, since a race does not show every time. A \
         hand-written trigger recomputes the category document from a snapshot that misses the \
         other writers' uncommitted changes, and the last upsert to commit wins.\n\n\
         | approach | rounds wrong | price changes | what differed |\n|---|---|---|---|\n",
    );
    let mut approaches: Vec<Approach> = results.safety.iter().map(|c| c.approach).collect();
    approaches.dedup();
    for a in approaches {
        let rounds: Vec<&Check> = results.safety.iter().filter(|c| c.approach == a).collect();
        let wrong: Vec<&&Check> = rounds.iter().filter(|c| !c.ok()).collect();
        let writes: u64 = rounds
            .iter()
            .filter_map(|c| {
                c.when
                    .split(": ")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        // The same difference in every wrong round is said once, with how often.
        let mut what: Vec<(String, usize)> = Vec::new();
        for d in wrong.iter().map(|c| c.differences()) {
            match what.iter_mut().find(|(w, _)| *w == d) {
                Some((_, n)) => *n += 1,
                None => what.push((d, 1)),
            }
        }
        let what = what
            .iter()
            .map(|(w, n)| {
                if *n > 1 {
                    format!("{w} ({n} rounds)")
                } else {
                    w.clone()
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
        let verdict = if wrong.is_empty() {
            format!("0 of {}", rounds.len())
        } else {
            format!("**{} of {}**", wrong.len(), rounds.len())
        };
        let _ = writeln!(
            out,
            "| {} | {verdict} | {writes} | {} |",
            a.label(),
            if what.is_empty() { "–" } else { &what }
        );
    }
    out.push('\n');
}

fn render_op(op: &OpResult, approaches: &[Approach], out: &mut String) {
    let _ = writeln!(out, "### `{}`: {}\n", op.id, op.title);
    let rows = op.rows(approaches);
    if rows.is_empty() {
        out.push_str("No measurements.\n\n");
        return;
    }
    out.push_str("| approach | median | min | max | × plain | ÷ pg_tviews | ÷ pg_tviews per run |\n|---|---|---|---|---|---|---|\n");
    for r in &rows {
        let _ = writeln!(
            out,
            "| {}{} | {} | {} | {} | {} | {} | {} |",
            r.approach.label(),
            row_flags(r),
            value(op.unit, r.summary.median),
            value(op.unit, r.summary.min),
            value(op.unit, r.summary.max),
            times(r.vs_plain),
            times(r.vs_tviews),
            r.vs_tviews_runs
                .map(|s| format!("{}–{}", times(Some(s.min)), times(Some(s.max))))
                .unwrap_or_else(|| "–".to_owned()),
        );
    }
    out.push('\n');
    for n in &op.notes {
        let _ = writeln!(out, "- {n}");
    }
    if !op.notes.is_empty() {
        out.push('\n');
    }
}

fn row_flags(r: &Row) -> String {
    let mut flags = Vec::new();
    if r.void_runs > 0 {
        flags.push(format!("{} void run(s)", r.void_runs));
    }
    if r.timed < r.total {
        flags.push(format!("{} of {} timed", r.timed, r.total));
    }
    if r.errors > 0 {
        flags.push(format!("{} failed", r.errors));
    }
    if flags.is_empty() {
        String::new()
    } else {
        format!(" ({})", flags.join(", "))
    }
}

fn render_wal(results: &Results, approaches: &[Approach], out: &mut String) {
    let ops: Vec<&OpResult> = results
        .ops
        .iter()
        .filter(|o| matches!(o.group, Group::Row | Group::Bulk) && o.rows_per_txn > 0)
        .collect();
    if ops.is_empty() {
        return;
    }
    let split = ops
        .iter()
        .flat_map(|o| o.samples.iter())
        .any(|s| s.wal_fpi_bytes.is_some());
    out.push_str(
        "## Write amplification\n\nWAL bytes per changed source row, median over runs, from \
         `pg_current_wal_lsn()` before and after each timed transaction",
    );
    if split {
        out.push_str(
            ": first without full-page images (pg_walinspect), with the ratio to plain DML in \
             brackets, then the total. Full-page images depend on which pages a transaction \
             is the first to touch since the checkpoint that starts each run, so they say more \
             about the order of the operations than about the approach.\n\n",
        );
    } else {
        out.push_str(
            ", full-page images included (a checkpoint starts each run), with the ratio to \
             plain DML in brackets.\n\n",
        );
    }
    let _ = write!(out, "| operation |");
    for a in approaches {
        let _ = write!(out, " {} |", a.label());
    }
    out.push_str("\n|---|");
    for _ in approaches {
        out.push_str("---|");
    }
    out.push('\n');
    for op in ops {
        let rows = op.rows(approaches);
        let plain = rows.iter().find(|r| r.approach == Approach::Plain);
        let _ = write!(out, "| `{}` |", op.id);
        for a in approaches {
            let Some(r) = rows.iter().find(|r| r.approach == *a) else {
                out.push_str(" – |");
                continue;
            };
            let cell = match (r.wal_per_row_no_fpi, r.wal_per_row) {
                (Some(w), Some(total)) => {
                    let p = plain.and_then(|p| p.wal_per_row_no_fpi);
                    format!(
                        "{} ({}) / {}",
                        bytes(w),
                        times(p.map(|p| w / p.max(1.0))),
                        bytes(total)
                    )
                }
                (None, Some(total)) => {
                    let p = plain.and_then(|p| p.wal_per_row);
                    format!(
                        "{} ({})",
                        bytes(total),
                        times(p.map(|p| total / p.max(1.0)))
                    )
                }
                _ => "–".to_owned(),
            };
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
    out.push('\n');
}

/// Where pg_tviews' time goes in the single-row and bulk transactions, from its own counters.
fn render_breakdown(results: &Results, out: &mut String) {
    let mut names: Vec<String> = Vec::new();
    for op in &results.ops {
        for b in op.samples.iter().filter_map(|s| s.tviews.as_ref()) {
            for k in b.flush.keys() {
                if !names.contains(k) {
                    names.push(k.clone());
                }
            }
        }
    }
    names.sort_by_key(|n| match n.as_str() {
        "tv_review" => 0,
        "tv_product" => 1,
        "tv_category" => 2,
        _ => 3,
    });
    let mut lines = Vec::new();
    for op in results
        .ops
        .iter()
        .filter(|o| matches!(o.group, Group::Row | Group::Bulk))
    {
        let parts: Vec<&TviewsBreakdown> = op
            .samples
            .iter()
            .filter(|s| s.approach == Approach::Tviews && !s.void)
            .filter_map(|s| s.tviews.as_ref())
            .collect();
        if parts.is_empty() {
            continue;
        }
        let med = |f: &dyn Fn(&TviewsBreakdown) -> f64| {
            let v: Vec<f64> = parts.iter().map(|b| f(b)).collect();
            summarize(&v).map(|s| s.median).unwrap_or(f64::NAN)
        };
        let latency = med(&|b| b.latency);
        let capture = med(&|b| b.capture);
        let flushes: Vec<f64> = names
            .iter()
            .map(|n| med(&|b| b.flush.get(n).copied().unwrap_or(0.0)))
            .collect();
        let cascade = med(&|b| b.cascade_capture);
        let rest = latency - capture - flushes.iter().sum::<f64>();
        let mut line = format!(
            "| `{}` | {} | {} |",
            op.id,
            duration(latency),
            duration(capture)
        );
        for f in &flushes {
            let _ = write!(line, " {} |", duration(*f));
        }
        let _ = write!(line, " {} |", duration(cascade));
        let _ = write!(
            line,
            " {} | {} | {} / {} |",
            duration(rest),
            sig3(med(&|b| b.statements)),
            sig3(med(&|b| b.written)),
            sig3(med(&|b| b.written + b.skipped)),
        );
        lines.push(line);
    }
    if lines.is_empty() {
        return;
    }
    out.push_str(
        "## Where pg_tviews' time goes\n\nPer transaction, from `pg_tviews_session_stats()` and \
         `pg_tviews_session_source_stats()` read after every transaction: means over the \
         transactions whose latency lies between the sample's 25th and 75th percentiles, median \
         over runs. *capture* is the statement-level capture triggers of the source tables; each \
         TVIEW's *flush* is its refresh at commit (key derivation, apply, and the capture on \
         tv_product of what its apply wrote, for the cascade to tv_category); *cascade capture* \
         is that capture on tv_product alone (already inside tv_product's flush, not added \
         again); *rest* is everything else: the statement itself, the \
         pre-commit work not timed per TVIEW (in this version, estimating and taking value \
         locks), the commit's WAL flush and the round trip. *statements* counts refresh \
         statements; *rows written / recomputed* the TVIEW rows written (inserted, updated, \
         deleted) and recomputed.\n\n",
    );
    let _ = write!(out, "| operation | latency | capture |");
    for n in &names {
        let _ = write!(out, " flush {n} |");
    }
    out.push_str(
        " cascade capture | rest | statements | rows written / recomputed |\n|---|---|---|",
    );
    for _ in &names {
        out.push_str("---|");
    }
    out.push_str("---|---|---|---|\n");
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    out.push('\n');
}

fn render_profile(results: &Results, out: &mut String) {
    if results.profile.is_empty() {
        return;
    }
    out.push_str(
        "## pg_tviews' refresh statements\n\n`EXPLAIN (ANALYZE, BUFFERS)` of the prepared \
         statements from `pg_tviews_statements(...)`, executed with representative keys after \
         changing the source rows in the same transaction (then rolled back); plans in \
         [profile.md](profile.md). The rows after them follow one UPDATE of 1000 prices and \
         its refresh (`pg_tviews_flush()` in the same transaction, rolled back), timed from the \
         client, and the statements auto_explain logged meanwhile (every nested statement over \
         5 ms; a statement's time includes the statements it runs: tv_product's apply includes \
         the capture on tv_product), once in a new session and once in a session that ran \
         single-row price updates first: a capture statement has no parameters, so PostgreSQL \
         plans it for the transition tables of its first call; pg_tviews keeps one such plan \
         per size class (1 row, up to 4, 16, 64, ...) so that a plan made for one row does not \
         serve a thousand.\n\n| statement | keys | planning | execution |\n|---|---|---|---|\n",
    );
    for p in &results.profile {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            p.statement,
            p.keys,
            match (p.planning_ms, p.execution_ms) {
                (Some(ms), _) => duration(ms / 1e3),
                // auto_explain and the client's clock time execution only.
                (None, Some(_)) => "–".to_owned(),
                (None, None) => "failed".to_owned(),
            },
            p.execution_ms
                .map_or_else(|| "failed".to_owned(), |ms| duration(ms / 1e3))
        );
    }
    out.push('\n');
}

/// `profile.md`: the full plans.
pub fn render_profile_plans(results: &Results, plans: &[(String, String)]) -> String {
    let mut out = format!(
        "# pg_tviews refresh statements: plans ({} scale, {})\n\n",
        results.meta.scale, results.meta.date
    );
    for (title, plan) in plans {
        let _ = writeln!(out, "## {title}\n\n```\n{plan}\n```\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_fixed_report() {
        insta::assert_snapshot!(render(&crate::results::fixture()));
    }

    #[test]
    fn numbers_keep_three_significant_digits() {
        assert_eq!(duration(0.000412), "412 µs");
        assert_eq!(duration(0.00321), "3.21 ms");
        assert_eq!(duration(1.25), "1.25 s");
        assert_eq!(duration(125.4), "125 s");
        assert_eq!(sig3(0.01234), "0.0123");
        assert_eq!(sig3(0.5), "0.500");
        assert_eq!(times(Some(12.345)), "12.3×");
        assert_eq!(times(None), "–");
        assert_eq!(bytes(2048.0), "2.00 KiB");
    }
}
