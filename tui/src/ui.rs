//! Frames out: `render` draws an `App` and changes nothing. Layout decisions are pure functions of
//! the terminal size so they can be tested without drawing.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, Table, TableState};

use crate::app::{App, Delta, Mode, SortKey, TviewRow};
use crate::snapshot::EpochMicros;

/// Where each part of the main screen goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MainAreas {
    pub header: Rect,
    pub table: Rect,
    /// Zero-height on terminals too short to spare the lines.
    pub sparkline: Rect,
    pub status: Rect,
}

pub fn main_layout(area: Rect, has_error: bool) -> MainAreas {
    let header = if has_error { 3 } else { 2 };
    let [header, table, sparkline, status] = Layout::vertical([
        Constraint::Length(header),
        Constraint::Min(0),
        Constraint::Length(sparkline_height(area.height)),
        Constraint::Length(1),
    ])
    .areas(area);
    MainAreas {
        header,
        table,
        sparkline,
        status,
    }
}

/// The sparkline (with its border) takes what the table can spare: none below 16 lines, so the
/// table keeps at least ten rows; more on tall terminals, where the history is worth seeing.
pub fn sparkline_height(terminal_height: u16) -> u16 {
    match terminal_height {
        0..16 => 0,
        16..36 => 5,
        _ => 9,
    }
}

/// A `width` × `height` rectangle centred in `area`, shrunk to fit.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Name,
    Rows,
    Refreshes,
    Keys,
    Written,
    Skipped,
    MeanMs,
    Errors,
    LockWaits,
}

impl Column {
    fn title(self) -> &'static str {
        match self {
            Column::Name => "TVIEW",
            Column::Rows => "rows",
            Column::Refreshes => "refr/s",
            Column::Keys => "keys/s",
            Column::Written => "wrote/s",
            Column::Skipped => "skip/s",
            Column::MeanMs => "mean ms",
            Column::Errors => "errors",
            Column::LockWaits => "lock wait",
        }
    }

    fn constraint(self) -> Constraint {
        match self {
            Column::Name => Constraint::Min(12),
            Column::LockWaits => Constraint::Length(10),
            _ => Constraint::Length(9),
        }
    }

    fn cell(self, row: &TviewRow) -> String {
        match self {
            Column::Name => row.name.clone(),
            Column::Rows => format_count(row.rows),
            Column::Refreshes => format_delta(row.refreshes_per_s),
            Column::Keys => format_delta(row.keys_per_s),
            Column::Written => format_delta(row.written_per_s),
            Column::Skipped => format_delta(row.skipped_per_s),
            Column::MeanMs => format_delta(row.mean_ms),
            Column::Errors => format_count(row.errors),
            Column::LockWaits => format_count(row.lock_waits),
        }
    }
}

/// Every column, in display order; the first [`NARROW_COLUMN_COUNT`] fit an 80-column terminal.
const COLUMNS: [Column; 9] = [
    Column::Name,
    Column::Rows,
    Column::Refreshes,
    Column::Keys,
    Column::Written,
    Column::Skipped,
    Column::MeanMs,
    Column::Errors,
    Column::LockWaits,
];
const NARROW_COLUMN_COUNT: usize = 7;

/// Wide terminals also get the cumulative error and lock-wait counts, once a 30-column name still
/// fits beside them.
pub fn columns_for_width(width: u16) -> &'static [Column] {
    if width >= 110 {
        &COLUMNS
    } else {
        &COLUMNS[..NARROW_COLUMN_COUNT]
    }
}

pub fn format_delta(delta: Delta) -> String {
    match delta {
        Delta::NotAvailable => "n/a".into(),
        Delta::Reset => "reset".into(),
        Delta::Value(v) if v < 10.0 => format!("{v:.2}"),
        Delta::Value(v) if v < 10_000.0 => format!("{v:.1}"),
        Delta::Value(v) if v < 10_000_000.0 => format!("{:.1}k", v / 1e3),
        Delta::Value(v) => format!("{:.1}M", v / 1e6),
    }
}

pub fn format_count(n: u64) -> String {
    match n {
        0..100_000 => n.to_string(),
        100_000..100_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// `HH:MM:SS UTC` of a server timestamp; UTC because the console has no time-zone database and
/// the server's zone is not in the snapshot.
pub fn format_clock(at: EpochMicros) -> String {
    let secs = (at / 1e6).floor() as i64;
    let day = secs.rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02} UTC",
        day / 3600,
        day % 3600 / 60,
        day % 60
    )
}

/// Styles, or their absence: with `no_color` only modifiers (bold, reverse) remain.
struct Theme {
    title: Style,
    error: Style,
    warning: Style,
    table_header: Style,
    selected: Style,
    sparkline: Style,
}

impl Theme {
    fn new(no_color: bool) -> Self {
        let bold = Style::new().add_modifier(Modifier::BOLD);
        let colour = |style: Style, color: Color| if no_color { style } else { style.fg(color) };
        Self {
            title: colour(bold, Color::Cyan),
            error: colour(bold, Color::Red),
            warning: colour(bold, Color::Yellow),
            table_header: colour(bold, Color::Cyan),
            selected: Style::new().add_modifier(Modifier::REVERSED),
            sparkline: colour(Style::new(), Color::Green),
        }
    }
}

pub fn render(frame: &mut Frame, app: &App) {
    let theme = Theme::new(app.config.no_color);
    let areas = main_layout(frame.area(), app.last_error.is_some());
    render_header(frame, app, &theme, areas.header);
    render_table(frame, app, &theme, areas.table);
    if areas.sparkline.height > 0 {
        render_sparkline(frame, app, &theme, areas.sparkline);
    }
    render_status(frame, app, areas.status);
    match app.mode {
        Mode::Help => render_help(frame, &theme),
        Mode::Detail => render_detail(frame, app, &theme),
        Mode::Normal | Mode::Filter => {}
    }
}

fn render_header(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let mut first = vec![
        Span::styled("pg_tviews top", theme.title),
        Span::raw(format!(
            " · {} · every {:?}",
            app.config.server, app.config.interval
        )),
    ];
    if let Some(snap) = &app.snapshot {
        first.push(Span::raw(format!(" · {}", format_clock(snap.server_time))));
    }
    if app.paused {
        first.push(Span::styled(" PAUSED", theme.warning));
    }
    if app.is_stale() {
        first.push(Span::styled(" STALE", theme.warning));
    }
    let mut lines = vec![Line::from(first)];
    if let Some(snap) = &app.snapshot {
        let pending: u64 = snap.queues.iter().map(|q| q.keys_pending).sum();
        let mut backends: Vec<i32> = snap.queues.iter().map(|q| q.pid).collect();
        backends.sort_unstable();
        backends.dedup();
        let hit = match app.cache_hit_ratio {
            Delta::Value(ratio) => format!("{:.1}%", ratio * 100.0),
            other => format_delta(other),
        };
        lines.push(Line::raw(format!(
            "{} TVIEWs · {} keys queued in {} backends · {} prepared · plan cache hit {}",
            snap.tviews.len(),
            pending,
            backends.len(),
            snap.prepared.len(),
            hit
        )));
    } else {
        lines.push(Line::raw("waiting for the first snapshot…"));
    }
    if let Some(error) = &app.last_error {
        lines.push(Line::styled(format!("error: {error}"), theme.error));
    }
    frame.render_widget(Paragraph::new(lines), area);
}

fn render_table(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let columns = columns_for_width(area.width);
    let visible = app.visible_rows();
    let header = Row::new(columns.iter().map(|c| {
        // The arrow marks the sort column; titles leave room for it within the column width.
        let title = if *c == sort_column(app.sort) {
            format!("{}▼", c.title())
        } else {
            c.title().to_string()
        };
        right_aligned(*c, title)
    }))
    .style(theme.table_header);
    let rows = visible
        .iter()
        .map(|row| Row::new(columns.iter().map(|c| right_aligned(*c, c.cell(row)))));
    let table = Table::new(rows, columns.iter().map(|c| c.constraint()))
        .header(header)
        .row_highlight_style(theme.selected)
        // A symbol as well as the reverse video, so the cursor survives terminals without
        // attributes (and shows in text snapshots).
        .highlight_symbol("▸ ");
    let mut state = TableState::new().with_selected(app.selected_index(&visible));
    frame.render_stateful_widget(table, area, &mut state);
}

fn sort_column(key: SortKey) -> Column {
    match key {
        SortKey::Name => Column::Name,
        SortKey::Keys => Column::Keys,
        SortKey::Refreshes => Column::Refreshes,
        SortKey::Written => Column::Written,
        SortKey::MeanTime => Column::MeanMs,
    }
}

/// Numbers line up on the right; names read from the left.
fn right_aligned(column: Column, text: String) -> Cell<'static> {
    let line = Line::raw(text);
    Cell::from(if column == Column::Name {
        line
    } else {
        line.right_aligned()
    })
}

fn render_sparkline(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let Some(row) = app.selected_row() else {
        frame.render_widget(Block::bordered().title(" keys/s "), area);
        return;
    };
    let block = Block::bordered().title(format!(" keys/s · {} ", row.name));
    let width = usize::from(block.inner(area).width);
    let data: Vec<u64> = app
        .history
        .get(&row.name)
        .map(|samples| {
            let skip = samples.len().saturating_sub(width);
            samples.iter().skip(skip).copied().collect()
        })
        .unwrap_or_default();
    let sparkline = Sparkline::default()
        .block(block)
        .data(&data)
        .style(theme.sparkline);
    frame.render_widget(sparkline, area);
}

fn render_status(frame: &mut Frame, app: &App, area: Rect) {
    let text = match app.mode {
        Mode::Filter => format!("filter: {}▏  enter/esc done", app.filter),
        _ if !app.filter.is_empty() => format!(
            "filter: {} · / edit · ? help · q quit · sort {}",
            app.filter,
            app.sort.label()
        ),
        _ => "q quit ? help space pause +/- interval ↑↓ select ⏎ open s sort / filter".into(),
    };
    frame.render_widget(Paragraph::new(text), area);
}

const HELP: &[(&str, &str)] = &[
    ("q, Ctrl-C", "quit (Esc closes an overlay first)"),
    ("?, h", "this help"),
    ("space, p", "pause / resume polling"),
    ("+ / -", "longer / shorter poll interval"),
    ("↑ ↓, k j", "select a TVIEW"),
    ("Enter", "details of the selected TVIEW"),
    ("s", "cycle the sort column"),
    ("/", "filter TVIEWs by name"),
    ("", ""),
    ("n/a", "no previous snapshot to compare with"),
    ("reset", "counters restarted (stats reset, server restart)"),
];

fn render_help(frame: &mut Frame, theme: &Theme) {
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(keys, what)| {
            Line::from(vec![
                Span::styled(format!("{keys:>10}  "), theme.title),
                Span::raw(*what),
            ])
        })
        .collect();
    let area = centered(frame.area(), 64, lines.len() as u16 + 2);
    frame.render_widget(Clear, area);
    let block = Block::default().borders(Borders::ALL).title(" help ");
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The skeleton's detail pane: cumulative counters and direct neighbours. The later issue gives
/// it the full dependency tree, queues and prepared transactions.
fn render_detail(frame: &mut Frame, app: &App, theme: &Theme) {
    let (Some(row), Some(snap)) = (app.selected_row(), &app.snapshot) else {
        return;
    };
    let Some(stats) = snap.tviews.iter().find(|t| t.name == row.name) else {
        return;
    };
    let neighbours = |pick: fn(&crate::snapshot::Edge) -> (&str, &str)| {
        let names: Vec<&str> = snap
            .edges
            .iter()
            .map(pick)
            .filter(|(this, _)| *this == row.name)
            .map(|(_, other)| other)
            .collect();
        if names.is_empty() {
            "-".to_string()
        } else {
            names.join(", ")
        }
    };
    let queued: u64 = snap
        .queues
        .iter()
        .filter(|q| q.tview == row.name)
        .map(|q| q.keys_pending)
        .sum();
    let field = |label: &str, value: String| {
        Line::from(vec![
            Span::styled(format!("{label:>13}  "), theme.title),
            Span::raw(value),
        ])
    };
    let lines = vec![
        field("reads", neighbours(|e| (e.to.as_str(), e.from.as_str()))),
        field("read by", neighbours(|e| (e.from.as_str(), e.to.as_str()))),
        field("rows", stats.rows.to_string()),
        field("refreshes", stats.refreshes.to_string()),
        field("keys", stats.keys.to_string()),
        field("rows written", stats.rows_written.to_string()),
        field("rows skipped", stats.rows_skipped.to_string()),
        field("refresh time", format!("{:.1} ms", stats.refresh_time_ms)),
        field("cascades", stats.cascades.to_string()),
        field("errors", stats.errors.to_string()),
        field("lock waits", stats.lock_waits.to_string()),
        field("keys queued", queued.to_string()),
    ];
    let area = centered(frame.area(), 70, lines.len() as u16 + 2);
    frame.render_widget(Clear, area);
    let block = Block::bordered().title(format!(" {} (since stats reset) ", row.name));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_terminals_drop_the_sparkline_first() {
        let small = main_layout(Rect::new(0, 0, 80, 12), false);
        assert_eq!(small.sparkline.height, 0);
        assert_eq!(small.table.height, 9);
        let standard = main_layout(Rect::new(0, 0, 80, 24), true);
        assert_eq!((standard.header.height, standard.table.height), (3, 15));
        assert_eq!((standard.sparkline.height, standard.status.y), (5, 23));
        assert_eq!(
            main_layout(Rect::new(0, 0, 120, 40), false)
                .sparkline
                .height,
            9
        );
    }

    #[test]
    fn centered_rects_shrink_to_fit() {
        let area = Rect::new(0, 0, 80, 24);
        assert_eq!(centered(area, 64, 10), Rect::new(8, 7, 64, 10));
        assert_eq!(
            centered(Rect::new(0, 0, 40, 5), 64, 10),
            Rect::new(0, 0, 40, 5)
        );
    }

    #[test]
    fn wide_terminals_get_more_columns() {
        assert_eq!(columns_for_width(80).last(), Some(&Column::MeanMs));
        assert_eq!(columns_for_width(120).len(), COLUMNS.len());
    }

    #[test]
    fn numbers_stay_within_their_columns() {
        assert_eq!(format_delta(Delta::Value(0.5)), "0.50");
        assert_eq!(format_delta(Delta::Value(1234.56)), "1234.6");
        assert_eq!(format_delta(Delta::Value(123_456.0)), "123.5k");
        assert_eq!(format_delta(Delta::Value(2.5e9)), "2500.0M");
        assert_eq!(format_delta(Delta::Reset), "reset");
        assert_eq!(format_count(99_999), "99999");
        assert_eq!(format_count(1_234_567), "1234.6k");
        assert_eq!(format_clock(1_700_000_003.5e6), "22:13:23 UTC");
    }
}
