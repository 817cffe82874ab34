//! Output formats and colour, shared by every subcommand.
//!
//! Commands build a report value and render it with the helpers here; rendering is a
//! pure function of (report, [`Style`]) so it is snapshot-tested.

use comfy_table::modifiers::UTF8_ROUND_CORNERS;
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Attribute, Cell, Color, ContentArrangement, Table};
use serde::Serialize;

/// `--format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable tables (a text tree for `explain` and `graph`).
    #[default]
    #[value(alias = "text")]
    Table,
    /// One JSON document with stable snake_case field names, for scripts.
    Json,
    /// Graphviz dot (`explain`, `graph`): `tviews graph --format dot | dot -Tsvg`.
    Dot,
}

/// The output flags, global to every subcommand.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
#[command(next_help_heading = "Output options")]
pub struct OutputArgs {
    /// Output format (dot: explain and graph only)
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,

    /// Never colour the output (also: NO_COLOR set, or stdout not a terminal)
    #[arg(long, global = true)]
    pub no_color: bool,
}

/// How to render: decided once in `main`, passed to every renderer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Style {
    pub format: Format,
    /// Colours and bold text.
    pub color: bool,
    /// stdout is a terminal: tables may wrap to its width. Off for pipes and tests, so
    /// the output does not depend on who runs it.
    pub terminal: bool,
    /// stderr is a terminal: progress spinners are drawn there (hidden otherwise).
    pub progress: bool,
}

impl Style {
    /// The plain style (no colour, no terminal) in `format`: what tests render with.
    pub fn plain(format: Format) -> Style {
        Style {
            format,
            ..Style::default()
        }
    }
}

/// Colour only on a terminal, and never with `--no-color` or a non-empty `NO_COLOR`
/// (<https://no-color.org>).
pub fn use_color(
    no_color_flag: bool,
    no_color_env: Option<&str>,
    stdout_is_terminal: bool,
) -> bool {
    !no_color_flag && no_color_env.is_none_or(str::is_empty) && stdout_is_terminal
}

/// A table in the house style. Off a terminal comfy-table is told so (no wrapping);
/// colour is decided by the cell helpers below, which add none when `style.color` is
/// off, so `--no-color` and `NO_COLOR` hold on a terminal too.
pub fn table(style: Style) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .apply_modifier(UTF8_ROUND_CORNERS);
    if style.terminal {
        t.set_content_arrangement(ContentArrangement::Dynamic);
    } else {
        t.force_no_tty()
            .set_content_arrangement(ContentArrangement::Disabled);
    }
    if style.color {
        t.enforce_styling();
    }
    t
}

/// Bold, when colour is on.
pub fn bold(text: impl ToString, style: Style) -> Cell {
    let cell = Cell::new(text);
    if style.color {
        cell.add_attribute(Attribute::Bold)
    } else {
        cell
    }
}

/// In `color`, when colour is on.
pub fn colored(text: impl ToString, color: Color, style: Style) -> Cell {
    let cell = Cell::new(text);
    if style.color { cell.fg(color) } else { cell }
}

/// A table with a bold header row.
pub fn table_with_header(style: Style, header: &[&str]) -> Table {
    let mut t = table(style);
    t.set_header(header.iter().map(|h| bold(h, style)));
    t
}

/// A two-column key/value table (no header), keys in bold.
pub fn key_value_table(style: Style, rows: Vec<(&str, Cell)>) -> Table {
    let mut t = table(style);
    for (key, value) in rows {
        t.add_row(vec![bold(key, style), value]);
    }
    t
}

/// Colours for the `ok` / `info` / `warning` / `error` vocabulary of health checks.
pub fn severity_color(severity: &str) -> Option<Color> {
    match severity {
        "ok" => Some(Color::Green),
        "info" => Some(Color::Cyan),
        "warning" => Some(Color::Yellow),
        "error" => Some(Color::Red),
        _ => None,
    }
}

/// A cell coloured by severity, when colour is on.
pub fn severity_cell(text: impl ToString, severity: &str, style: Style) -> Cell {
    match severity_color(severity) {
        Some(c) => colored(text, c, style),
        None => Cell::new(text),
    }
}

/// Pretty JSON with a trailing newline. Serialising our own report types cannot fail
/// (string keys, no non-finite floats), but a failure is still reported, not panicked.
pub fn to_json<T: Serialize>(value: &T) -> anyhow::Result<String> {
    let mut s = serde_json::to_string_pretty(value)?;
    s.push('\n');
    Ok(s)
}

/// `pg_size_pretty`'s units: bytes, kB, MB, GB, TB (powers of 1024, rounded half up,
/// switching unit at 10240 of the smaller one).
pub fn human_bytes(bytes: i64) -> String {
    let mut value = bytes as f64;
    for unit in ["bytes", "kB", "MB", "GB", "TB"] {
        if value.abs() < 10240.0 || unit == "TB" {
            return format!("{} {unit}", value.round() as i64);
        }
        value /= 1024.0;
    }
    format!("{bytes} bytes")
}

/// Milliseconds as a person reads them: `0.42 ms`, `12.3 ms`, `4.20 s`, `3m 12s`.
pub fn human_ms(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else if ms < 60_000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        let s = (ms / 1000.0).round() as i64;
        format!("{}m {:02}s", s / 60, s % 60)
    }
}

/// A timestamp as the server prints it, without the fraction of a second:
/// `2026-05-01 10:00:00.123456+00` → `2026-05-01 10:00:00+00`.
pub fn short_time(text: &str) -> String {
    match text.find('.') {
        Some(dot) => {
            let rest = &text[dot + 1..];
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            format!("{}{}", &text[..dot], &rest[digits..])
        }
        None => text.to_string(),
    }
}

/// Renders a table followed by a newline.
pub fn table_text(t: &Table) -> String {
    format!("{t}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_rules() {
        assert!(use_color(false, None, true));
        assert!(use_color(false, Some(""), true));
        assert!(!use_color(false, Some("1"), true));
        assert!(!use_color(true, None, true));
        assert!(!use_color(false, None, false));
    }

    #[test]
    fn human_units() {
        assert_eq!(human_bytes(0), "0 bytes");
        assert_eq!(human_bytes(10239), "10239 bytes");
        assert_eq!(human_bytes(352_256), "344 kB");
        assert_eq!(human_bytes(20 * 1024 * 1024), "20 MB");
        assert_eq!(human_ms(0.421), "0.42 ms");
        assert_eq!(human_ms(12.34), "12.3 ms");
        assert_eq!(human_ms(4200.0), "4.20 s");
        assert_eq!(human_ms(192_000.0), "3m 12s");
        assert_eq!(
            short_time("2026-05-01 10:00:00.123456+00"),
            "2026-05-01 10:00:00+00"
        );
        assert_eq!(
            short_time("2026-05-01 10:00:00+02"),
            "2026-05-01 10:00:00+02"
        );
    }

    #[test]
    fn no_colour_means_no_escape_codes() {
        let plain = Style::default();
        let mut t = table_with_header(plain, &["a"]);
        t.add_row(vec![severity_cell("bad", "error", plain)]);
        assert!(!t.to_string().contains('\u{1b}'));

        let coloured = Style {
            color: true,
            ..plain
        };
        let mut t = table_with_header(coloured, &["a"]);
        t.add_row(vec![severity_cell("bad", "error", coloured)]);
        assert!(t.to_string().contains('\u{1b}'));
    }
}
