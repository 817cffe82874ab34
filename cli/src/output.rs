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
    /// Human-readable tables.
    #[default]
    Table,
    /// One JSON document with stable snake_case field names, for scripts.
    Json,
}

/// The output flags, global to every subcommand.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
#[command(next_help_heading = "Output options")]
pub struct OutputArgs {
    /// Output format
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
