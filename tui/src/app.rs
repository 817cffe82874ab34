//! The console's state and its one way of changing: `update(&mut App, Action)`. No I/O and no
//! clock: time comes from the snapshots' server clock and from `Tick` actions, so every
//! behaviour here is a plain unit test. What the state needs from the outside world (a TVIEW's
//! explain) it asks for by queueing a [`Request`], which the event loop carries out.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::graph::Graph;
use crate::rates::{self, Delta, Derived, TviewRates};
use crate::snapshot::{BackendQueue, EpochMicros, PreparedXact, Snapshot};

/// How often the event loop sends `Tick`; staleness and notices are counted in these.
pub const HEARTBEAT: Duration = Duration::from_millis(250);
/// The steps `+`/`-` move the poll interval through.
pub const INTERVALS: [Duration; 9] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(300),
];
/// Samples kept per TVIEW for the sparklines: ten minutes at one snapshot a second.
pub const HISTORY_LEN: usize = 600;
/// A poll is "stale" after this many intervals without a snapshot (a slow server, a dead
/// network that has not failed yet).
const STALE_AFTER_INTERVALS: u32 = 3;
/// How long a notice (a reset seen, a reconnection) stays in the status bar: 10 s of ticks.
const NOTICE_TICKS: u32 = 40;
/// Rows moved by PgUp/PgDn until the terminal's size is known.
pub const PAGE: usize = 10;

/// What the caller (the CLI) decides before the console starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Shown in the header, e.g. `/var/run/postgresql:5432/shop` or `replay demo.jsonl`.
    pub server: String,
    pub interval: Duration,
    /// No colours: highlighting by bold and reverse video only (`NO_COLOR`, `--no-color`).
    pub no_color: bool,
    /// Where `--record` writes, shown in the header.
    pub recording: Option<String>,
    /// Prepared transactions older than this are highlighted as old (the health check's
    /// default, `pg_tviews_health_check(prepared_warning => '5 minutes')`).
    pub prepared_warning: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: String::new(),
            interval: Duration::from_secs(1),
            no_color: false,
            recording: None,
            prepared_warning: Duration::from_secs(300),
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
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    /// In the graph: one layer towards the tables / towards the cascade.
    Left,
    Right,
    /// Enter: the explain of the selected TVIEW (closes it when open).
    Open,
    /// Esc: closes an overlay, or clears the filter.
    Close,
    ShowView(View),
    NextView,
    PrevView,
    NextSort,
    PrevSort,
    StartFilter,
    FilterInput(char),
    FilterBackspace,
    /// Enter in the filter prompt: keep it.
    FilterDone,
    /// Esc in the filter prompt: drop it.
    FilterCancel,
    /// In the explain overlay: with or without the refresh statements.
    ToggleVerbose,
    /// The heartbeat: nothing else happened for `HEARTBEAT`.
    Tick,
    NewSnapshot(Box<Snapshot>),
    /// The server is unreachable; the poller tries again in `retry_in`.
    Disconnected {
        message: String,
        attempt: u32,
        retry_in: Duration,
    },
    /// The server answered with an error, or sent a document this console cannot read.
    SourceFailed(String),
    /// A replay has no more snapshots.
    ReplayEnded(usize),
    ExplainLoaded {
        tview: String,
        verbose: bool,
        result: Result<String, String>,
    },
    /// The terminal's size (columns, rows), at start and whenever it changes: pages and the
    /// explain's scrolling are measured in it.
    Resize(u16, u16),
}

/// Which keys mean what, decided by what is on screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Normal,
    Filter,
    Help,
    Explain,
}

/// The main screens, chosen with `1`..`4` or Tab (pg_activity's and pgcenter's way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum View {
    /// Refresh activity per TVIEW; on a large terminal, every pane at once.
    #[default]
    Overview,
    Graph,
    /// Live queues of backends, and value-lock waits.
    Backends,
    Prepared,
}

impl View {
    pub const ALL: [View; 4] = [View::Overview, View::Graph, View::Backends, View::Prepared];

    pub fn title(self) -> &'static str {
        match self {
            View::Overview => "activity",
            View::Graph => "graph",
            View::Backends => "backends",
            View::Prepared => "prepared",
        }
    }

    fn step(self, step: isize) -> View {
        let index = View::ALL.iter().position(|v| *v == self).unwrap_or(0);
        View::ALL[(index as isize + step).rem_euclid(View::ALL.len() as isize) as usize]
    }
}

/// Something the state needs done outside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Explain { tview: String, verbose: bool },
}

/// The sort column of the activity table: numbers biggest first, names A to Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    Keys,
    Refreshes,
    Written,
    Skipped,
    MeanTime,
    Errors,
    Rows,
    Name,
}

impl SortKey {
    const ORDER: [SortKey; 8] = [
        SortKey::Keys,
        SortKey::Refreshes,
        SortKey::Written,
        SortKey::Skipped,
        SortKey::MeanTime,
        SortKey::Errors,
        SortKey::Rows,
        SortKey::Name,
    ];

    fn step(self, step: isize) -> SortKey {
        let index = SortKey::ORDER.iter().position(|k| *k == self).unwrap_or(0);
        let len = SortKey::ORDER.len() as isize;
        SortKey::ORDER[(index as isize + step).rem_euclid(len) as usize]
    }

    pub fn label(self) -> &'static str {
        match self {
            SortKey::Keys => "keys/s",
            SortKey::Refreshes => "refr/s",
            SortKey::Written => "wrote/s",
            SortKey::Skipped => "skip/s",
            SortKey::MeanTime => "mean ms",
            SortKey::Errors => "errors",
            SortKey::Rows => "rows",
            SortKey::Name => "name",
        }
    }
}

/// Is the server there?
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Link {
    #[default]
    Up,
    /// Lost; the last snapshot and the history stay on screen meanwhile.
    Reconnecting {
        message: String,
        attempt: u32,
        retry_in: Duration,
        /// `server_time` of the last snapshot before the loss.
        last_seen: Option<EpochMicros>,
    },
    /// The server answers with an error (tried again every interval).
    Failing(String),
    /// The replay is over; the last frame stays.
    Ended(usize),
}

/// One sample of a TVIEW's history; `None` where there is no honest value (a reset, a gap).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sample {
    /// The snapshot's `server_time`.
    pub at: EpochMicros,
    pub refreshes_per_s: Option<f64>,
    pub keys_per_s: Option<f64>,
    pub written_per_s: Option<f64>,
    pub skipped_per_s: Option<f64>,
    pub mean_ms: Option<f64>,
}

impl Sample {
    fn of(rates: &TviewRates, at: EpochMicros) -> Sample {
        Sample {
            at,
            refreshes_per_s: rates.refreshes_per_s.value(),
            keys_per_s: rates.keys_per_s.value(),
            written_per_s: rates.written_per_s.value(),
            skipped_per_s: rates.skipped_per_s.value(),
            mean_ms: rates.mean_ms.value(),
        }
    }
}

/// The explain overlay.
#[derive(Debug, Clone, PartialEq)]
pub struct Explain {
    pub tview: String,
    pub verbose: bool,
    pub body: ExplainBody,
    /// First line shown.
    pub scroll: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExplainBody {
    Loading,
    Text(String),
    Error(String),
}

/// Lines above the explain text in its overlay: the TVIEW's counters and a blank line.
pub const EXPLAIN_HEADER_LINES: usize = 5;

impl Explain {
    /// Lines in the overlay: the counters, then the text.
    pub fn line_count(&self) -> usize {
        EXPLAIN_HEADER_LINES
            + match &self.body {
                ExplainBody::Text(text) => text.lines().count(),
                ExplainBody::Loading => 1,
                ExplainBody::Error(error) => error.lines().count(),
            }
    }
}

/// The explain overlay covers the screen between the header's first line and the status bar;
/// its text gets that minus the borders.
pub fn explain_page(viewport: (u16, u16)) -> usize {
    usize::from(viewport.1.saturating_sub(4))
}

#[derive(Debug, Clone, Default)]
pub struct App {
    pub config: Config,
    pub mode: Mode,
    pub view: View,
    pub paused: bool,
    pub should_quit: bool,
    pub link: Link,
    /// A passing message for the status bar, and the ticks it has left.
    pub notice: Option<(String, u32)>,
    /// The latest snapshot, and what was derived from it and the one before.
    pub snapshot: Option<Snapshot>,
    pub derived: Derived,
    pub graph: Graph,
    /// Snapshots received.
    pub snapshots_seen: usize,
    pub sort: SortKey,
    pub filter: String,
    /// The selected TVIEW (or, in the graph, table), kept by name so that re-sorting and new
    /// snapshots do not move the cursor to another one.
    pub selected: Option<String>,
    /// Cursors of the backends and prepared lists (index in their display order).
    pub backend_cursor: usize,
    pub prepared_cursor: usize,
    /// Per TVIEW, oldest first.
    pub history: BTreeMap<String, VecDeque<Sample>>,
    /// The sums over every TVIEW, oldest first (`keys_per_s` etc. of the whole database).
    pub totals_history: VecDeque<Sample>,
    pub explain: Option<Explain>,
    /// The terminal's size, (0, 0) until known.
    pub viewport: (u16, u16),
    requests: Vec<Request>,
    ticks_since_snapshot: u32,
}

impl App {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// What the event loop has to do for the state; emptied by the call.
    pub fn take_requests(&mut self) -> Vec<Request> {
        std::mem::take(&mut self.requests)
    }

    fn matches_filter(&self, name: &str) -> bool {
        self.filter.is_empty() || name.to_lowercase().contains(&self.filter.to_lowercase())
    }

    /// Whether a graph node or list row passes the `/` filter.
    pub fn passes_filter(&self, name: &str) -> bool {
        self.matches_filter(name)
    }

    /// The activity table's rows, filtered and sorted; the name breaks ties so that the order
    /// is stable between snapshots.
    pub fn visible_rows(&self) -> Vec<&TviewRates> {
        let mut rows: Vec<&TviewRates> = self
            .derived
            .tviews
            .iter()
            .filter(|row| self.matches_filter(&row.name))
            .collect();
        let key = |row: &TviewRates| match self.sort {
            SortKey::Keys => row.keys_per_s.sort_key(),
            SortKey::Refreshes => row.refreshes_per_s.sort_key(),
            SortKey::Written => row.written_per_s.sort_key(),
            SortKey::Skipped => row.skipped_per_s.sort_key(),
            SortKey::MeanTime => row.mean_ms.sort_key(),
            SortKey::Errors => row.errors as f64,
            SortKey::Rows => row.rows as f64,
            SortKey::Name => 0.0,
        };
        rows.sort_by(|a, b| key(b).total_cmp(&key(a)).then_with(|| a.name.cmp(&b.name)));
        rows
    }

    /// Position of the selection among `visible`; the first row when the selection is hidden.
    pub fn selected_index(&self, visible: &[&TviewRates]) -> Option<usize> {
        if visible.is_empty() {
            return None;
        }
        let found = self
            .selected
            .as_ref()
            .and_then(|name| visible.iter().position(|row| &row.name == name));
        Some(found.unwrap_or(0))
    }

    /// The TVIEW the panes highlight: the selection if it is a TVIEW on screen, else the
    /// first row of the activity table.
    pub fn selected_tview(&self) -> Option<&str> {
        let is_tview = |name: &str| self.derived.tviews.iter().any(|t| t.name == name);
        match self.selected.as_deref() {
            Some(name) if is_tview(name) && self.matches_filter(name) => Some(name),
            _ => {
                let visible = self.visible_rows();
                self.selected_index(&visible)
                    .map(|index| visible[index].name.as_str())
            }
        }
    }

    /// The node the graph highlights: the selection when it is in the graph (a table can be
    /// selected there), else the selected TVIEW.
    pub fn selected_node(&self) -> Option<&str> {
        match self.selected.as_deref() {
            Some(name) if self.graph.position(name).is_some() => Some(name),
            _ => self.selected_tview(),
        }
    }

    /// Backends in display order: this database's first, the longest in their phase first
    /// (the one holding things up is on top, as in pg_activity).
    pub fn visible_backends(&self) -> Vec<&BackendQueue> {
        let Some(snap) = &self.snapshot else {
            return Vec::new();
        };
        let mut rows: Vec<&BackendQueue> = snap
            .queues
            .iter()
            .filter(|q| q.tview.is_empty() || self.matches_filter(&q.tview))
            .collect();
        rows.sort_by(|a, b| {
            let elsewhere =
                |q: &BackendQueue| q.database.as_deref() != Some(snap.database.as_str());
            elsewhere(a)
                .cmp(&elsewhere(b))
                .then_with(|| age_key(a.since).total_cmp(&age_key(b.since)))
                .then_with(|| a.pid.cmp(&b.pid))
        });
        rows
    }

    /// Prepared transactions, oldest first.
    pub fn visible_prepared(&self) -> Vec<&PreparedXact> {
        let Some(snap) = &self.snapshot else {
            return Vec::new();
        };
        let mut rows: Vec<&PreparedXact> = snap
            .prepared
            .iter()
            .filter(|p| {
                self.filter.is_empty()
                    || self.matches_filter(&p.gid)
                    || p.tviews.iter().any(|t| self.matches_filter(t))
            })
            .collect();
        rows.sort_by(|a, b| {
            a.prepared_at
                .total_cmp(&b.prepared_at)
                .then_with(|| a.gid.cmp(&b.gid))
        });
        rows
    }

    /// True when polls have stopped arriving although nothing is paused or known to be wrong.
    pub fn is_stale(&self) -> bool {
        !self.paused
            && self.link == Link::Up
            && self.snapshot.is_some()
            && HEARTBEAT * self.ticks_since_snapshot >= self.config.interval * STALE_AFTER_INTERVALS
    }

    /// Seconds without a snapshot, by heartbeats.
    pub fn seconds_since_snapshot(&self) -> u64 {
        (HEARTBEAT * self.ticks_since_snapshot).as_secs()
    }

    fn notice(&mut self, text: String) {
        self.notice = Some((text, NOTICE_TICKS));
    }

    fn move_selection(&mut self, step: isize) {
        match self.view {
            View::Overview => {
                let visible = self.visible_rows();
                let Some(current) = self.selected_index(&visible) else {
                    return;
                };
                let target = current.saturating_add_signed(step).min(visible.len() - 1);
                self.selected = Some(visible[target].name.clone());
            }
            View::Graph => {
                let Some(from) = self.graph_cursor() else {
                    return;
                };
                self.selected = self.graph.step_within_layer(&from, step).or(Some(from));
            }
            View::Backends => {
                let len = self.visible_backends().len();
                self.backend_cursor = step_cursor(self.backend_cursor, step, len);
            }
            View::Prepared => {
                let len = self.visible_prepared().len();
                self.prepared_cursor = step_cursor(self.prepared_cursor, step, len);
            }
        }
    }

    /// Where the graph cursor is: the selected node, else the first TVIEW of the first layer.
    fn graph_cursor(&self) -> Option<String> {
        self.selected_node()
            .filter(|name| self.graph.position(name).is_some())
            .map(str::to_string)
            .or_else(|| self.graph.layers.get(1).and_then(|l| l.first().cloned()))
    }

    fn move_layer(&mut self, step: isize) {
        if self.view != View::Graph {
            return;
        }
        if let Some(from) = self.graph_cursor() {
            self.selected = self.graph.step_layer(&from, step).or(Some(from));
        }
    }

    /// The TVIEW Enter explains in the current view.
    fn tview_to_open(&self) -> Option<String> {
        let is_tview = |name: &str| self.derived.tviews.iter().any(|t| t.name == name);
        let candidate = match self.view {
            View::Overview => self.selected_tview().map(str::to_string),
            View::Graph => self.selected_node().map(str::to_string),
            View::Backends => self
                .visible_backends()
                .get(self.backend_cursor)
                .map(|q| q.tview.clone()),
            View::Prepared => self
                .visible_prepared()
                .get(self.prepared_cursor)
                .and_then(|p| p.tviews.first().cloned()),
        };
        candidate.filter(|name| is_tview(name))
    }

    fn open_explain(&mut self, tview: String, verbose: bool) {
        self.requests.push(Request::Explain {
            tview: tview.clone(),
            verbose,
        });
        self.selected = Some(tview.clone());
        self.explain = Some(Explain {
            tview,
            verbose,
            body: ExplainBody::Loading,
            scroll: 0,
        });
        self.mode = Mode::Explain;
    }

    /// Scrolls by lines, never past the point where the last line is at the bottom.
    fn scroll_explain(&mut self, step: isize) {
        let page = explain_page(self.viewport);
        if let Some(explain) = &mut self.explain {
            let last = if page == 0 {
                explain.line_count().saturating_sub(1)
            } else {
                explain.line_count().saturating_sub(page)
            };
            explain.scroll = explain.scroll.saturating_add_signed(step).min(last);
        }
    }

    /// Rows moved by PgUp/PgDn: a screenful of the list, or [`PAGE`] before the size is known.
    fn page(&self) -> isize {
        let rows = match self.mode {
            Mode::Explain => explain_page(self.viewport),
            _ => usize::from(self.viewport.1.saturating_sub(12)),
        };
        if rows == 0 {
            PAGE as isize
        } else {
            rows as isize
        }
    }

    fn accept_snapshot(&mut self, snap: Snapshot) {
        let derived = rates::derive(self.snapshot.as_ref(), &snap);
        if let Link::Reconnecting { last_seen, .. } = &self.link {
            let gap = last_seen
                .map(|t| format!(" after {}", format_gap((snap.server_time - t) / 1e6)))
                .unwrap_or_default();
            let cause = if derived.reset {
                "; statistics restarted (a server restart resets them)"
            } else {
                ""
            };
            self.notice(format!("reconnected{gap}{cause}"));
        } else if derived.reset {
            self.notice(format!(
                "statistics reset at {}: rates start again from the next snapshot",
                crate::ui::format_clock(snap.stats_since)
            ));
        }
        if self.snapshot.is_some() {
            self.record_history(&derived, snap.server_time);
        }
        // Dropped TVIEWs take their history with them.
        self.history
            .retain(|name, _| snap.tviews.iter().any(|t| &t.name == name));
        self.graph = Graph::of(&snap);
        self.derived = derived;
        self.snapshot = Some(snap);
        self.snapshots_seen += 1;
        self.link = Link::Up;
        self.ticks_since_snapshot = 0;
        self.backend_cursor = self
            .backend_cursor
            .min(self.visible_backends().len().saturating_sub(1));
        self.prepared_cursor = self
            .prepared_cursor
            .min(self.visible_prepared().len().saturating_sub(1));
    }

    fn record_history(&mut self, derived: &Derived, at: EpochMicros) {
        fn push(samples: &mut VecDeque<Sample>, sample: Sample) {
            if samples.len() == HISTORY_LEN {
                samples.pop_front();
            }
            samples.push_back(sample);
        }
        for row in &derived.tviews {
            // A TVIEW's first appearance has no rate yet: its history starts at the next one.
            if row.keys_per_s == Delta::NotAvailable && !self.history.contains_key(&row.name) {
                continue;
            }
            push(
                self.history.entry(row.name.clone()).or_default(),
                Sample::of(row, at),
            );
        }
        let totals = &derived.totals;
        push(
            &mut self.totals_history,
            Sample {
                at,
                refreshes_per_s: totals.refreshes_per_s.value(),
                keys_per_s: totals.keys_per_s.value(),
                written_per_s: totals.written_per_s.value(),
                skipped_per_s: totals.skipped_per_s.value(),
                mean_ms: None,
            },
        );
    }
}

/// Sorting ages: oldest (smallest `since`) first; unknown last.
fn age_key(since: Option<EpochMicros>) -> f64 {
    since.unwrap_or(f64::INFINITY)
}

fn step_cursor(cursor: usize, step: isize, len: usize) -> usize {
    if len == 0 {
        0
    } else {
        cursor.saturating_add_signed(step).min(len - 1)
    }
}

/// `12s`, `3m05s`, `2h10m`.
pub fn format_gap(secs: f64) -> String {
    let secs = secs.max(0.0).round() as u64;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
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
        Action::Up
        | Action::Down
        | Action::PageUp
        | Action::PageDown
        | Action::Home
        | Action::End => {
            let step = match action {
                Action::Up => -1,
                Action::Down => 1,
                Action::PageUp => -app.page(),
                Action::PageDown => app.page(),
                Action::Home => isize::MIN / 2,
                _ => isize::MAX / 2,
            };
            if app.mode == Mode::Explain {
                app.scroll_explain(step);
            } else {
                app.move_selection(step);
            }
        }
        Action::Left => app.move_layer(-1),
        Action::Right => app.move_layer(1),
        Action::Open => match app.mode {
            Mode::Explain => {
                app.mode = Mode::Normal;
                app.explain = None;
            }
            _ => {
                if let Some(tview) = app.tview_to_open() {
                    app.open_explain(tview, false);
                }
            }
        },
        Action::Close => match app.mode {
            Mode::Explain | Mode::Help => {
                app.mode = Mode::Normal;
                app.explain = None;
            }
            Mode::Normal | Mode::Filter => {
                app.filter.clear();
                app.mode = Mode::Normal;
            }
        },
        Action::ShowView(view) => app.view = view,
        Action::NextView => app.view = app.view.step(1),
        Action::PrevView => app.view = app.view.step(-1),
        Action::NextSort => app.sort = app.sort.step(1),
        Action::PrevSort => app.sort = app.sort.step(-1),
        Action::StartFilter => app.mode = Mode::Filter,
        Action::FilterInput(c) => app.filter.push(c),
        Action::FilterBackspace => {
            app.filter.pop();
        }
        Action::FilterDone => app.mode = Mode::Normal,
        Action::FilterCancel => {
            app.filter.clear();
            app.mode = Mode::Normal;
        }
        Action::ToggleVerbose => {
            if let Some(explain) = &app.explain {
                let (tview, verbose) = (explain.tview.clone(), !explain.verbose);
                app.open_explain(tview, verbose);
            }
        }
        Action::Tick => {
            if !app.paused {
                app.ticks_since_snapshot = app.ticks_since_snapshot.saturating_add(1);
            }
            if let Some((_, left)) = &mut app.notice {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    app.notice = None;
                }
            }
        }
        // A poll already in flight when the user paused must not change the frozen screen.
        Action::NewSnapshot(_) if app.paused => {}
        Action::NewSnapshot(snap) => app.accept_snapshot(*snap),
        Action::Disconnected {
            message,
            attempt,
            retry_in,
        } => {
            let last_seen = match &app.link {
                Link::Reconnecting { last_seen, .. } => *last_seen,
                _ => app.snapshot.as_ref().map(|s| s.server_time),
            };
            app.link = Link::Reconnecting {
                message,
                attempt,
                retry_in,
                last_seen,
            };
        }
        Action::SourceFailed(message) => app.link = Link::Failing(message),
        Action::ReplayEnded(count) => app.link = Link::Ended(count),
        Action::ExplainLoaded {
            tview,
            verbose,
            result,
        } => {
            if let Some(explain) = &mut app.explain
                && explain.tview == tview
                && explain.verbose == verbose
            {
                explain.body = match result {
                    Ok(text) => ExplainBody::Text(text),
                    Err(error) => ExplainBody::Error(error),
                };
                explain.scroll = 0;
            }
        }
        Action::Resize(width, height) => app.viewport = (width, height),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Edge;

    use crate::fixtures::{snap, tview};

    fn new_snapshot(s: Snapshot) -> Action {
        Action::NewSnapshot(Box::new(s))
    }

    fn app_with(snapshots: Vec<Snapshot>) -> App {
        let mut app = App::new(Config::default());
        for s in snapshots {
            update(&mut app, new_snapshot(s));
        }
        app
    }

    #[test]
    fn history_records_rates_and_gaps_for_resets() {
        let app = app_with(vec![
            snap(10.0, 0.0, vec![tview("a", 5, 50, 10.0)]),
            snap(12.0, 0.0, vec![tview("a", 9, 70, 30.0)]),
            snap(14.0, 13e6, vec![tview("a", 1, 1, 1.0)]),
            snap(16.0, 13e6, vec![tview("a", 2, 5, 2.0)]),
        ]);
        let keys: Vec<Option<f64>> = app.history["a"].iter().map(|s| s.keys_per_s).collect();
        assert_eq!(keys, [Some(10.0), None, Some(2.0)]);
        assert_eq!(app.totals_history.len(), 3);
        assert_eq!(app.snapshots_seen, 4);
    }

    #[test]
    fn a_reset_is_announced() {
        let mut app = app_with(vec![
            snap(10.0, 0.0, vec![tview("a", 5, 50, 10.0)]),
            snap(12.0, 11e6, vec![tview("a", 1, 1, 1.0)]),
        ]);
        let notice = app.notice.clone().expect("a notice").0;
        assert_eq!(
            notice,
            "statistics reset at 00:00:11 UTC: rates start again from the next snapshot"
        );
        for _ in 0..NOTICE_TICKS {
            update(&mut app, Action::Tick);
        }
        assert_eq!(app.notice, None);
    }

    #[test]
    fn losing_the_server_keeps_everything_and_reconnecting_says_so() {
        let mut app = app_with(vec![
            snap(10.0, 0.0, vec![tview("a", 5, 50, 10.0)]),
            snap(12.0, 0.0, vec![tview("a", 9, 70, 30.0)]),
        ]);
        for attempt in 1..=3 {
            update(
                &mut app,
                Action::Disconnected {
                    message: "connection refused".into(),
                    attempt,
                    retry_in: Duration::from_secs(1),
                },
            );
        }
        assert!(matches!(
            app.link,
            Link::Reconnecting { attempt: 3, last_seen: Some(t), .. } if t == 12e6
        ));
        assert!(!app.is_stale(), "a known loss is not staleness");
        assert_eq!(app.history["a"].len(), 1);
        assert!(app.snapshot.is_some());
        // The server restarted: new stats_since, counters from zero.
        update(
            &mut app,
            new_snapshot(snap(40.0, 35e6, vec![tview("a", 1, 2, 1.0)])),
        );
        assert_eq!(app.link, Link::Up);
        assert_eq!(app.derived.tviews[0].keys_per_s, Delta::Reset);
        assert_eq!(
            app.notice.as_ref().map(|n| n.0.as_str()),
            Some("reconnected after 28s; statistics restarted (a server restart resets them)")
        );
        assert_eq!(app.history["a"].len(), 2);
    }

    #[test]
    fn selection_stays_in_bounds_and_follows_the_name() {
        let mut app = app_with(vec![snap(
            1.0,
            0.0,
            vec![tview("a", 0, 0, 0.0), tview("b", 0, 0, 0.0)],
        )]);
        update(&mut app, Action::Up);
        assert_eq!(app.selected.as_deref(), Some("a"));
        for _ in 0..5 {
            update(&mut app, Action::Down);
        }
        assert_eq!(app.selected.as_deref(), Some("b"));
        // b becomes the busier one and moves to the top; the cursor goes with it.
        update(
            &mut app,
            new_snapshot(snap(
                2.0,
                0.0,
                vec![tview("a", 0, 0, 0.0), tview("b", 1, 9, 1.0)],
            )),
        );
        let visible = app.visible_rows();
        assert_eq!(visible[0].name, "b");
        assert_eq!(app.selected_index(&visible), Some(0));
        update(&mut app, Action::End);
        assert_eq!(app.selected.as_deref(), Some("a"));
        update(&mut app, Action::Home);
        assert_eq!(app.selected.as_deref(), Some("b"));
    }

    #[test]
    fn selection_on_an_empty_table_is_a_no_op() {
        let mut app = App::new(Config::default());
        update(&mut app, Action::Down);
        update(&mut app, Action::Open);
        assert_eq!(app.selected, None);
        assert_eq!(app.mode, Mode::Normal);
        assert!(app.take_requests().is_empty());
    }

    #[test]
    fn enter_asks_for_the_explain_and_shows_it_when_it_arrives() {
        let mut app = app_with(vec![snap(1.0, 0.0, vec![tview("tv_a", 0, 0, 0.0)])]);
        update(&mut app, Action::Open);
        assert_eq!(app.mode, Mode::Explain);
        assert_eq!(
            app.take_requests(),
            [Request::Explain {
                tview: "tv_a".into(),
                verbose: false
            }]
        );
        // An answer to an older question is ignored.
        update(
            &mut app,
            Action::ExplainLoaded {
                tview: "tv_other".into(),
                verbose: false,
                result: Ok("nope".into()),
            },
        );
        assert_eq!(
            app.explain.as_ref().map(|e| &e.body),
            Some(&ExplainBody::Loading)
        );
        let text: String = (0..30).map(|i| format!("line {i}\n")).collect();
        update(
            &mut app,
            Action::ExplainLoaded {
                tview: "tv_a".into(),
                verbose: false,
                result: Ok(text),
            },
        );
        update(&mut app, Action::PageDown);
        update(&mut app, Action::Down);
        assert_eq!(app.explain.as_ref().map(|e| e.scroll), Some(11));
        update(&mut app, Action::End);
        assert_eq!(app.explain.as_ref().map(|e| e.scroll), Some(34));
        // Once the size is known: pages of the overlay's height, the last line at the bottom.
        update(&mut app, Action::Resize(80, 24));
        update(&mut app, Action::End);
        assert_eq!(app.explain.as_ref().map(|e| e.scroll), Some(35 - 20));
        update(&mut app, Action::PageUp);
        assert_eq!(app.explain.as_ref().map(|e| e.scroll), Some(0));
        update(&mut app, Action::ToggleVerbose);
        assert_eq!(
            app.take_requests(),
            [Request::Explain {
                tview: "tv_a".into(),
                verbose: true
            }]
        );
        update(&mut app, Action::Close);
        assert_eq!((app.mode, app.explain.is_none()), (Mode::Normal, true));
    }

    #[test]
    fn filter_is_a_case_insensitive_substring_and_esc_drops_it() {
        let mut app = app_with(vec![snap(
            1.0,
            0.0,
            vec![
                tview("app.tv_orders", 0, 0, 0.0),
                tview("app.tv_users", 0, 0, 0.0),
            ],
        )]);
        update(&mut app, Action::StartFilter);
        assert_eq!(app.mode, Mode::Filter);
        for c in "USx".chars() {
            update(&mut app, Action::FilterInput(c));
        }
        assert!(app.visible_rows().is_empty());
        assert_eq!(app.selected_tview(), None);
        update(&mut app, Action::FilterBackspace);
        update(&mut app, Action::FilterDone);
        let names: Vec<_> = app.visible_rows().iter().map(|r| r.name.clone()).collect();
        assert_eq!(names, ["app.tv_users"]);
        assert_eq!(app.mode, Mode::Normal);
        update(&mut app, Action::Close);
        assert_eq!(app.visible_rows().len(), 2);
    }

    #[test]
    fn sort_cycles_both_ways() {
        let mut app = App::new(Config::default());
        update(&mut app, Action::PrevSort);
        assert_eq!(app.sort, SortKey::Name);
        update(&mut app, Action::NextSort);
        update(&mut app, Action::NextSort);
        assert_eq!(app.sort, SortKey::Refreshes);
    }

    #[test]
    fn views_cycle_and_the_graph_cursor_follows_edges() {
        let mut s = snap(
            1.0,
            0.0,
            vec![
                tview("tv_a", 0, 0, 0.0),
                tview("tv_b", 0, 0, 0.0),
                tview("tv_c", 0, 0, 0.0),
            ],
        );
        s.edges = [("tb_x", "tv_a"), ("tb_y", "tv_b"), ("tv_b", "tv_c")]
            .iter()
            .map(|(f, t)| Edge {
                from: (*f).into(),
                to: (*t).into(),
                full_rebuild: false,
            })
            .collect();
        let mut app = app_with(vec![s]);
        update(&mut app, Action::PrevView);
        assert_eq!(app.view, View::Prepared);
        update(&mut app, Action::ShowView(View::Graph));
        update(&mut app, Action::Down);
        assert_eq!(app.selected.as_deref(), Some("tv_b"));
        update(&mut app, Action::Right);
        assert_eq!(app.selected.as_deref(), Some("tv_c"));
        update(&mut app, Action::Left);
        update(&mut app, Action::Left);
        assert_eq!(app.selected.as_deref(), Some("tb_y"));
        // A table cannot be explained; the activity view falls back to its first row.
        update(&mut app, Action::Open);
        assert_eq!(app.mode, Mode::Normal);
        assert_eq!(app.selected_tview(), Some("tv_a"));
        update(&mut app, Action::NextView);
        assert_eq!(app.view, View::Backends);
    }

    #[test]
    fn pause_freezes_the_screen_and_the_staleness_clock() {
        let mut app = app_with(vec![snap(1.0, 0.0, vec![tview("a", 0, 0, 0.0)])]);
        update(&mut app, Action::Pause);
        update(
            &mut app,
            new_snapshot(snap(2.0, 0.0, vec![tview("a", 1, 1, 1.0)])),
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
        for _ in 0..20 {
            update(&mut app, Action::FasterInterval);
        }
        assert_eq!(app.config.interval, INTERVALS[0]);
    }

    #[test]
    fn server_errors_stay_until_the_next_snapshot() {
        let mut app = App::new(Config::default());
        update(&mut app, Action::SourceFailed("permission denied".into()));
        assert_eq!(app.link, Link::Failing("permission denied".into()));
        update(&mut app, new_snapshot(snap(1.0, 0.0, vec![])));
        assert_eq!(app.link, Link::Up);
    }

    #[test]
    fn gaps_read_well() {
        assert_eq!(format_gap(12.4), "12s");
        assert_eq!(format_gap(185.0), "3m05s");
        assert_eq!(format_gap(7800.0), "2h10m");
        assert_eq!(format_gap(-3.0), "0s");
    }
}
