//! Frames out: `render` draws an `App` and changes nothing. Where each pane goes is a pure
//! function of the terminal size ([`layout`]), tested without drawing.
//!
//! - [`chrome`]: header, view tabs and status bar;
//! - [`activity`]: the TVIEW table and the sparklines of the selected TVIEW;
//! - [`graph`]: the dependency graph;
//! - [`lists`]: backends, lock waits, prepared transactions;
//! - [`overlays`]: help and explain.

mod activity;
mod chrome;
pub mod format;
mod graph;
mod lists;
mod overlays;
mod theme;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};

use crate::app::{App, Mode, View};
pub use format::clock as format_clock;
use theme::Theme;

/// The size from which the activity view shows every pane at once.
pub const DASHBOARD_MIN: (u16, u16) = (140, 40);
/// The size from which it shows the backends, lock waits and prepared transactions under the
/// activity table (the graph keeps its own view).
pub const LISTS_MIN: (u16, u16) = (100, 36);

/// Where each part of the screen goes. Panes not shown are zero-sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Areas {
    pub header: Rect,
    pub tabs: Rect,
    pub activity: Rect,
    /// Sparklines of the selected TVIEW.
    pub trend: Rect,
    pub graph: Rect,
    pub backends: Rect,
    pub lock_waits: Rect,
    pub prepared: Rect,
    pub status: Rect,
}

/// Lays out `view` on `area`. `lock_waits` (rows to show) sizes the lock-wait list under the
/// backends.
pub fn layout(area: Rect, view: View, lock_waits: usize) -> Areas {
    let [header, tabs, body, status] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    let mut areas = Areas {
        header,
        tabs,
        status,
        ..Areas::default()
    };
    let dashboard = area.width >= DASHBOARD_MIN.0 && area.height >= DASHBOARD_MIN.1;
    let lists = area.width >= LISTS_MIN.0 && area.height >= LISTS_MIN.1;
    match view {
        View::Overview if dashboard => {
            let [top, bottom] =
                Layout::vertical([Constraint::Fill(1), Constraint::Length(12)]).areas(body);
            let [left, graph] =
                Layout::horizontal([Constraint::Percentage(50), Constraint::Fill(1)]).areas(top);
            let [activity, trend] =
                Layout::vertical([Constraint::Fill(1), Constraint::Length(6)]).areas(left);
            let (backends, lock_waits, prepared) = lists_areas(bottom);
            areas.activity = activity;
            areas.trend = trend;
            areas.graph = graph;
            areas.backends = backends;
            areas.lock_waits = lock_waits;
            areas.prepared = prepared;
        }
        View::Overview if lists => {
            let [activity, trend, bottom] = Layout::vertical([
                Constraint::Fill(1),
                Constraint::Length(6),
                Constraint::Length(10),
            ])
            .areas(body);
            let (backends, lock_waits, prepared) = lists_areas(bottom);
            areas.activity = activity;
            areas.trend = trend;
            areas.backends = backends;
            areas.lock_waits = lock_waits;
            areas.prepared = prepared;
        }
        View::Overview => {
            let [activity, trend] = Layout::vertical([
                Constraint::Fill(1),
                Constraint::Length(trend_height(body.height)),
            ])
            .areas(body);
            areas.activity = activity;
            areas.trend = trend;
        }
        View::Graph => areas.graph = body,
        View::Backends => {
            // The lock waits take what they need (a border, a header, their rows), up to half.
            let wanted = (lock_waits.max(1) as u16).saturating_add(3);
            let [backends, lock_waits] = Layout::vertical([
                Constraint::Fill(1),
                Constraint::Length(wanted.min(body.height / 2)),
            ])
            .areas(body);
            areas.backends = backends;
            areas.lock_waits = lock_waits;
        }
        View::Prepared => areas.prepared = body,
    }
    areas
}

/// The live lists under the activity table: backends on the left, lock waits over prepared
/// transactions on the right (there are seldom many of either, and their text is long).
fn lists_areas(area: Rect) -> (Rect, Rect, Rect) {
    let [backends, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Fill(1)]).areas(area);
    let [lock_waits, prepared] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Fill(1)]).areas(right);
    (backends, lock_waits, prepared)
}

/// The trend strip under the activity table takes what the table can spare: nothing on very
/// short terminals (the table keeps at least ten rows), more on tall ones.
pub fn trend_height(body_height: u16) -> u16 {
    match body_height {
        0..16 => 0,
        16..30 => 5,
        _ => 8,
    }
}

pub fn render(frame: &mut Frame, app: &App) {
    let theme = Theme::new(app.config.no_color);
    let lock_waits = app.snapshot.as_ref().map_or(0, |s| s.lock_waits.len());
    let areas = layout(frame.area(), app.view, lock_waits);
    chrome::header(frame, app, &theme, areas.header);
    chrome::tabs(frame, app, &theme, areas.tabs);
    if !areas.activity.is_empty() {
        activity::table(frame, app, &theme, areas.activity);
    }
    if !areas.trend.is_empty() {
        activity::trend(frame, app, &theme, areas.trend);
    }
    if !areas.graph.is_empty() {
        graph::pane(frame, app, &theme, areas.graph);
    }
    if !areas.backends.is_empty() {
        lists::backends(frame, app, &theme, areas.backends);
    }
    if !areas.lock_waits.is_empty() {
        lists::lock_waits(frame, app, &theme, areas.lock_waits);
    }
    if !areas.prepared.is_empty() {
        lists::prepared(frame, app, &theme, areas.prepared);
    }
    chrome::status(frame, app, &theme, areas.status);
    match app.mode {
        Mode::Help => overlays::help(frame, &theme),
        Mode::Explain => overlays::explain(frame, app, &theme),
        Mode::Normal | Mode::Filter => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_80x24_the_activity_view_keeps_a_readable_table() {
        let a = layout(Rect::new(0, 0, 80, 24), View::Overview, 0);
        assert_eq!((a.header.height, a.tabs.y, a.status.y), (3, 3, 23));
        assert_eq!((a.activity.y, a.activity.height), (4, 14));
        assert_eq!(a.trend.height, 5);
        assert!(a.graph.is_empty() && a.backends.is_empty() && a.prepared.is_empty());
    }

    #[test]
    fn large_terminals_show_every_pane_at_once() {
        let a = layout(Rect::new(0, 0, 160, 48), View::Overview, 0);
        for (name, rect) in [
            ("activity", a.activity),
            ("trend", a.trend),
            ("graph", a.graph),
            ("backends", a.backends),
            ("lock waits", a.lock_waits),
            ("prepared", a.prepared),
        ] {
            assert!(rect.width >= 40 && rect.height >= 6, "{name}: {rect:?}");
        }
        assert_eq!(a.activity.width + a.graph.width, 160);
        // 120×40: the lists under the table, the graph in its own view.
        let a = layout(Rect::new(0, 0, 120, 40), View::Overview, 0);
        assert!(a.graph.is_empty());
        assert_eq!(
            (a.activity.height, a.trend.height, a.backends.height),
            (19, 6, 10)
        );
        // The other views zoom into their pane.
        let g = layout(Rect::new(0, 0, 160, 48), View::Graph, 0);
        assert_eq!((g.graph.width, g.graph.height), (160, 43));
    }

    #[test]
    fn lock_waits_take_what_they_need_up_to_half() {
        let few = layout(Rect::new(0, 0, 80, 24), View::Backends, 2);
        assert_eq!(few.lock_waits.height, 5);
        let many = layout(Rect::new(0, 0, 80, 24), View::Backends, 50);
        assert_eq!(many.lock_waits.height, 9);
        assert_eq!(many.backends.height, 10);
    }

    #[test]
    fn small_terminals_drop_the_trend_first() {
        let a = layout(Rect::new(0, 0, 80, 18), View::Overview, 0);
        assert_eq!((a.trend.height, a.activity.height), (0, 13));
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
}
