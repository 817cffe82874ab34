//! Overlays: the help screen, and the explain of a TVIEW with its counters.

use ratatui::Frame;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use ratatui::layout::Rect;

use super::theme::Theme;
use super::{centered, format};
use crate::app::{App, EXPLAIN_HEADER_LINES, ExplainBody};
use crate::keys::HELP;

/// What the numbers and marks mean, under the keys.
const LEGEND: &[(&str, &str)] = &[
    (
        "x/s",
        "per second of server time between the last two snapshots",
    ),
    (
        "n/a",
        "nothing to compare with yet (first snapshot, new TVIEW)",
    ),
    (
        "reset",
        "counters restarted: pg_tviews_stats_reset() or a restart",
    ),
    ("grey", "no refresh in the last interval"),
    (
        "● ◆ ◇",
        "graph: selected, an edge away, further (cyan: inputs, magenta: cascade)",
    ),
];

/// The screen between the header's first line and the status bar, where overlays go: the
/// header's first line (server, clock, PAUSED, RECONNECTING) and the status bar stay visible.
pub fn overlay_area(full: Rect) -> Rect {
    Rect {
        x: full.x,
        y: full.y + 1,
        width: full.width,
        height: full.height.saturating_sub(2),
    }
}

pub fn help(frame: &mut Frame, theme: &Theme) {
    let row = |keys: &str, what: &str| {
        Line::from(vec![
            Span::styled(format!("{keys:>11}  "), theme.key),
            Span::raw(what.to_string()),
        ])
    };
    let mut lines: Vec<Line> = HELP.iter().map(|(k, w)| row(k, w)).collect();
    lines.push(Line::raw(""));
    lines.extend(LEGEND.iter().map(|(k, w)| row(k, w)));
    let body = overlay_area(frame.area());
    frame.render_widget(Clear, body);
    let area = centered(body, 80, lines.len() as u16 + 2);
    let block = Block::bordered()
        .title(" help: pg_tviews top ")
        .title_bottom(" docs/CONSOLE.md · Esc close ");
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

pub fn explain(frame: &mut Frame, app: &App, theme: &Theme) {
    let Some(explain) = &app.explain else {
        return;
    };
    let area = overlay_area(frame.area());
    frame.render_widget(Clear, area);
    let mut lines = counters(app, &explain.tview, theme);
    lines.resize(EXPLAIN_HEADER_LINES, Line::raw(""));
    match &explain.body {
        ExplainBody::Loading => lines.push(Line::styled("asking the server…", theme.idle)),
        ExplainBody::Error(error) => lines.extend(
            error
                .lines()
                .map(|l| Line::styled(l.to_string(), theme.alert)),
        ),
        ExplainBody::Text(text) => lines.extend(text.lines().map(|l| Line::raw(l.to_string()))),
    }
    let total = lines.len();
    let inner_height = usize::from(area.height.saturating_sub(2));
    // The state clamps with the terminal's size; this holds before it is known too.
    let scroll = explain
        .scroll
        .min(total.saturating_sub(inner_height.max(1)));
    let last = (scroll + inner_height).min(total);
    let block = Block::bordered()
        .title(format!(
            " explain {}{} ",
            explain.tview,
            if explain.verbose {
                " with statements"
            } else {
                ""
            }
        ))
        .title_bottom(format!(
            " lines {}-{last} of {total} · ↑↓ PgUp PgDn scroll · v {} · Esc close ",
            scroll + 1,
            if explain.verbose {
                "hide statements"
            } else {
                "statements"
            }
        ));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .scroll((u16::try_from(scroll).unwrap_or(u16::MAX), 0)),
        area,
    );
}

/// The TVIEW's cumulative counters from the snapshot (`pg_tviews_stats`), above its explain.
fn counters(app: &App, tview: &str, theme: &Theme) -> Vec<Line<'static>> {
    let Some(snap) = &app.snapshot else {
        return Vec::new();
    };
    let Some(t) = snap.tview(tview) else {
        return Vec::new();
    };
    let label = |text: &str| Span::styled(format!("{text:>12}  "), theme.label);
    let since = if snap.preloaded {
        format!("since {}", format::clock(snap.stats_since))
    } else {
        "statistics off".to_string()
    };
    let last = t.last_refresh.map_or("never".to_string(), format::clock);
    vec![
        Line::from(vec![
            label("size"),
            Span::raw(format!(
                "{} rows (estimate), {} · cascade depth {} · last refresh {last}",
                format::count(t.rows),
                format::bytes(t.size_bytes),
                t.depth
            )),
        ]),
        Line::from(vec![
            label("refreshes"),
            Span::raw(format!(
                "{} ({since}), {} keys, {} full rebuilds, {} keys by cascade, {} errors",
                t.refreshes, t.keys, t.full_rebuilds, t.cascades, t.errors
            )),
        ]),
        Line::from(vec![
            label("rows"),
            Span::raw(format!(
                "{} written ({} inserted, {} updated, {} deleted), {} skipped as unchanged",
                t.rows_written, t.inserted, t.updated, t.deleted, t.rows_skipped
            )),
        ]),
        Line::from(vec![
            label("time"),
            Span::raw(format!(
                "{} in all: lock {}, derive {}, apply {}; {} lock waits, {}",
                format::millis(t.refresh_time_ms),
                format::millis(t.lock_ms),
                format::millis(t.derive_ms),
                format::millis(t.apply_ms),
                t.lock_waits,
                format::millis(t.lock_wait_ms)
            )),
        ]),
    ]
}
