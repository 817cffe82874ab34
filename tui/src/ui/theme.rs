//! Styles, or their absence: with `no_color` (`NO_COLOR`, `--no-color`) only modifiers remain —
//! bold, reverse video, underline, dim — so everything highlighted still stands out.

use ratatui::style::{Color, Modifier, Style};

pub struct Theme {
    pub title: Style,
    pub label: Style,
    pub table_header: Style,
    /// The cursor row.
    pub selected: Style,
    /// The current view's tab.
    pub tab: Style,
    /// Something moved in the last interval.
    pub active: Style,
    /// Nothing happened: idle rows.
    pub idle: Style,
    /// Worth a look: a reset, a wait over a second, a prepared transaction over a minute.
    pub warning: Style,
    /// Act on it: errors, the connection lost, old prepared transactions, long waits.
    pub alert: Style,
    /// In the graph: what the selection reads, and its cascade.
    pub input: Style,
    pub reader: Style,
    pub sparkline: Style,
    pub key: Style,
}

impl Theme {
    pub fn new(no_color: bool) -> Self {
        let plain = Style::new();
        let bold = plain.add_modifier(Modifier::BOLD);
        let colour = |style: Style, color: Color| if no_color { style } else { style.fg(color) };
        Self {
            title: colour(bold, Color::Cyan),
            label: colour(plain, Color::Cyan),
            table_header: colour(bold, Color::Cyan),
            selected: plain.add_modifier(Modifier::REVERSED),
            tab: bold.add_modifier(Modifier::REVERSED),
            active: colour(if no_color { bold } else { plain }, Color::Green),
            idle: if no_color {
                plain.add_modifier(Modifier::DIM)
            } else {
                plain.fg(Color::DarkGray)
            },
            warning: colour(bold, Color::Yellow),
            alert: if no_color {
                bold.add_modifier(Modifier::UNDERLINED)
            } else {
                bold.fg(Color::Red)
            },
            input: colour(bold, Color::Cyan),
            reader: colour(bold, Color::Magenta),
            sparkline: colour(plain, Color::Green),
            key: colour(bold, Color::Cyan),
        }
    }
}
