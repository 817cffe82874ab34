//! The console's state and its one way of changing: `update(&mut App, Action)`. No I/O, no clock:
//! time comes from the snapshots' server clock and from `Tick` actions, so every behaviour here is
//! a plain unit test.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::snapshot::{Snapshot, TviewStats};

/// How often the event loop sends `Tick`; staleness is counted in these.
pub const HEARTBEAT: Duration = Duration::from_millis(250);
/// The steps `+`/`-` move the poll interval through.
pub const INTERVALS: [Duration; 8] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
];
/// Samples kept per TVIEW for its sparkline: two minutes at the default interval.
pub const HISTORY_LEN: usize = 120;
/// A poll is "stale" after this many intervals without a snapshot (a lock wait, a dead network).
const STALE_AFTER_INTERVALS: u32 = 3;

/// What the caller (the CLI) decides before the console starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Shown in the header, e.g. `localhost:5432/app` or `replay: file.jsonl`.
    pub server: String,
    pub interval: Duration,
    /// No colours (the CLI sets this from `NO_COLOR` or `--no-color`; `run` also honours `NO_COLOR`).
    pub no_color: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: String::new(),
            interval: Duration::from_secs(1),
            no_color: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Quit,
    /// Toggles the help overlay.
    Help,
    Pause,
    FasterInterval,
    SlowerInterval,
    SelectNext,
    SelectPrev,
    /// Opens the detail pane of the selected TVIEW, or closes it when open.
    OpenSelected,
    CycleSort,
    StartFilter,
    FilterInput(char),
    FilterBackspace,
    FilterDone,
    /// The heartbeat: nothing else happened for `HEARTBEAT`.
    Tick,
    NewSnapshot(Snapshot),
    SourceError(String),
    /// The terminal changed size; ratatui re-lays out on the next draw, so no state changes.
    Resize,
}

/// Which keys mean what, decided by what is on screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Normal,
    Filter,
    Help,
    Detail,
}

/// A derived value over the last interval.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Delta {
    /// First tick, a TVIEW seen for the first time, or nothing to divide by.
    #[default]
    NotAvailable,
    /// A counter went down: statistics were reset or the server restarted.
    Reset,
    Value(f64),
}

impl Delta {
    fn sort_value(self) -> f64 {
        match self {
            Delta::Value(v) => v,
            Delta::NotAvailable | Delta::Reset => f64::NEG_INFINITY,
        }
    }
}

/// One line of the TVIEW table.
#[derive(Debug, Clone, PartialEq)]
pub struct TviewRow {
    pub name: String,
    pub rows: u64,
    pub refreshes_per_s: Delta,
    pub keys_per_s: Delta,
    pub written_per_s: Delta,
    pub skipped_per_s: Delta,
    /// Mean refresh time over the interval, in milliseconds.
    pub mean_ms: Delta,
    pub errors: u64,
    pub lock_waits: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    Name,
    #[default]
    Keys,
    Refreshes,
    Written,
    MeanTime,
}

impl SortKey {
    pub fn next(self) -> Self {
        match self {
            SortKey::Name => SortKey::Keys,
            SortKey::Keys => SortKey::Refreshes,
            SortKey::Refreshes => SortKey::Written,
            SortKey::Written => SortKey::MeanTime,
            SortKey::MeanTime => SortKey::Name,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Keys => "keys/s",
            SortKey::Refreshes => "refr/s",
            SortKey::Written => "wrote/s",
            SortKey::MeanTime => "mean ms",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct App {
    pub config: Config,
    pub mode: Mode,
    pub paused: bool,
    pub should_quit: bool,
    pub last_error: Option<String>,
    /// The latest snapshot; the previous one only lives long enough to compute `rows`.
    pub snapshot: Option<Snapshot>,
    pub rows: Vec<TviewRow>,
    pub cache_hit_ratio: Delta,
    pub sort: SortKey,
    pub filter: String,
    /// Kept by name so that re-sorting and new snapshots do not move the cursor to another TVIEW.
    pub selected: Option<String>,
    /// Keys/s per TVIEW, oldest first, for the sparkline.
    pub history: BTreeMap<String, VecDeque<u64>>,
    ticks_since_snapshot: u32,
}

impl App {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// The rows the table shows, filtered and sorted.
    pub fn visible_rows(&self) -> Vec<&TviewRow> {
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<&TviewRow> = self
            .rows
            .iter()
            .filter(|row| row.name.to_lowercase().contains(&needle))
            .collect();
        let key = |row: &TviewRow| match self.sort {
            SortKey::Name => 0.0,
            SortKey::Keys => row.keys_per_s.sort_value(),
            SortKey::Refreshes => row.refreshes_per_s.sort_value(),
            SortKey::Written => row.written_per_s.sort_value(),
            SortKey::MeanTime => row.mean_ms.sort_value(),
        };
        // Busiest first; the name breaks ties so that the order is stable between ticks.
        rows.sort_by(|a, b| key(b).total_cmp(&key(a)).then_with(|| a.name.cmp(&b.name)));
        rows
    }

    /// Position of the selection among `visible`; the first row when the selection is hidden.
    pub fn selected_index(&self, visible: &[&TviewRow]) -> Option<usize> {
        if visible.is_empty() {
            return None;
        }
        let found = self
            .selected
            .as_ref()
            .and_then(|name| visible.iter().position(|row| &row.name == name));
        Some(found.unwrap_or(0))
    }

    pub fn selected_row(&self) -> Option<&TviewRow> {
        let visible = self.visible_rows();
        self.selected_index(&visible).map(|index| visible[index])
    }

    /// True when polls have stopped arriving although nothing is paused.
    pub fn is_stale(&self) -> bool {
        !self.paused
            && self.snapshot.is_some()
            && HEARTBEAT * self.ticks_since_snapshot >= self.config.interval * STALE_AFTER_INTERVALS
    }

    fn move_selection(&mut self, step: isize) {
        let visible = self.visible_rows();
        let Some(current) = self.selected_index(&visible) else {
            return;
        };
        let target = current.saturating_add_signed(step).min(visible.len() - 1);
        self.selected = Some(visible[target].name.clone());
    }

    fn accept_snapshot(&mut self, snap: Snapshot) {
        self.rows = derive_rows(self.snapshot.as_ref(), &snap);
        self.cache_hit_ratio = hit_ratio(self.snapshot.as_ref(), &snap);
        for row in &self.rows {
            if let Delta::Value(rate) = row.keys_per_s {
                let samples = self.history.entry(row.name.clone()).or_default();
                if samples.len() == HISTORY_LEN {
                    samples.pop_front();
                }
                samples.push_back(rate.round() as u64);
            }
        }
        // Dropped TVIEWs take their history with them.
        self.history
            .retain(|name, _| snap.tviews.iter().any(|t| &t.name == name));
        self.snapshot = Some(snap);
        self.last_error = None;
        self.ticks_since_snapshot = 0;
    }
}

pub fn update(app: &mut App, action: Action) {
    match action {
        Action::Quit => app.should_quit = true,
        Action::Help => {
            app.mode = if app.mode == Mode::Help {
                Mode::Normal
            } else {
                Mode::Help
            }
        }
        Action::Pause => app.paused = !app.paused,
        Action::FasterInterval => {
            if let Some(step) = INTERVALS.iter().rev().find(|s| **s < app.config.interval) {
                app.config.interval = *step;
            }
        }
        Action::SlowerInterval => {
            if let Some(step) = INTERVALS.iter().find(|s| **s > app.config.interval) {
                app.config.interval = *step;
            }
        }
        Action::SelectNext => app.move_selection(1),
        Action::SelectPrev => app.move_selection(-1),
        Action::OpenSelected => match app.mode {
            Mode::Detail => app.mode = Mode::Normal,
            _ if app.selected_row().is_some() => app.mode = Mode::Detail,
            _ => {}
        },
        Action::CycleSort => app.sort = app.sort.next(),
        Action::StartFilter => app.mode = Mode::Filter,
        Action::FilterInput(c) => app.filter.push(c),
        Action::FilterBackspace => {
            app.filter.pop();
        }
        Action::FilterDone => app.mode = Mode::Normal,
        Action::Tick => {
            if !app.paused {
                app.ticks_since_snapshot = app.ticks_since_snapshot.saturating_add(1);
            }
        }
        // A poll already in flight when the user paused must not change the frozen screen.
        Action::NewSnapshot(_) if app.paused => {}
        Action::NewSnapshot(snap) => app.accept_snapshot(snap),
        Action::SourceError(message) => app.last_error = Some(message),
        Action::Resize => {}
    }
}

/// Seconds of server clock between two snapshots whose counters are comparable.
fn comparable_interval(prev: Option<&Snapshot>, cur: &Snapshot) -> Result<f64, Delta> {
    let prev = prev.ok_or(Delta::NotAvailable)?;
    if prev.stats_since != cur.stats_since {
        return Err(Delta::Reset);
    }
    let secs = (cur.server_time - prev.server_time) / 1e6;
    // A server clock that did not move (the same snapshot twice) gives nothing to divide by.
    if secs > 0.0 {
        Ok(secs)
    } else {
        Err(Delta::NotAvailable)
    }
}

fn per_second(prev: u64, cur: u64, secs: f64) -> Delta {
    match cur.checked_sub(prev) {
        Some(delta) => Delta::Value(delta as f64 / secs),
        None => Delta::Reset,
    }
}

fn derive_rows(prev: Option<&Snapshot>, cur: &Snapshot) -> Vec<TviewRow> {
    let interval = comparable_interval(prev, cur);
    cur.tviews
        .iter()
        .map(|now| {
            let before = prev.and_then(|p| p.tviews.iter().find(|t| t.name == now.name));
            let rate = |counter: fn(&TviewStats) -> u64| match (interval, before) {
                (Err(delta), _) => delta,
                (Ok(_), None) => Delta::NotAvailable,
                (Ok(secs), Some(before)) => per_second(counter(before), counter(now), secs),
            };
            TviewRow {
                name: now.name.clone(),
                rows: now.rows,
                refreshes_per_s: rate(|t| t.refreshes),
                keys_per_s: rate(|t| t.keys),
                written_per_s: rate(|t| t.rows_written),
                skipped_per_s: rate(|t| t.rows_skipped),
                mean_ms: mean_refresh_ms(interval, before, now),
                errors: now.errors,
                lock_waits: now.lock_waits,
            }
        })
        .collect()
}

fn mean_refresh_ms(
    interval: Result<f64, Delta>,
    before: Option<&TviewStats>,
    now: &TviewStats,
) -> Delta {
    let before = match (interval, before) {
        (Err(delta), _) => return delta,
        (Ok(_), None) => return Delta::NotAvailable,
        (Ok(_), Some(before)) => before,
    };
    let time = now.refresh_time_ms - before.refresh_time_ms;
    match now.refreshes.checked_sub(before.refreshes) {
        None => Delta::Reset,
        _ if time < 0.0 => Delta::Reset,
        Some(0) => Delta::NotAvailable,
        Some(refreshes) => Delta::Value(time / refreshes as f64),
    }
}

/// Δhits / Δ(hits + misses) over the interval, as a fraction.
fn hit_ratio(prev: Option<&Snapshot>, cur: &Snapshot) -> Delta {
    if let Err(delta) = comparable_interval(prev, cur) {
        return delta;
    }
    let Some(prev) = prev else {
        return Delta::NotAvailable;
    };
    match (
        cur.cache.hits.checked_sub(prev.cache.hits),
        cur.cache.misses.checked_sub(prev.cache.misses),
    ) {
        (Some(0), Some(0)) => Delta::NotAvailable,
        (Some(hits), Some(misses)) => Delta::Value(hits as f64 / (hits + misses) as f64),
        _ => Delta::Reset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::{CacheStats, SUPPORTED_SCHEMA_VERSION};

    fn tview(name: &str, refreshes: u64, keys: u64, time_ms: f64) -> TviewStats {
        TviewStats {
            name: name.into(),
            rows: 100,
            refreshes,
            keys,
            rows_written: keys,
            rows_skipped: 0,
            refresh_time_ms: time_ms,
            cascades: 0,
            errors: 0,
            lock_waits: 0,
        }
    }

    fn snap(seconds: f64, stats_since: f64, tviews: Vec<TviewStats>) -> Snapshot {
        Snapshot {
            schema_version: SUPPORTED_SCHEMA_VERSION,
            server_time: seconds * 1e6,
            stats_since,
            tviews,
            edges: vec![],
            queues: vec![],
            cache: CacheStats::default(),
            prepared: vec![],
        }
    }

    fn app_with(snapshots: Vec<Snapshot>) -> App {
        let mut app = App::new(Config::default());
        for s in snapshots {
            update(&mut app, Action::NewSnapshot(s));
        }
        app
    }

    #[test]
    fn first_tick_is_not_available() {
        let app = app_with(vec![snap(10.0, 0.0, vec![tview("a", 5, 50, 10.0)])]);
        assert_eq!(app.rows[0].keys_per_s, Delta::NotAvailable);
        assert_eq!(app.rows[0].mean_ms, Delta::NotAvailable);
        assert_eq!(app.cache_hit_ratio, Delta::NotAvailable);
    }

    #[test]
    fn rates_divide_by_the_server_clock() {
        let app = app_with(vec![
            snap(10.0, 0.0, vec![tview("a", 5, 50, 10.0)]),
            snap(12.0, 0.0, vec![tview("a", 9, 70, 30.0)]),
        ]);
        let row = &app.rows[0];
        assert_eq!(row.refreshes_per_s, Delta::Value(2.0));
        assert_eq!(row.keys_per_s, Delta::Value(10.0));
        assert_eq!(row.mean_ms, Delta::Value(5.0));
        assert_eq!(app.history["a"], [10]);
    }

    #[test]
    fn a_new_stats_since_is_a_reset_even_when_counters_grew() {
        let app = app_with(vec![
            snap(10.0, 0.0, vec![tview("a", 5, 50, 10.0)]),
            snap(12.0, 11e6, vec![tview("a", 9, 70, 30.0)]),
        ]);
        assert_eq!(app.rows[0].keys_per_s, Delta::Reset);
        assert_eq!(app.rows[0].mean_ms, Delta::Reset);
    }

    #[test]
    fn a_counter_going_down_is_a_reset_never_a_negative_rate() {
        let app = app_with(vec![
            snap(
                10.0,
                0.0,
                vec![tview("a", 5, 50, 10.0), tview("b", 1, 1, 1.0)],
            ),
            snap(
                12.0,
                0.0,
                vec![tview("a", 1, 3, 1.0), tview("b", 2, 2, 2.0)],
            ),
        ]);
        let a = app.rows.iter().find(|r| r.name == "a").expect("row a");
        assert_eq!(a.keys_per_s, Delta::Reset);
        assert_eq!(a.mean_ms, Delta::Reset);
        assert!(!app.history.contains_key("a"));
        assert_eq!(app.history["b"], [1]);
    }

    #[test]
    fn hit_ratio_uses_deltas() {
        let mut first = snap(10.0, 0.0, vec![]);
        first.cache.hits = 90;
        first.cache.misses = 10;
        let mut second = snap(11.0, 0.0, vec![]);
        second.cache.hits = 93;
        second.cache.misses = 11;
        let app = app_with(vec![first, second]);
        assert_eq!(app.cache_hit_ratio, Delta::Value(0.75));
    }

    #[test]
    fn selection_stays_in_bounds_and_follows_the_name() {
        let mut app = app_with(vec![snap(
            1.0,
            0.0,
            vec![tview("a", 0, 0, 0.0), tview("b", 0, 0, 0.0)],
        )]);
        update(&mut app, Action::SelectPrev);
        assert_eq!(app.selected.as_deref(), Some("a"));
        for _ in 0..5 {
            update(&mut app, Action::SelectNext);
        }
        assert_eq!(app.selected.as_deref(), Some("b"));
        // b becomes the busier one and moves to the top; the cursor goes with it.
        update(
            &mut app,
            Action::NewSnapshot(snap(
                2.0,
                0.0,
                vec![tview("a", 0, 0, 0.0), tview("b", 1, 9, 1.0)],
            )),
        );
        let visible = app.visible_rows();
        assert_eq!(visible[0].name, "b");
        assert_eq!(app.selected_index(&visible), Some(0));
    }

    #[test]
    fn selection_on_an_empty_table_is_a_no_op() {
        let mut app = App::new(Config::default());
        update(&mut app, Action::SelectNext);
        update(&mut app, Action::OpenSelected);
        assert_eq!(app.selected, None);
        assert_eq!(app.mode, Mode::Normal);
    }

    #[test]
    fn filter_is_a_case_insensitive_substring() {
        let mut app = app_with(vec![snap(
            1.0,
            0.0,
            vec![
                tview("public.orders", 0, 0, 0.0),
                tview("public.users", 0, 0, 0.0),
            ],
        )]);
        update(&mut app, Action::StartFilter);
        assert_eq!(app.mode, Mode::Filter);
        for c in "USx".chars() {
            update(&mut app, Action::FilterInput(c));
        }
        assert!(app.visible_rows().is_empty());
        update(&mut app, Action::FilterBackspace);
        update(&mut app, Action::FilterDone);
        let names: Vec<_> = app.visible_rows().iter().map(|r| r.name.clone()).collect();
        assert_eq!(names, ["public.users"]);
        assert_eq!(app.mode, Mode::Normal);
    }

    #[test]
    fn pause_freezes_the_screen_and_the_staleness_clock() {
        let mut app = app_with(vec![snap(1.0, 0.0, vec![tview("a", 0, 0, 0.0)])]);
        update(&mut app, Action::Pause);
        update(
            &mut app,
            Action::NewSnapshot(snap(2.0, 0.0, vec![tview("a", 1, 1, 1.0)])),
        );
        assert_eq!(app.snapshot.as_ref().map(|s| s.server_time), Some(1e6));
        for _ in 0..100 {
            update(&mut app, Action::Tick);
        }
        assert!(!app.is_stale());
        update(&mut app, Action::Pause);
        for _ in 0..12 {
            update(&mut app, Action::Tick);
        }
        assert!(
            app.is_stale(),
            "12 heartbeats of 250 ms are 3 one-second intervals"
        );
    }

    #[test]
    fn interval_moves_along_the_ladder_and_stops_at_its_ends() {
        let mut app = App::new(Config {
            interval: Duration::from_secs(3),
            ..Config::default()
        });
        update(&mut app, Action::FasterInterval);
        assert_eq!(app.config.interval, Duration::from_secs(2));
        update(&mut app, Action::SlowerInterval);
        update(&mut app, Action::SlowerInterval);
        assert_eq!(app.config.interval, Duration::from_secs(10));
        for _ in 0..10 {
            update(&mut app, Action::FasterInterval);
        }
        assert_eq!(app.config.interval, INTERVALS[0]);
    }

    #[test]
    fn errors_stay_until_the_next_snapshot() {
        let mut app = App::new(Config::default());
        update(&mut app, Action::SourceError("connection lost".into()));
        assert_eq!(app.last_error.as_deref(), Some("connection lost"));
        update(&mut app, Action::NewSnapshot(snap(1.0, 0.0, vec![])));
        assert_eq!(app.last_error, None);
    }
}
