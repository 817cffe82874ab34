//! The dependency graph pane: one column per layer (tables, then TVIEWs by cascade depth), data
//! flowing left to right. The selected node is in reverse video; what it reads and its cascade
//! are marked (`◆` one edge away, `◇` further) and coloured (inputs cyan, cascade magenta);
//! every node shows its activity over the last interval (keys/s for a TVIEW, changed rows
//! captured per second for a table). The two lines under the columns spell out the selection's
//! edges, so nothing depends on colour.

use std::collections::BTreeMap;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

use super::format;
use super::theme::Theme;
use crate::app::App;
use crate::graph::Relation;
use crate::rates::Delta;

/// Narrower columns than this scroll sideways instead.
const MIN_COLUMN: u16 = 16;
/// From this column width on, nodes show their rate as a number (below, by colour only).
const NUMBER_FROM: u16 = 20;

pub fn pane(frame: &mut Frame, app: &App, theme: &Theme, area: Rect) {
    let block = Block::bordered().title(" dependency graph: tables → TVIEWs by cascade depth ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let graph = &app.graph;
    if graph.layers.iter().all(Vec::is_empty) {
        let text = if app.snapshot.is_some() {
            "no TVIEW in this database"
        } else {
            "waiting for the first snapshot…"
        };
        frame.render_widget(Paragraph::new(text).style(theme.idle), inner);
        return;
    }
    let [columns_area, focus_area] =
        Layout::vertical([Constraint::Fill(1), Constraint::Length(3)]).areas(inner);
    let selected = app.selected_node();
    let relations = graph.relations(selected);
    let activity = activity(app);
    let selected_layer = selected.and_then(|s| graph.position(s)).map(|(l, _)| l);
    let (first, shown) = visible_layers(
        graph.layers.len(),
        columns_area.width,
        selected_layer.unwrap_or(0),
    );
    let wanted: Vec<u16> = graph.layers[first..first + shown]
        .iter()
        .map(|nodes| {
            let longest = nodes.iter().map(|n| n.chars().count()).max().unwrap_or(0);
            // mark, name, a gap, the rate, a gap to the next column
            (2 + longest + 1 + 7 + 1).min(usize::from(u16::MAX)) as u16
        })
        .collect();
    let widths = share(&wanted, columns_area.width);
    let columns =
        Layout::horizontal(widths.iter().map(|w| Constraint::Length(*w))).split(columns_area);
    for (offset, column) in columns.iter().enumerate() {
        let layer = first + offset;
        let nodes = &graph.layers[layer];
        let mut lines = vec![layer_title(
            layer,
            nodes.len(),
            first,
            shown,
            graph.layers.len(),
            theme,
        )];
        let rows = usize::from(column.height.saturating_sub(1));
        let focus = nodes
            .iter()
            .position(|n| Some(n.as_str()) == selected)
            .or_else(|| nodes.iter().position(|n| relations[n].is_related()))
            .unwrap_or(0);
        let window = window(nodes.len(), rows, focus);
        if window.start > 0 {
            lines.push(Line::styled(
                format!("  ↑ {} more", window.start),
                theme.idle,
            ));
        }
        for node in &nodes[window.start..window.end] {
            lines.push(node_line(
                node,
                relations[node],
                activity.get(node.as_str()).copied().unwrap_or_default(),
                app.passes_filter(node),
                column.width.saturating_sub(1),
                theme,
            ));
        }
        if window.end < nodes.len() {
            lines.push(Line::styled(
                format!("  ↓ {} more", nodes.len() - window.end),
                theme.idle,
            ));
        }
        frame.render_widget(Paragraph::new(lines), *column);
    }
    frame.render_widget(
        Paragraph::new(focus_lines(app, selected, theme)).wrap(Wrap { trim: false }),
        focus_area,
    );
}

/// Splits `width` among columns that want `wanted` each: every column gets what it wants if
/// all fit; otherwise the narrow ones get theirs and the rest share what is left equally
/// (water filling), so a column of short table names does not take space from long ones.
pub fn share(wanted: &[u16], width: u16) -> Vec<u16> {
    let mut out = vec![0u16; wanted.len()];
    let mut left = width;
    let mut open: Vec<usize> = (0..wanted.len()).collect();
    while !open.is_empty() {
        let fair = left / open.len() as u16;
        let (fits, rest): (Vec<usize>, Vec<usize>) = open.iter().partition(|i| wanted[**i] <= fair);
        if fits.is_empty() {
            for (n, i) in rest.iter().enumerate() {
                // The remainder goes to the first columns, one each.
                let extra = u16::from((n as u16) < left % rest.len() as u16);
                out[*i] = fair + extra;
            }
            break;
        }
        for i in fits {
            out[i] = wanted[i];
            left -= wanted[i];
        }
        open = rest;
    }
    // Columns that all fit leave room: spread it evenly, so that the layers stay apart.
    let spare = width.saturating_sub(out.iter().sum());
    let count = out.len() as u16;
    for (n, w) in out.iter_mut().enumerate() {
        *w += spare / count.max(1) + u16::from((n as u16) < spare % count.max(1));
    }
    out
}

/// keys/s of each TVIEW, rows captured/s of each source table.
fn activity(app: &App) -> BTreeMap<&str, Delta> {
    let mut out: BTreeMap<&str, Delta> = app
        .derived
        .sources
        .iter()
        .map(|s| (s.name.as_str(), s.rows_per_s))
        .collect();
    for t in &app.derived.tviews {
        out.insert(t.name.as_str(), t.keys_per_s);
    }
    out
}

/// Which layers fit: all of them, or a window of columns at least [`MIN_COLUMN`] wide that
/// holds the selected layer. Returns (first layer, number shown).
pub fn visible_layers(layers: usize, width: u16, selected_layer: usize) -> (usize, usize) {
    let fit = usize::from((width / MIN_COLUMN).max(1));
    if layers <= fit {
        return (0, layers.max(1));
    }
    let first = selected_layer.saturating_sub(fit - 1).min(layers - fit);
    (first, fit)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: usize,
    pub end: usize,
}

/// The nodes of a column that fit `rows` lines, keeping `focus` in view; the lines saying how
/// many more are above and below take a line each.
pub fn window(len: usize, rows: usize, focus: usize) -> Window {
    if len <= rows {
        return Window { start: 0, end: len };
    }
    let room = rows.saturating_sub(2).max(1);
    let start = focus.saturating_sub(room / 2).min(len - room);
    // At either end the marker's line is not needed: give it to a node.
    let (start, end) = if start == 0 {
        (0, room + 1)
    } else if start + room == len {
        (start - 1, len)
    } else {
        (start, start + room)
    };
    Window {
        start,
        end: end.min(len),
    }
}

fn layer_title(
    layer: usize,
    count: usize,
    first: usize,
    shown: usize,
    total: usize,
    theme: &Theme,
) -> Line<'static> {
    let name = if layer == 0 {
        format!("tables {count}")
    } else {
        format!("depth {} · {count}", layer - 1)
    };
    let before = if layer == first && first > 0 {
        format!("‹{first} ")
    } else {
        String::new()
    };
    let after = if layer + 1 == first + shown && first + shown < total {
        format!(" {}›", total - first - shown)
    } else {
        String::new()
    };
    Line::styled(format!("{before}{name}{after}"), theme.table_header)
}

fn node_line(
    name: &str,
    relation: Relation,
    rate: Delta,
    matches: bool,
    width: u16,
    theme: &Theme,
) -> Line<'static> {
    let (mark, style) = match relation {
        Relation::Selected => ('●', theme.selected),
        Relation::DirectInput => ('◆', theme.input),
        Relation::Input => ('◇', theme.input),
        Relation::DirectReader => ('◆', theme.reader),
        Relation::Reader => ('◇', theme.reader),
        Relation::Unrelated if !matches => (' ', theme.idle),
        Relation::Unrelated if rate.is_positive() => (' ', theme.active),
        Relation::Unrelated => (' ', Style::new()),
    };
    let number = if width >= NUMBER_FROM {
        match rate {
            Delta::Value(v) if v > 0.0 => format::number(v),
            Delta::Value(_) => "·".to_string(),
            Delta::Reset => "reset".to_string(),
            Delta::NotAvailable => String::new(),
        }
    } else {
        String::new()
    };
    let name_width = usize::from(width)
        .saturating_sub(2)
        .saturating_sub(if number.is_empty() { 0 } else { 7 });
    let name = format::fit(name, name_width);
    let mut spans = vec![Span::styled(format!("{mark} {name}"), style)];
    if !number.is_empty() {
        let pad = name_width - name.chars().count();
        let number_style = if rate.is_positive() {
            theme.active
        } else {
            theme.idle
        };
        spans.push(Span::raw(" ".repeat(pad)));
        spans.push(Span::styled(format!("{number:>7}"), number_style));
    }
    Line::from(spans)
}

fn list(names: &[String], limit: usize) -> String {
    if names.is_empty() {
        return "nothing".to_string();
    }
    let mut shown: Vec<&str> = names.iter().take(limit).map(String::as_str).collect();
    let more = names.len().saturating_sub(limit);
    let more = (more > 0).then(|| format!("and {more} more"));
    if let Some(more) = &more {
        shown.push(more);
    }
    shown.join(", ")
}

/// Two lines spelling out the selection's edges.
fn focus_lines(app: &App, selected: Option<&str>, theme: &Theme) -> Vec<Line<'static>> {
    let Some(name) = selected else {
        return vec![Line::styled(
            "↑↓ select in a layer, ←→ follow the edges to the next layer",
            theme.idle,
        )];
    };
    let graph = &app.graph;
    let is_tview = app.derived.tviews.iter().any(|t| t.name == name);
    let label = |text: &str| Span::styled(text.to_string(), theme.label);
    let mut lines = Vec::new();
    if is_tview {
        let inputs: Vec<String> = graph
            .inputs(name)
            .iter()
            .map(|(input, full)| {
                if *full {
                    format!("{input} (any change: full rebuild)")
                } else {
                    input.clone()
                }
            })
            .collect();
        lines.push(Line::from(vec![
            Span::styled(name.to_string(), theme.input),
            label(" reads "),
            Span::raw(list(&inputs, 8)),
        ]));
        let cascade = graph.cascade(name);
        lines.push(Line::from(vec![
            label("cascade: "),
            Span::styled(
                if cascade.is_empty() {
                    "none (no TVIEW reads it)".to_string()
                } else {
                    cascade.join(" → ")
                },
                theme.reader,
            ),
        ]));
    } else {
        lines.push(Line::from(vec![
            Span::styled(name.to_string(), theme.input),
            label(" (table) read by "),
            Span::raw(list(graph.readers(name), 8)),
        ]));
        lines.push(Line::from(vec![
            label("a change reaches, in refresh order: "),
            Span::styled(list(&graph.cascade(name), 12), theme.reader),
        ]));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_scroll_sideways_to_keep_the_selection() {
        assert_eq!(visible_layers(4, 78, 0), (0, 4));
        assert_eq!(visible_layers(7, 78, 0), (0, 4));
        assert_eq!(visible_layers(7, 78, 6), (3, 4));
        assert_eq!(visible_layers(7, 78, 4), (1, 4));
        assert_eq!(visible_layers(1, 10, 0), (0, 1));
    }

    #[test]
    fn columns_share_the_width_by_what_they_need() {
        assert_eq!(share(&[10, 20, 30], 100), [24, 33, 43]);
        assert_eq!(share(&[17, 46, 50, 41], 78), [17, 21, 20, 20]);
        assert_eq!(share(&[40, 40], 50), [25, 25]);
        assert_eq!(share(&[], 50), Vec::<u16>::new());
    }

    #[test]
    fn columns_keep_the_focus_in_view() {
        assert_eq!(window(5, 10, 3), Window { start: 0, end: 5 });
        // 20 nodes in 10 lines: 9 nodes and "↓ 11 more" at the top end.
        assert_eq!(window(20, 10, 0), Window { start: 0, end: 9 });
        // In the middle: a marker line either side, 8 nodes.
        assert_eq!(window(20, 10, 10), Window { start: 6, end: 14 });
        // At the bottom end: "↑ 11 more" and the last 9.
        assert_eq!(window(20, 10, 19), Window { start: 11, end: 20 });
    }
}
