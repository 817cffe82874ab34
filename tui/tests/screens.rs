//! Snapshot tests of whole screens, driven by the replay fixture through the pure `update`.
//! Every value comes from the fixture's server clock, so nothing needs filtering.

use std::fs::File;
use std::io::BufReader;
use std::time::Duration;

use insta::assert_snapshot;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tviews_tui::source::read_jsonl;
use tviews_tui::{Action, App, Config, Snapshot, ui, update};

fn fixture() -> Vec<Snapshot> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/three_ticks.jsonl"
    );
    let file = File::open(path).expect("fixture exists");
    read_jsonl(BufReader::new(file)).expect("fixture parses")
}

/// The app after the first `ticks` snapshots of the fixture, then `actions`.
fn app_after(ticks: usize, actions: impl IntoIterator<Item = Action>) -> App {
    let mut app = App::new(Config {
        server: "localhost:5432/shop".into(),
        interval: Duration::from_secs(2),
        no_color: false,
    });
    for snapshot in fixture().into_iter().take(ticks) {
        update(&mut app, Action::NewSnapshot(snapshot));
    }
    for action in actions {
        update(&mut app, action);
    }
    app
}

fn screen(app: &App, width: u16, height: u16) -> TestBackend {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal.draw(|frame| ui::render(frame, app)).expect("draw");
    terminal.backend().clone()
}

#[test]
fn main_screen_80x24() {
    assert_snapshot!(screen(&app_after(3, []), 80, 24));
}

#[test]
fn main_screen_120x40() {
    let app = app_after(3, [Action::SelectNext]);
    assert_snapshot!(screen(&app, 120, 40));
}

#[test]
fn first_tick_shows_not_available() {
    assert_snapshot!(screen(&app_after(1, []), 80, 24));
}

#[test]
fn help_overlay() {
    assert_snapshot!(screen(&app_after(3, [Action::Help]), 80, 24));
}

#[test]
fn detail_of_the_selected_tview() {
    assert_snapshot!(screen(&app_after(3, [Action::OpenSelected]), 80, 24));
}

#[test]
fn filter_sort_pause_and_error() {
    let mut actions = vec![Action::StartFilter];
    actions.extend("APP.".chars().map(Action::FilterInput));
    actions.extend([
        Action::FilterDone,
        Action::CycleSort,
        Action::Pause,
        Action::SourceError("connection refused".into()),
    ]);
    assert_snapshot!(screen(&app_after(3, actions), 80, 24));
}

#[test]
fn no_color_leaves_only_modifiers() {
    let mut app = app_after(3, []);
    app.config.no_color = true;
    let backend = screen(&app, 80, 24);
    let coloured = backend
        .buffer()
        .content()
        .iter()
        .filter(|cell| cell.fg != ratatui::style::Color::Reset)
        .count();
    assert_eq!(coloured, 0);
    app.config.no_color = false;
    assert!(
        screen(&app, 80, 24)
            .buffer()
            .content()
            .iter()
            .any(|cell| cell.fg != ratatui::style::Color::Reset)
    );
}
