//! The frame around the panes: the header (what is happening in the whole database, top's
//! summary lines), the view tabs, and the status bar (connection, notices, keys).

use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Sparkline};

use super::format;
use super::theme::Theme;
use crate::app::{App, Link, Mode, View};
use crate::rates::Delta;

/// Wide terminals give the header a sparkline of every TVIEW's keys/s together.
const HEADER_SPARK_MIN_WIDTH: u16 = 140;
const HEADER_SPARK_WIDTH: u16 = 42;

pub fn header(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let (text_area, spark_area) = if area.width >= HEADER_SPARK_MIN_WIDTH {
        let [text, spark] =
            Layout::horizontal([Constraint::Fill(1), Constraint::Length(HEADER_SPARK_WIDTH)])
                .areas(area);
        (text, Some(spark))
    } else {
        (area, None)
    };
    let lines = vec![
        first_line(app, theme, text_area.width),
        activity_line(app, theme),
        health_line(app, theme, text_area.width),
    ];
    frame.render_widget(Paragraph::new(lines), text_area);
    if let Some(spark) = spark_area {
        totals_sparkline(frame, app, theme, spark);
    }
}

pub fn interval(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

/// Line 1: who, how often, the server's clock; on the right what is wrong or special (paused,
/// reconnecting, recording). The server's name gives way to the flags on a narrow terminal.
fn first_line(app: &App, theme: &Theme, width: u16) -> Line<'static> {
    let mut flags: Vec<Span<'static>> = Vec::new();
    let mut flag = |text: String, style: Style| {
        flags.push(Span::raw(" "));
        flags.push(Span::styled(text, style));
    };
    if app.paused {
        flag("PAUSED".into(), theme.warning);
    }
    match &app.link {
        Link::Reconnecting { .. } => flag("RECONNECTING".into(), theme.alert),
        Link::Failing(_) => flag("ERROR".into(), theme.alert),
        Link::Ended(_) => flag("END OF REPLAY".into(), theme.warning),
        Link::Up if app.is_stale() => flag(
            format!("STALE {}s", app.seconds_since_snapshot()),
            theme.warning,
        ),
        Link::Up => {}
    }
    if let Some(path) = &app.config.recording {
        flag(format!("● REC {path}"), theme.alert);
    }
    let clock = app
        .snapshot
        .as_ref()
        .map(|s| format!(" · {}", format::clock(s.server_time)))
        .unwrap_or_default();
    let every = format!(" · every {}", interval(app.config.interval));
    let fixed = "pg_tviews top · ".len()
        + every.chars().count()
        + clock.chars().count()
        + flags
            .iter()
            .map(|s| s.content.chars().count())
            .sum::<usize>();
    let server = format::fit(
        &app.config.server,
        usize::from(width).saturating_sub(fixed).max(8),
    );
    let mut spans = vec![
        Span::styled("pg_tviews top", theme.title),
        Span::raw(format!(" · {server}{every}{clock}")),
    ];
    spans.extend(flags);
    Line::from(spans)
}

fn rate_span(label: &str, delta: Delta, theme: &Theme) -> Vec<Span<'static>> {
    let style = match delta {
        Delta::Reset => theme.warning,
        Delta::Value(v) if v > 0.0 => theme.active,
        _ => Style::new(),
    };
    let text = match delta {
        Delta::Value(_) => format!("{}/s", format::delta(delta)),
        other => format::delta(other),
    };
    vec![Span::raw(format!("{label} ")), Span::styled(text, style)]
}

/// `1 lock wait`, `2 lock waits`.
fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Line 2: what the refreshes did over the last interval, every TVIEW together.
fn activity_line(app: &App, theme: &Theme) -> Line<'static> {
    let Some(snap) = &app.snapshot else {
        return Line::raw("waiting for the first snapshot…");
    };
    if !snap.preloaded {
        return Line::styled(
            "statistics are off: pg_tviews is not in shared_preload_libraries \
             (counters and the live queue need it)",
            theme.warning,
        );
    }
    let totals = &app.derived.totals;
    let mut spans = vec![Span::styled(
        plural(snap.tviews.len(), "TVIEW", "TVIEWs"),
        theme.label,
    )];
    for (label, delta) in [
        ("  refr", totals.refreshes_per_s),
        ("  keys", totals.keys_per_s),
        ("  wrote", totals.written_per_s),
        ("  skip", totals.skipped_per_s),
    ] {
        spans.extend(rate_span(label, delta, theme));
    }
    let errors = snap.tviews.iter().map(|t| t.errors).sum::<u64>();
    let error_style = if totals.new_errors.is_positive() {
        theme.alert
    } else {
        Style::new()
    };
    spans.push(Span::raw("  "));
    spans.push(Span::styled(
        plural(errors as usize, "error", "errors"),
        error_style,
    ));
    Line::from(spans)
}

/// Line 3: who is busy, who waits, who holds, and the plan cache; the hit ratio since the
/// last reset when there is room for it.
fn health_line(app: &App, theme: &Theme, width: u16) -> Line<'static> {
    let Some(snap) = &app.snapshot else {
        return Line::raw("");
    };
    let mut pids: Vec<i32> = snap.queues.iter().map(|q| q.pid).collect();
    pids.sort_unstable();
    pids.dedup();
    let pending: u64 = snap.queues.iter().map(|q| q.keys_pending).sum();
    let styled = |on: bool, style: Style| if on { style } else { Style::new() };
    let mut spans = vec![Span::styled(
        format!(
            "{} busy{}",
            pids.len(),
            if pending > 0 {
                format!(
                    " ({} {})",
                    format::count(pending),
                    if pending == 1 { "key" } else { "keys" }
                )
            } else {
                String::new()
            }
        ),
        styled(!pids.is_empty(), theme.active),
    )];
    spans.push(Span::raw("  "));
    let waits = snap.lock_waits.len();
    spans.push(Span::styled(
        plural(waits, "lock wait", "lock waits"),
        styled(waits > 0, theme.warning),
    ));
    spans.push(Span::raw("  "));
    let oldest = snap
        .prepared
        .iter()
        .map(|p| (snap.server_time - p.prepared_at) / 1e6)
        .fold(None, |max: Option<f64>, age| {
            Some(max.map_or(age, |m| m.max(age)))
        });
    let prepared_style = match oldest {
        Some(age) if age >= app.config.prepared_warning.as_secs_f64() => theme.alert,
        Some(_) => theme.warning,
        None => Style::new(),
    };
    spans.push(Span::styled(
        match oldest {
            Some(age) => format!(
                "{} prepared (oldest {})",
                snap.prepared.len(),
                format::age(age)
            ),
            None => "0 prepared".to_string(),
        },
        prepared_style,
    ));
    let cache = &app.derived.cache;
    spans.push(Span::raw(format!(
        "  cache hit {}",
        format::percent(cache.hit_ratio)
    )));
    if let Some(ratio) = cache.hit_ratio_since_reset {
        let more = format!(" ({} since reset)", format::ratio(ratio));
        let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
        if used + more.chars().count() <= usize::from(width) {
            spans.push(Span::raw(more));
        }
    }
    Line::from(spans)
}

fn totals_sparkline(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let [label, spark] = Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(area);
    let width = usize::from(spark.width);
    let samples: Vec<_> = app.totals_history.iter().rev().take(width).rev().collect();
    let span = match (samples.first(), samples.last()) {
        (Some(first), Some(last)) if samples.len() > 1 => {
            format!(" over {}", format::age((last.at - first.at) / 1e6))
        }
        _ => String::new(),
    };
    frame.render_widget(
        Paragraph::new(Line::styled(
            format!("keys/s, all TVIEWs{span}"),
            theme.label,
        )),
        label,
    );
    let data: Vec<Option<u64>> = samples.iter().map(|s| s.keys_per_s.map(scaled)).collect();
    frame.render_widget(
        Sparkline::default()
            .data(data)
            .style(theme.sparkline)
            .absent_value_symbol("·"),
        spark,
    );
}

/// Sparklines draw integers: rates are scaled so that fractions of one per second show.
pub fn scaled(v: f64) -> u64 {
    (v * 100.0).round().max(0.0) as u64
}

pub fn tabs(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let counts = app
        .snapshot
        .as_ref()
        .map(|s| (s.queues.len(), s.lock_waits.len(), s.prepared.len()));
    let mut spans = Vec::new();
    for (index, view) in View::ALL.iter().enumerate() {
        let extra = match (view, counts) {
            (View::Backends, Some((busy, waits, _))) if busy + waits > 0 => {
                format!(" {busy}/{waits}")
            }
            (View::Prepared, Some((_, _, prepared))) if prepared > 0 => format!(" {prepared}"),
            _ => String::new(),
        };
        let text = format!(" {} {}{} ", index + 1, view.title(), extra);
        let style = if *view == app.view {
            theme.tab
        } else {
            theme.label
        };
        spans.push(Span::styled(text, style));
        spans.push(Span::raw(" "));
    }
    let used: usize = spans.iter().map(|s| s.content.chars().count()).sum();
    let mut right = Vec::new();
    if !app.filter.is_empty() || app.mode == Mode::Filter {
        right.push(format!("filter /{}", app.filter));
    }
    if app.view == View::Overview {
        right.push(format!("sort {} ▼", app.sort.label()));
    }
    let right = right.join(" · ");
    let room = usize::from(area.width).saturating_sub(used);
    if room > right.chars().count() {
        spans.push(Span::raw(format!("{right:>room$}")));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

pub fn status(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let one_line = |text: &str| text.replace(['\n', '\r', '\t'], " ");
    let line = if app.mode == Mode::Filter {
        Line::from(vec![
            Span::styled("filter: ", theme.key),
            Span::raw(format!("{}▏", app.filter)),
            Span::raw("  Enter keep · Esc clear"),
        ])
    } else {
        match &app.link {
            Link::Reconnecting {
                message,
                attempt,
                retry_in,
                ..
            } => Line::styled(
                format!(
                    "reconnecting… (server restarted?) attempt {attempt}, next in {}: {}",
                    interval(*retry_in),
                    one_line(message)
                ),
                theme.alert,
            ),
            Link::Failing(message) => {
                Line::styled(format!("error: {}", one_line(message)), theme.alert)
            }
            Link::Ended(count) => Line::styled(
                format!("end of replay: {count} snapshots shown · q quit"),
                theme.warning,
            ),
            Link::Up => match &app.notice {
                Some((text, _)) => Line::styled(one_line(text), theme.warning),
                None => hints(theme, area.width),
            },
        }
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// The main keys, two spaces apart, or one where the line is short.
fn hints(theme: &Theme, width: u16) -> Line<'static> {
    const HINTS: [(&str, &str); 9] = [
        ("q", "quit"),
        ("?", "help"),
        ("p", "pause"),
        ("+-", "interval"),
        ("↑↓", "select"),
        ("⏎", "explain"),
        ("1-4", "views"),
        ("s", "sort"),
        ("/", "filter"),
    ];
    let wide: usize = HINTS
        .iter()
        .map(|(k, w)| k.chars().count() + w.len() + 3)
        .sum();
    let gap = if wide <= usize::from(width) {
        "  "
    } else {
        " "
    };
    let mut spans = Vec::new();
    for (key, what) in HINTS {
        spans.push(Span::styled(key, theme.key));
        spans.push(Span::raw(format!(" {what}{gap}")));
    }
    Line::from(spans)
}
