//! Counters in, rates out: everything the console derives from two consecutive snapshots.
//!
//! The rules (pgcenter's, STYLE.md item 9):
//!
//! - a rate is Δcounter / Δ`server_time`, both from the server, so a slow network or a console
//!   that was suspended does not distort it;
//! - the first snapshot, a TVIEW seen for the first time, or a server clock that did not move
//!   forward gives [`Delta::NotAvailable`] (`n/a`): there is nothing to compare with;
//! - a new `stats_since` (`pg_tviews_stats_reset()`, or a server restart, which recreates the
//!   shared memory) or any counter going down gives [`Delta::Reset`]: shown as `reset`, never as a
//!   negative rate and never as the raw total since the reset;
//! - ratios (plan-cache hits, rows skipped) are ratios of deltas over the interval, not since
//!   boot, and `n/a` when nothing happened in the interval.

use crate::snapshot::{Snapshot, SourceStats, TviewStats};

/// A value derived over the last interval.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Delta {
    /// First snapshot, a TVIEW seen for the first time, or nothing to divide by.
    #[default]
    NotAvailable,
    /// The counters restarted between the two snapshots.
    Reset,
    Value(f64),
}

impl Delta {
    pub fn value(self) -> Option<f64> {
        match self {
            Delta::Value(v) => Some(v),
            Delta::NotAvailable | Delta::Reset => None,
        }
    }

    /// Sorting puts values first, biggest first; then resets, then `n/a`.
    pub fn sort_key(self) -> f64 {
        match self {
            Delta::Value(v) => v,
            Delta::Reset => -1.0,
            Delta::NotAvailable => -2.0,
        }
    }

    /// True when there was activity in the interval.
    pub fn is_positive(self) -> bool {
        self.value().is_some_and(|v| v > 0.0)
    }
}

/// Seconds of server clock between two snapshots whose counters can be subtracted, or why they
/// cannot.
pub fn comparable_interval(prev: Option<&Snapshot>, cur: &Snapshot) -> Result<f64, Delta> {
    let prev = prev.ok_or(Delta::NotAvailable)?;
    if prev.stats_since != cur.stats_since {
        return Err(Delta::Reset);
    }
    let secs = (cur.server_time - prev.server_time) / 1e6;
    // The same document twice, or a server clock set back: nothing honest to divide by.
    if secs > 0.0 {
        Ok(secs)
    } else {
        Err(Delta::NotAvailable)
    }
}

/// Δ / seconds; a counter that went down is a reset.
pub fn per_second(prev: u64, cur: u64, secs: f64) -> Delta {
    match cur.checked_sub(prev) {
        Some(delta) => Delta::Value(delta as f64 / secs),
        None => Delta::Reset,
    }
}

/// Δpart / Δwhole of two pairs of counters; `n/a` when the whole did not move.
pub fn ratio_of_deltas(part: (u64, u64), whole: (u64, u64)) -> Delta {
    match (part.1.checked_sub(part.0), whole.1.checked_sub(whole.0)) {
        (Some(_), Some(0)) => Delta::NotAvailable,
        (Some(p), Some(w)) if p <= w => Delta::Value(p as f64 / w as f64),
        _ => Delta::Reset,
    }
}

/// One TVIEW over the last interval.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TviewRates {
    pub name: String,
    /// Estimated rows now (a gauge).
    pub rows: u64,
    pub depth: u32,
    pub refreshes_per_s: Delta,
    pub keys_per_s: Delta,
    pub written_per_s: Delta,
    pub skipped_per_s: Delta,
    /// Rows skipped / rows recomputed (written + skipped) in the interval.
    pub skipped_share: Delta,
    /// Mean time of the refreshes in the interval, milliseconds.
    pub mean_ms: Delta,
    /// Refreshes that waited for a value lock, per second.
    pub lock_waits_per_s: Delta,
    /// Failed refreshes in the interval (a count, not a rate: any is worth seeing).
    pub new_errors: Delta,
    /// Failed refreshes since `stats_since`.
    pub errors: u64,
}

impl TviewRates {
    /// Refreshed at least once in the interval.
    pub fn active(&self) -> bool {
        self.refreshes_per_s.is_positive()
    }
}

/// One source relation over the last interval.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SourceRates {
    pub name: String,
    /// Changed rows captured per second.
    pub rows_per_s: Delta,
    pub captures_per_s: Delta,
}

/// The plan cache over the last interval, and since `stats_since`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CacheRates {
    /// Δhits / Δ(hits + misses).
    pub hit_ratio: Delta,
    /// Δ(hits + misses) per second.
    pub lookups_per_s: Delta,
    pub invalidations_per_s: Delta,
    /// hits / (hits + misses) since `stats_since`; `None` before the first lookup.
    pub hit_ratio_since_reset: Option<f64>,
}

/// Sums over every TVIEW.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Totals {
    pub refreshes_per_s: Delta,
    pub keys_per_s: Delta,
    pub written_per_s: Delta,
    pub skipped_per_s: Delta,
    pub new_errors: Delta,
}

/// Everything derived from (previous, current).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Derived {
    pub tviews: Vec<TviewRates>,
    pub sources: Vec<SourceRates>,
    pub cache: CacheRates,
    pub totals: Totals,
    /// The interval in seconds, when the counters were comparable.
    pub interval_secs: Option<f64>,
    /// The counters restarted since the previous snapshot.
    pub reset: bool,
}

pub fn derive(prev: Option<&Snapshot>, cur: &Snapshot) -> Derived {
    let interval = comparable_interval(prev, cur);
    let tviews: Vec<TviewRates> = cur
        .tviews
        .iter()
        .map(|now| tview_rates(interval, prev.and_then(|p| p.tview(&now.name)), now))
        .collect();
    let sources = cur
        .sources
        .iter()
        .map(|now| source_rates(interval, prev.and_then(|p| p.source(&now.name)), now))
        .collect();
    let totals = Totals {
        refreshes_per_s: sum(interval, tviews.iter().map(|t| t.refreshes_per_s)),
        keys_per_s: sum(interval, tviews.iter().map(|t| t.keys_per_s)),
        written_per_s: sum(interval, tviews.iter().map(|t| t.written_per_s)),
        skipped_per_s: sum(interval, tviews.iter().map(|t| t.skipped_per_s)),
        new_errors: sum(interval, tviews.iter().map(|t| t.new_errors)),
    };
    Derived {
        cache: cache_rates(interval, prev, cur),
        tviews,
        sources,
        totals,
        interval_secs: interval.ok(),
        reset: interval == Err(Delta::Reset),
    }
}

/// Values add up; a reset anywhere makes the sum a reset (a partial sum would be a lie).
fn sum(interval: Result<f64, Delta>, deltas: impl Iterator<Item = Delta>) -> Delta {
    if let Err(delta) = interval {
        return delta;
    }
    let mut total = 0.0;
    for delta in deltas {
        match delta {
            Delta::Value(v) => total += v,
            Delta::Reset => return Delta::Reset,
            // A TVIEW created in the interval: nothing to add yet.
            Delta::NotAvailable => {}
        }
    }
    Delta::Value(total)
}

fn tview_rates(
    interval: Result<f64, Delta>,
    before: Option<&TviewStats>,
    now: &TviewStats,
) -> TviewRates {
    let compared = match (interval, before) {
        (Err(delta), _) => Err(delta),
        (Ok(_), None) => Err(Delta::NotAvailable),
        (Ok(secs), Some(before)) => Ok((secs, before)),
    };
    let rate = |counter: fn(&TviewStats) -> u64| match compared {
        Err(delta) => delta,
        Ok((secs, before)) => per_second(counter(before), counter(now), secs),
    };
    let (skipped_share, mean_ms, new_errors) = match compared {
        Err(delta) => (delta, delta, delta),
        Ok((_, before)) => (
            ratio_of_deltas(
                (before.rows_skipped, now.rows_skipped),
                (
                    before.rows_written + before.rows_skipped,
                    now.rows_written + now.rows_skipped,
                ),
            ),
            mean_refresh_ms(before, now),
            match now.errors.checked_sub(before.errors) {
                Some(n) => Delta::Value(n as f64),
                None => Delta::Reset,
            },
        ),
    };
    TviewRates {
        name: now.name.clone(),
        rows: now.rows,
        depth: now.depth,
        refreshes_per_s: rate(|t| t.refreshes),
        keys_per_s: rate(|t| t.keys),
        written_per_s: rate(|t| t.rows_written),
        skipped_per_s: rate(|t| t.rows_skipped),
        skipped_share,
        mean_ms,
        lock_waits_per_s: rate(|t| t.lock_waits),
        new_errors,
        errors: now.errors,
    }
}

fn mean_refresh_ms(before: &TviewStats, now: &TviewStats) -> Delta {
    let time = now.refresh_time_ms - before.refresh_time_ms;
    match now.refreshes.checked_sub(before.refreshes) {
        None => Delta::Reset,
        _ if time < 0.0 => Delta::Reset,
        Some(0) => Delta::NotAvailable,
        Some(refreshes) => Delta::Value(time / refreshes as f64),
    }
}

fn source_rates(
    interval: Result<f64, Delta>,
    before: Option<&SourceStats>,
    now: &SourceStats,
) -> SourceRates {
    let rate = |counter: fn(&SourceStats) -> u64| match (interval, before) {
        (Err(delta), _) => delta,
        (Ok(_), None) => Delta::NotAvailable,
        (Ok(secs), Some(before)) => per_second(counter(before), counter(now), secs),
    };
    SourceRates {
        name: now.name.clone(),
        rows_per_s: rate(|s| s.rows_captured),
        captures_per_s: rate(|s| s.captures),
    }
}

fn cache_rates(
    interval: Result<f64, Delta>,
    prev: Option<&Snapshot>,
    cur: &Snapshot,
) -> CacheRates {
    let lookups = |s: &Snapshot| s.cache.hits + s.cache.misses;
    let since_reset = (lookups(cur) > 0).then(|| cur.cache.hits as f64 / lookups(cur) as f64);
    let (secs, prev) = match (interval, prev) {
        (Ok(secs), Some(prev)) => (secs, prev),
        _ => {
            let delta = interval.err().unwrap_or(Delta::NotAvailable);
            return CacheRates {
                hit_ratio: delta,
                lookups_per_s: delta,
                invalidations_per_s: delta,
                hit_ratio_since_reset: since_reset,
            };
        }
    };
    CacheRates {
        hit_ratio: ratio_of_deltas(
            (prev.cache.hits, cur.cache.hits),
            (lookups(prev), lookups(cur)),
        ),
        lookups_per_s: per_second(lookups(prev), lookups(cur), secs),
        invalidations_per_s: per_second(prev.cache.invalidations, cur.cache.invalidations, secs),
        hit_ratio_since_reset: since_reset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fixtures::{snap, tview};

    #[test]
    fn the_first_snapshot_has_nothing_to_compare_with() {
        let d = derive(None, &snap(10.0, 0.0, vec![tview("a", 5, 50, 10.0)]));
        assert_eq!(d.tviews[0].keys_per_s, Delta::NotAvailable);
        assert_eq!(d.tviews[0].mean_ms, Delta::NotAvailable);
        assert_eq!(d.cache.hit_ratio, Delta::NotAvailable);
        assert_eq!(d.totals.keys_per_s, Delta::NotAvailable);
        assert!(!d.reset && d.interval_secs.is_none());
    }

    #[test]
    fn rates_divide_deltas_by_the_server_clock() {
        let prev = snap(
            10.0,
            0.0,
            vec![tview("a", 5, 50, 10.0), tview("b", 0, 0, 0.0)],
        );
        let mut now = tview("a", 9, 70, 30.0);
        now.rows_skipped = 20;
        let cur = snap(12.0, 0.0, vec![now, tview("b", 1, 4, 3.0)]);
        let d = derive(Some(&prev), &cur);
        let a = &d.tviews[0];
        assert_eq!(a.refreshes_per_s, Delta::Value(2.0));
        assert_eq!(a.keys_per_s, Delta::Value(10.0));
        assert_eq!(a.written_per_s, Delta::Value(10.0));
        assert_eq!(a.skipped_per_s, Delta::Value(10.0));
        assert_eq!(a.skipped_share, Delta::Value(0.5));
        assert_eq!(a.mean_ms, Delta::Value(5.0));
        assert_eq!(a.new_errors, Delta::Value(0.0));
        assert!(a.active());
        assert_eq!(d.totals.keys_per_s, Delta::Value(12.0));
        assert_eq!(d.interval_secs, Some(2.0));
    }

    /// The console's own clock never enters: a snapshot that took long to arrive still gives
    /// the rate over the server's interval, whatever the poll interval was.
    #[test]
    fn only_server_time_counts() {
        let prev = snap(100.0, 0.0, vec![tview("a", 0, 0, 0.0)]);
        let cur = snap(100.5, 0.0, vec![tview("a", 1, 10, 1.0)]);
        assert_eq!(
            derive(Some(&prev), &cur).tviews[0].keys_per_s,
            Delta::Value(20.0)
        );
    }

    #[test]
    fn a_clock_that_did_not_move_forward_gives_no_rate() {
        let prev = snap(10.0, 0.0, vec![tview("a", 5, 50, 10.0)]);
        for later in [10.0, 9.0] {
            let cur = snap(later, 0.0, vec![tview("a", 6, 60, 11.0)]);
            let d = derive(Some(&prev), &cur);
            assert_eq!(d.tviews[0].keys_per_s, Delta::NotAvailable, "at {later}");
            assert!(!d.reset);
        }
    }

    #[test]
    fn a_new_stats_since_is_a_reset_even_when_counters_grew() {
        let prev = snap(10.0, 0.0, vec![tview("a", 5, 50, 10.0)]);
        let cur = snap(12.0, 11e6, vec![tview("a", 9, 70, 30.0)]);
        let d = derive(Some(&prev), &cur);
        assert_eq!(d.tviews[0].keys_per_s, Delta::Reset);
        assert_eq!(d.tviews[0].mean_ms, Delta::Reset);
        assert_eq!(d.totals.keys_per_s, Delta::Reset);
        assert_eq!(d.cache.hit_ratio, Delta::Reset);
        assert!(d.reset);
    }

    #[test]
    fn a_counter_going_down_is_a_reset_never_a_negative_rate() {
        let prev = snap(
            10.0,
            0.0,
            vec![tview("a", 5, 50, 10.0), tview("b", 1, 1, 1.0)],
        );
        let cur = snap(
            12.0,
            0.0,
            vec![tview("a", 1, 3, 1.0), tview("b", 2, 2, 2.0)],
        );
        let d = derive(Some(&prev), &cur);
        assert_eq!(d.tviews[0].keys_per_s, Delta::Reset);
        assert_eq!(d.tviews[0].mean_ms, Delta::Reset);
        assert_eq!(d.tviews[1].keys_per_s, Delta::Value(0.5));
        // One TVIEW's counters restarted (dropped and created again under the same name): the
        // total cannot be known.
        assert_eq!(d.totals.keys_per_s, Delta::Reset);
        assert!(!d.reset);
    }

    #[test]
    fn a_tview_seen_for_the_first_time_is_not_available_and_does_not_spoil_totals() {
        let prev = snap(10.0, 0.0, vec![tview("a", 0, 0, 0.0)]);
        let cur = snap(
            11.0,
            0.0,
            vec![tview("a", 1, 1, 1.0), tview("new", 1, 9, 1.0)],
        );
        let d = derive(Some(&prev), &cur);
        assert_eq!(d.tviews[1].keys_per_s, Delta::NotAvailable);
        assert_eq!(d.totals.keys_per_s, Delta::Value(1.0));
    }

    #[test]
    fn mean_time_needs_refreshes_in_the_interval() {
        let prev = snap(10.0, 0.0, vec![tview("a", 5, 50, 10.0)]);
        let cur = snap(11.0, 0.0, vec![tview("a", 5, 50, 10.0)]);
        let d = derive(Some(&prev), &cur);
        assert_eq!(d.tviews[0].mean_ms, Delta::NotAvailable);
        assert_eq!(d.tviews[0].refreshes_per_s, Delta::Value(0.0));
        assert_eq!(d.tviews[0].skipped_share, Delta::NotAvailable);
    }

    #[test]
    fn hit_ratio_is_over_the_interval_not_since_boot() {
        let mut prev = snap(10.0, 0.0, vec![]);
        prev.cache.hits = 90;
        prev.cache.misses = 10;
        let mut cur = snap(11.0, 0.0, vec![]);
        cur.cache.hits = 93;
        cur.cache.misses = 11;
        cur.cache.invalidations = 2;
        let c = derive(Some(&prev), &cur).cache;
        assert_eq!(c.hit_ratio, Delta::Value(0.75));
        assert_eq!(c.lookups_per_s, Delta::Value(4.0));
        assert_eq!(c.invalidations_per_s, Delta::Value(2.0));
        assert_eq!(c.hit_ratio_since_reset, Some(93.0 / 104.0));
        // No lookups in the interval: n/a, not 0% or 100%.
        let mut idle = cur.clone();
        idle.server_time += 1e6;
        assert_eq!(
            derive(Some(&cur), &idle).cache.hit_ratio,
            Delta::NotAvailable
        );
    }

    #[test]
    fn source_rates_follow_the_same_rules() {
        let mut prev = snap(10.0, 0.0, vec![]);
        prev.sources.push(SourceStats {
            name: "tb_user".into(),
            captures: 10,
            rows_captured: 100,
            ..SourceStats::default()
        });
        let mut cur = snap(12.0, 0.0, vec![]);
        cur.sources.push(SourceStats {
            name: "tb_user".into(),
            captures: 12,
            rows_captured: 150,
            ..SourceStats::default()
        });
        let d = derive(Some(&prev), &cur);
        assert_eq!(d.sources[0].rows_per_s, Delta::Value(25.0));
        assert_eq!(d.sources[0].captures_per_s, Delta::Value(1.0));
    }

    #[test]
    fn ratio_of_deltas_guards() {
        assert_eq!(ratio_of_deltas((1, 2), (10, 12)), Delta::Value(0.5));
        assert_eq!(ratio_of_deltas((1, 1), (10, 10)), Delta::NotAvailable);
        assert_eq!(ratio_of_deltas((5, 1), (10, 12)), Delta::Reset);
        assert_eq!(ratio_of_deltas((1, 5), (10, 11)), Delta::Reset);
    }
}
