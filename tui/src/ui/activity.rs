//! Refresh activity per TVIEW over the last interval (the htop process list of the console),
//! and the trend of the selected TVIEW.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Paragraph, Row, Sparkline, Table, TableState};

use super::chrome::scaled;
use super::format;
use super::theme::Theme;
use crate::app::{App, Sample, SortKey};
use crate::rates::{Delta, TviewRates};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Name,
    Rows,
    Refreshes,
    Keys,
    Written,
    Skipped,
    SkippedShare,
    MeanMs,
    Errors,
    LockWaits,
    /// keys/s of the last samples, as text.
    Trend,
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
            Column::SkippedShare => "skip%",
            Column::MeanMs => "mean ms",
            Column::Errors => "errors",
            Column::LockWaits => "waits/s",
            Column::Trend => "keys/s trend",
        }
    }

    fn width(self) -> Constraint {
        match self {
            Column::Name => Constraint::Min(14),
            Column::SkippedShare | Column::Errors => Constraint::Length(6),
            // Sized per frame (`trend_width`).
            Column::Trend => Constraint::Length(0),
            _ => Constraint::Length(8),
        }
    }

    fn sorted_by(self) -> Option<SortKey> {
        Some(match self {
            Column::Name => SortKey::Name,
            Column::Rows => SortKey::Rows,
            Column::Refreshes => SortKey::Refreshes,
            Column::Keys => SortKey::Keys,
            Column::Written => SortKey::Written,
            Column::Skipped => SortKey::Skipped,
            Column::MeanMs => SortKey::MeanTime,
            Column::Errors => SortKey::Errors,
            Column::SkippedShare | Column::LockWaits | Column::Trend => return None,
        })
    }
}

const ALL: [Column; 11] = [
    Column::Name,
    Column::Rows,
    Column::Refreshes,
    Column::Keys,
    Column::Written,
    Column::Skipped,
    Column::MeanMs,
    Column::SkippedShare,
    Column::Errors,
    Column::LockWaits,
    Column::Trend,
];

/// The columns that fit `width`, a prefix of [`ALL`]: at 80 columns the rates, from 100 the
/// skipped share and errors, from 110 lock waits, from 130 a text sparkline of keys/s.
pub fn columns_for_width(width: u16) -> &'static [Column] {
    match width {
        0..100 => &ALL[..7],
        100..110 => &ALL[..9],
        110..130 => &ALL[..10],
        _ => &ALL,
    }
}

/// The trend column's width: what the others leave, at most one sample per character.
const TREND_MAX: usize = 60;

pub fn table(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let visible = app.visible_rows();
    let block = Block::bordered().title(title(app, visible.len()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if visible.is_empty() {
        let text = match &app.snapshot {
            None => "waiting for the first snapshot…".to_string(),
            Some(_) if !app.filter.is_empty() => format!("no TVIEW matches /{}", app.filter),
            Some(snap) => format!("no TVIEW in database {}", snap.database),
        };
        frame.render_widget(Paragraph::new(text).style(theme.idle), inner);
        return;
    }
    let columns = columns_for_width(inner.width);
    let trend_width = trend_width(columns, inner.width);
    // What the name column is left with: the highlight symbol, the other columns and their
    // spacing come first.
    let name_width = usize::from(inner.width).saturating_sub(
        2 + columns
            .iter()
            .map(|c| match c {
                Column::Name => 0,
                Column::Trend => trend_width + 1,
                c => fixed_width(*c) + 1,
            })
            .sum::<usize>(),
    );
    let header = Row::new(columns.iter().map(|c| {
        let mut title = c.title().to_string();
        if c.sorted_by() == Some(app.sort) {
            title.push('▼');
        }
        aligned(*c, title, Style::new())
    }))
    .style(theme.table_header);
    let rows = visible.iter().map(|row| {
        let style = if row.new_errors.is_positive() {
            theme.alert
        } else if row.active() {
            Style::new()
        } else {
            theme.idle
        };
        Row::new(
            columns
                .iter()
                .map(|c| cell(*c, row, app, theme, trend_width, name_width)),
        )
        .style(style)
    });
    let widths = columns.iter().map(|c| match c {
        Column::Trend => Constraint::Length(trend_width as u16),
        _ => c.width(),
    });
    let table = Table::new(rows, widths)
        .header(header)
        .row_highlight_style(theme.selected)
        // A symbol as well as reverse video, so that the cursor survives terminals without
        // attributes (and shows in text snapshots).
        .highlight_symbol("▸ ");
    let mut state = TableState::new().with_selected(app.selected_index(&visible));
    frame.render_stateful_widget(table, inner, &mut state);
}

fn title(app: &App, shown: usize) -> String {
    let total = app.derived.tviews.len();
    let interval = app
        .derived
        .interval_secs
        .map(|s| format!(" over the last {}", format::age(s)))
        .unwrap_or_default();
    if shown == total {
        format!(" refresh activity{interval} ")
    } else {
        format!(" refresh activity{interval} · {shown} of {total} TVIEWs ")
    }
}

fn trend_width(columns: &[Column], width: u16) -> usize {
    if !columns.contains(&Column::Trend) {
        return 0;
    }
    // The fixed columns, their spacing and the highlight symbol; the name keeps 24.
    let fixed: usize = columns
        .iter()
        .map(|c| match c.width() {
            Constraint::Length(n) => usize::from(n) + 1,
            _ => 0,
        })
        .sum::<usize>()
        + 2
        + 24
        + 1;
    usize::from(width).saturating_sub(fixed).min(TREND_MAX)
}

fn aligned(column: Column, text: String, style: Style) -> Cell<'static> {
    let line = Line::styled(text, style);
    Cell::from(if matches!(column, Column::Name | Column::Trend) {
        line
    } else {
        line.right_aligned()
    })
}

fn fixed_width(column: Column) -> usize {
    match column.width() {
        Constraint::Length(n) => usize::from(n),
        _ => 0,
    }
}

fn cell(
    column: Column,
    row: &TviewRates,
    app: &App,
    theme: &Theme,
    trend: usize,
    name_width: usize,
) -> Cell<'static> {
    let rate = |delta: Delta| {
        let style = if delta == Delta::Reset {
            theme.warning
        } else {
            Style::new()
        };
        aligned(column, format::delta(delta), style)
    };
    match column {
        Column::Name => aligned(column, format::fit(&row.name, name_width), Style::new()),
        Column::Rows => aligned(column, format::count(row.rows), Style::new()),
        Column::Refreshes => rate(row.refreshes_per_s),
        Column::Keys => rate(row.keys_per_s),
        Column::Written => rate(row.written_per_s),
        Column::Skipped => rate(row.skipped_per_s),
        Column::MeanMs => rate(row.mean_ms),
        Column::SkippedShare => aligned(column, format::percent(row.skipped_share), Style::new()),
        Column::Errors => {
            let style = if row.new_errors.is_positive() {
                theme.alert
            } else {
                Style::new()
            };
            aligned(column, format::count(row.errors), style)
        }
        Column::LockWaits => rate(row.lock_waits_per_s),
        Column::Trend => {
            let samples: Vec<Option<f64>> = app
                .history
                .get(&row.name)
                .map(|h| {
                    h.iter()
                        .rev()
                        .take(trend)
                        .rev()
                        .map(|s| s.keys_per_s)
                        .collect()
                })
                .unwrap_or_default();
            aligned(column, format::spark(&samples), theme.sparkline)
        }
    }
}

/// The selected TVIEW over the last minutes: keys/s and mean refresh time, one bar per
/// snapshot, `·` where a reset or a gap left no value.
pub fn trend(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let Some(name) = app.selected_tview() else {
        frame.render_widget(Block::bordered().title(" trend "), area);
        return;
    };
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Fill(1)]).areas(area);
    let history = app.history.get(name);
    let samples = |width: u16| -> Vec<Sample> {
        history
            .map(|h| {
                let n = usize::from(width.saturating_sub(2));
                h.iter().rev().take(n).rev().copied().collect()
            })
            .unwrap_or_default()
    };
    for (area, what, pick) in [
        (
            left,
            "keys/s",
            (|s: &Sample| s.keys_per_s) as fn(&Sample) -> Option<f64>,
        ),
        (right, "mean ms", |s: &Sample| s.mean_ms),
    ] {
        let shown = samples(area.width);
        let values: Vec<Option<f64>> = shown.iter().map(pick).collect();
        let max = values.iter().flatten().copied().fold(0.0_f64, f64::max);
        let now = values.last().copied().flatten();
        let span = match (shown.first(), shown.last()) {
            (Some(first), Some(last)) if shown.len() > 1 => {
                format!(" · {}", format::age((last.at - first.at) / 1e6))
            }
            _ => String::new(),
        };
        // As much of the title as fits: what, whose, now, max, over how long.
        let room = usize::from(area.width.saturating_sub(4));
        let mut title = format!(
            " {what} · {}",
            format::fit(name, room.saturating_sub(what.len() + 4))
        );
        for part in [
            format!(" · now {}", now.map_or("n/a".to_string(), format::number)),
            format!(" · max {}", format::number(max)),
            span,
        ] {
            if title.chars().count() + part.chars().count() < room {
                title.push_str(&part);
            }
        }
        title.push(' ');
        let data: Vec<Option<u64>> = values.iter().map(|v| v.map(scaled)).collect();
        frame.render_widget(
            Sparkline::default()
                .block(Block::bordered().title(title))
                .data(data)
                .style(theme.sparkline)
                .absent_value_symbol("·"),
            area,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_terminals_get_more_columns() {
        assert_eq!(columns_for_width(78).last(), Some(&Column::MeanMs));
        assert_eq!(columns_for_width(104).last(), Some(&Column::Errors));
        assert_eq!(columns_for_width(158).last(), Some(&Column::Trend));
        assert_eq!(trend_width(columns_for_width(158), 158), 53);
        assert_eq!(trend_width(columns_for_width(300), 300), TREND_MAX);
    }
}
