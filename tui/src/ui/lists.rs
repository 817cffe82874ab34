//! The live lists: backends with TVIEW work pending (pg_activity's process list, for
//! refreshes), value-lock waits, and prepared transactions holding TVIEW work.
//!
//! Ages are server time minus the row's timestamp, both from the same snapshot.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};

use super::format;
use super::theme::Theme;
use crate::app::{App, View};

/// A backend in one phase for this long is highlighted; ten times as long, alerted.
const SLOW_PHASE_SECS: f64 = 1.0;
/// A prepared transaction older than this is highlighted; older than
/// `Config::prepared_warning`, alerted.
const PREPARED_NOTICE_SECS: f64 = 60.0;

fn age_style(secs: f64, warn: f64, alert: f64, theme: &Theme) -> Style {
    if secs >= alert {
        theme.alert
    } else if secs >= warn {
        theme.warning
    } else {
        Style::new()
    }
}

/// A column as wide as its longest value (or title), within `min..=max`, plus one: the
/// table's layout can take a cell from a column when it rounds.
fn fit_column<'a>(
    title: &str,
    values: impl Iterator<Item = &'a str>,
    min: u16,
    max: u16,
) -> Constraint {
    let longest = values
        .map(|v| v.chars().count())
        .chain([title.chars().count()])
        .max()
        .unwrap_or(0);
    Constraint::Length((longest as u16 + 1).clamp(min, max))
}

fn right(text: String) -> Cell<'static> {
    Cell::from(Line::raw(text).right_aligned())
}

fn empty(frame: &mut Frame, block: Block, area: Rect, text: &str, theme: &Theme) {
    frame.render_widget(
        Paragraph::new(text.to_string())
            .style(theme.idle)
            .block(block),
        area,
    );
}

pub fn backends(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let rows = app.visible_backends();
    let block = Block::bordered().title(format!(" backends with TVIEW work ({}) ", rows.len()));
    let Some(snap) = &app.snapshot else {
        return empty(frame, block, area, "waiting for the first snapshot…", theme);
    };
    if rows.is_empty() {
        let text = if snap.preloaded {
            "no backend has TVIEW work pending"
        } else {
            "the live queue needs shared_preload_libraries = 'pg_tviews'"
        };
        return empty(frame, block, area, text, theme);
    }
    let other_databases = rows
        .iter()
        .any(|q| q.database.as_deref() != Some(snap.database.as_str()));
    let selected = app.selected_tview();
    let mut widths = vec![Constraint::Length(7)];
    let mut titles = vec!["pid"];
    if other_databases {
        widths.push(Constraint::Length(12));
        titles.push("database");
    }
    widths.extend([
        fit_column("TVIEW", rows.iter().map(|q| q.tview.as_str()), 5, 32),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Fill(1),
    ]);
    titles.extend(["TVIEW", "phase", "keys", "age", "waiting for"]);
    let header = Row::new(titles.iter().map(|t| {
        let line = Line::raw(*t);
        Cell::from(if matches!(*t, "pid" | "keys" | "age") {
            line.right_aligned()
        } else {
            line
        })
    }))
    .style(theme.table_header);
    let body = rows.iter().map(|q| {
        let age = q.since.map(|since| (snap.server_time - since) / 1e6);
        let mut cells = vec![right(q.pid.to_string())];
        if other_databases {
            cells.push(Cell::from(q.database.clone().unwrap_or_default()));
        }
        let tview = if q.tview.is_empty() {
            "-".to_string()
        } else {
            q.tview.clone()
        };
        cells.extend([
            Cell::from(tview),
            Cell::from(q.phase.clone()),
            right(format::count(q.keys_pending)),
            Cell::from(
                Line::styled(
                    age.map_or("-".to_string(), format::age),
                    age.map_or(Style::new(), |a| {
                        age_style(a, SLOW_PHASE_SECS, 10.0 * SLOW_PHASE_SECS, theme)
                    }),
                )
                .right_aligned(),
            ),
            Cell::from(q.waiting_for.clone().unwrap_or_default()),
        ]);
        let style = if !q.tview.is_empty() && Some(q.tview.as_str()) == selected {
            theme.input
        } else if q.waiting_for.is_some() {
            theme.warning
        } else {
            Style::new()
        };
        Row::new(cells).style(style)
    });
    let table = Table::new(body, widths).header(header);
    if app.view == View::Backends {
        let table = table
            .row_highlight_style(theme.selected)
            .highlight_symbol("▸ ");
        let mut state = TableState::new().with_selected(Some(app.backend_cursor));
        frame.render_stateful_widget(table.block(block), area, &mut state);
    } else {
        frame.render_widget(table.block(block), area);
    }
}

pub fn lock_waits(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let Some(snap) = &app.snapshot else {
        let block = Block::bordered().title(" value-lock waits ");
        return empty(frame, block, area, "waiting for the first snapshot…", theme);
    };
    let mut waits: Vec<_> = snap.lock_waits.iter().collect();
    // The longest wait first.
    waits.sort_by(|a, b| {
        b.waiting_ms
            .unwrap_or(0.0)
            .total_cmp(&a.waiting_ms.unwrap_or(0.0))
            .then_with(|| a.waiting_pid.cmp(&b.waiting_pid))
    });
    let block = Block::bordered().title(format!(" value-lock waits ({}) ", waits.len()));
    if waits.is_empty() {
        return empty(
            frame,
            block,
            area,
            "no session waits for a value lock",
            theme,
        );
    }
    let header = Row::new([
        Cell::from(Line::raw("pid").right_aligned()),
        Cell::from("waits for"),
        Cell::from("held by"),
        Cell::from(Line::raw("for").right_aligned()),
    ])
    .style(theme.table_header);
    let body = waits.iter().map(|w| {
        let value = w
            .waiting_for
            .clone()
            .or_else(|| w.relation.clone())
            .unwrap_or_else(|| "?".to_string());
        let (holder, holder_style) = match (&w.holder_gid, w.holder_pid) {
            (Some(gid), _) => (format!("prepared {gid}"), theme.alert),
            (None, Some(pid)) => (format!("pid {pid}"), Style::new()),
            (None, None) => ("?".to_string(), Style::new()),
        };
        let secs = w.waiting_ms.map(|ms| ms / 1000.0);
        Row::new([
            right(w.waiting_pid.to_string()),
            Cell::from(value),
            Cell::from(Line::styled(holder, holder_style)),
            Cell::from(
                Line::styled(
                    secs.map_or("-".to_string(), format::age),
                    secs.map_or(Style::new(), |s| age_style(s, 1.0, 10.0, theme)),
                )
                .right_aligned(),
            ),
        ])
    });
    let holders: Vec<String> = waits
        .iter()
        .map(|w| match (&w.holder_gid, w.holder_pid) {
            (Some(gid), _) => format!("prepared {gid}"),
            (None, Some(pid)) => format!("pid {pid}"),
            (None, None) => "?".to_string(),
        })
        .collect();
    let widths = [
        Constraint::Length(7),
        Constraint::Min(16),
        fit_column(
            "held by",
            holders.iter().map(String::as_str),
            8,
            (area.width.saturating_sub(2) / 2).max(8),
        ),
        Constraint::Length(6),
    ];
    frame.render_widget(Table::new(body, widths).header(header).block(block), area);
}

pub fn prepared(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let rows = app.visible_prepared();
    let block = Block::bordered().title(format!(
        " prepared transactions holding TVIEW work ({}) ",
        rows.len()
    ));
    let Some(snap) = &app.snapshot else {
        return empty(frame, block, area, "waiting for the first snapshot…", theme);
    };
    if rows.is_empty() {
        return empty(
            frame,
            block,
            area,
            "no prepared transaction holds TVIEW work",
            theme,
        );
    }
    let old = app.config.prepared_warning.as_secs_f64();
    let header = Row::new([
        Cell::from("gid"),
        Cell::from(Line::raw("age").right_aligned()),
        Cell::from("owner"),
        Cell::from(Line::raw("locks").right_aligned()),
        Cell::from("TVIEWs"),
    ])
    .style(theme.table_header);
    let body = rows.iter().map(|p| {
        let age = (snap.server_time - p.prepared_at) / 1e6;
        let style = age_style(age, PREPARED_NOTICE_SECS, old, theme);
        Row::new([
            Cell::from(p.gid.clone()),
            right(format::age(age)),
            Cell::from(p.owner.clone()),
            right(format::count(p.keys)),
            Cell::from(p.tviews.join(", ")),
        ])
        .style(style)
    });
    let widths = [
        fit_column("gid", rows.iter().map(|p| p.gid.as_str()), 3, 40),
        Constraint::Length(6),
        fit_column("owner", rows.iter().map(|p| p.owner.as_str()), 5, 16),
        Constraint::Length(6),
        Constraint::Fill(1),
    ];
    let table = Table::new(body, widths).header(header);
    if app.view == View::Prepared {
        let table = table
            .row_highlight_style(theme.selected)
            .highlight_symbol("▸ ");
        let mut state = TableState::new().with_selected(Some(app.prepared_cursor));
        frame.render_stateful_widget(table.block(block), area, &mut state);
    } else {
        frame.render_widget(table.block(block), area);
    }
}
