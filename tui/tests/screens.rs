//! Snapshot tests of every pane and overlay, at 80×24 and 160×48, driven by replaying
//! recordings of real clusters (`fixtures/`, recorded by `cli/tests/top_live.rs`) through the
//! pure `update`. Every number on screen comes from the recordings' server clock, so nothing
//! needs filtering.
//!
//! - `demo.jsonl`: the demo read model (3 TVIEWs) under `tviews workload`: live queues, a
//!   prepared transaction, a writer waiting for its value locks;
//! - `many.jsonl`: 32 TVIEWs five layers deep under writers of every table, a prepared
//!   transaction, `pg_tviews_stats_reset()` before snapshot 8 and a server restart (4 s down)
//!   before snapshot 14.

use std::time::Duration;

use insta::assert_snapshot;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::style::{Color, Modifier};
use tviews_tui::app::View;
use tviews_tui::source::read_jsonl;
use tviews_tui::{Action, App, Config, Snapshot, snapshot, ui, update};

const DEMO: &str = include_str!("fixtures/demo.jsonl");
const MANY: &str = include_str!("fixtures/many.jsonl");
const EXPLAIN: &str = include_str!("fixtures/explain_tv_product_verbose.txt");

const SMALL: (u16, u16) = (80, 24);
const LARGE: (u16, u16) = (160, 48);

fn fixture(text: &str) -> Vec<Snapshot> {
    read_jsonl(text.as_bytes())
        .expect("fixture parses")
        .iter()
        .map(|line| snapshot::parse(line).expect("fixture parses"))
        .collect()
}

fn config() -> Config {
    Config {
        server: "postgres@/var/run/postgresql:5432/shop".into(),
        interval: Duration::from_secs(1),
        ..Config::default()
    }
}

/// The app after the first `ticks` snapshots of a fixture, then `actions`.
fn app_after(text: &str, ticks: usize, actions: impl IntoIterator<Item = Action>) -> App {
    let mut app = App::new(config());
    for snapshot in fixture(text).into_iter().take(ticks) {
        update(&mut app, Action::NewSnapshot(Box::new(snapshot)));
    }
    for action in actions {
        update(&mut app, action);
    }
    app
}

fn draw(app: &App, (width, height): (u16, u16)) -> TestBackend {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
    terminal.draw(|frame| ui::render(frame, app)).expect("draw");
    terminal.backend().clone()
}

fn screen(app: &App, size: (u16, u16)) -> String {
    draw(app, size).to_string()
}

/// No number on screen is negative: rates after a reset or a restart show `reset`.
fn assert_no_negative_numbers(screen: &str) {
    let chars: Vec<char> = screen.chars().collect();
    for pair in chars.windows(2) {
        assert!(
            !(pair[0] == '-' && pair[1].is_ascii_digit()),
            "a negative number on screen:\n{screen}"
        );
    }
}

#[test]
fn activity_80x24() {
    assert_snapshot!(screen(&app_after(DEMO, 12, []), SMALL));
}

#[test]
fn dashboard_160x48() {
    assert_snapshot!(screen(&app_after(DEMO, 12, []), LARGE));
}

#[test]
fn activity_of_32_tviews_80x24() {
    assert_snapshot!(screen(&app_after(MANY, 6, []), SMALL));
}

#[test]
fn dashboard_of_32_tviews_160x48() {
    let app = app_after(MANY, 7, [Action::Down, Action::Down]);
    assert_snapshot!(screen(&app, LARGE));
}

#[test]
fn first_snapshot_shows_not_available() {
    let screen = screen(&app_after(DEMO, 1, []), SMALL);
    assert!(screen.contains("n/a"), "{screen}");
    assert_snapshot!(screen);
}

#[test]
fn graph_80x24() {
    let app = app_after(DEMO, 12, [Action::ShowView(View::Graph)]);
    assert_snapshot!(screen(&app, SMALL));
}

/// 32 TVIEWs in an 80×24 terminal: five layers, the selection's relatives marked, the
/// columns scrolled to keep it in view.
#[test]
fn graph_of_32_tviews_80x24() {
    let mut app = app_after(MANY, 7, [Action::ShowView(View::Graph)]);
    app.selected = Some("tv_project_board".into());
    assert_snapshot!(screen(&app, SMALL));
}

#[test]
fn graph_of_32_tviews_160x48() {
    let mut app = app_after(MANY, 7, [Action::ShowView(View::Graph)]);
    app.selected = Some("tv_issue".into());
    assert_snapshot!(screen(&app, LARGE));
}

/// A table selected in the graph (← from a depth-0 TVIEW): what a change of it reaches.
#[test]
fn graph_from_a_table_80x24() {
    let mut app = app_after(MANY, 7, [Action::ShowView(View::Graph)]);
    app.selected = Some("tb_settings".into());
    assert_snapshot!(screen(&app, SMALL));
}

#[test]
fn backends_and_lock_waits_80x24() {
    let app = app_after(MANY, 8, [Action::ShowView(View::Backends)]);
    assert_snapshot!(screen(&app, SMALL));
}

#[test]
fn backends_and_lock_waits_160x48() {
    let app = app_after(DEMO, 15, [Action::ShowView(View::Backends), Action::Down]);
    assert_snapshot!(screen(&app, LARGE));
}

#[test]
fn prepared_80x24() {
    let app = app_after(DEMO, 12, [Action::ShowView(View::Prepared)]);
    assert_snapshot!(screen(&app, SMALL));
}

#[test]
fn prepared_160x48() {
    let app = app_after(MANY, 20, [Action::ShowView(View::Prepared)]);
    assert_snapshot!(screen(&app, LARGE));
}

/// A prepared transaction older than the warning age is in the alert style.
#[test]
fn old_prepared_transactions_are_highlighted() {
    let mut app = app_after(MANY, 20, [Action::ShowView(View::Prepared)]);
    app.config.prepared_warning = Duration::from_secs(10);
    let backend = draw(&app, SMALL);
    let buffer = backend.buffer();
    let row = (0..SMALL.1)
        .find(|y| {
            (0..SMALL.0)
                .map(|x| buffer[(x, *y)].symbol())
                .collect::<String>()
                .contains("billing-sync-17")
        })
        .expect("the prepared transaction is listed");
    let cell = &buffer[(3, row)];
    assert_eq!(cell.fg, Color::Red);
    assert!(cell.modifier.contains(Modifier::BOLD));
    // Younger than the warning: not alerted.
    app.config.prepared_warning = Duration::from_secs(3600);
    let backend = draw(&app, SMALL);
    assert_ne!(backend.buffer()[(3, row)].fg, Color::Red);
}

#[test]
fn help_80x24() {
    assert_snapshot!(screen(&app_after(DEMO, 12, [Action::Help]), SMALL));
}

#[test]
fn help_160x48() {
    assert_snapshot!(screen(&app_after(DEMO, 12, [Action::Help]), LARGE));
}

fn explained(scroll: usize, size: (u16, u16)) -> App {
    let mut actions = vec![
        Action::Open,
        Action::ExplainLoaded {
            tview: "tv_product".into(),
            verbose: false,
            result: Ok(EXPLAIN.into()),
        },
    ];
    actions.extend(std::iter::repeat_n(Action::Down, scroll));
    let mut app = app_after(DEMO, 12, [Action::Resize(size.0, size.1)]);
    app.selected = Some("tv_product".into());
    for action in actions {
        update(&mut app, action);
    }
    app
}

#[test]
fn explain_80x24() {
    assert_snapshot!(screen(&explained(0, SMALL), SMALL));
}

/// On a short terminal the explain scrolls, and stops with its last line at the bottom.
#[test]
fn explain_scrolled_80x16() {
    let screen = screen(&explained(12, (80, 16)), (80, 16));
    assert!(screen.contains("lines 9-20 of 20"), "{screen}");
    assert_snapshot!(screen);
}

#[test]
fn explain_160x48() {
    assert_snapshot!(screen(&explained(0, LARGE), LARGE));
}

#[test]
fn explain_in_a_replay_says_it_needs_a_server() {
    let mut app = app_after(DEMO, 12, [Action::Open]);
    let tview = app.explain.as_ref().expect("explain open").tview.clone();
    update(
        &mut app,
        Action::ExplainLoaded {
            tview,
            verbose: false,
            result: Err("explain needs a live server: this is a replay".into()),
        },
    );
    let screen = screen(&app, SMALL);
    assert!(screen.contains("explain needs a live server"), "{screen}");
}

/// `pg_tviews_stats_reset()` between snapshots 7 and 8: every rate of that interval is a
/// reset, the status bar says when, and the next interval has rates again.
#[test]
fn a_stats_reset_shows_as_a_reset() {
    let app = app_after(MANY, 9, []);
    let at_reset = screen(&app, SMALL);
    assert_no_negative_numbers(&at_reset);
    assert!(at_reset.contains("reset"), "{at_reset}");
    assert!(at_reset.contains("statistics reset at"), "{at_reset}");
    assert_snapshot!(at_reset);
    let after = screen(&app_after(MANY, 10, []), SMALL);
    assert_no_negative_numbers(&after);
    let table_rows = after
        .lines()
        .filter(|l| l.contains("│▸") || l.contains("│  "));
    assert!(
        table_rows.clone().all(|l| !l.contains("reset")),
        "rates again one snapshot later:\n{after}"
    );
}

/// The server goes away after snapshot 13: the last screen stays, the status bar says
/// "reconnecting…"; it comes back 4 s later with new statistics: a reset, and a notice.
#[test]
fn a_server_restart_keeps_the_screen_and_says_so() {
    let mut app = app_after(MANY, 14, []);
    for attempt in 1..=3 {
        update(
            &mut app,
            Action::Disconnected {
                message: "error connecting to server: No such file or directory (os error 2)"
                    .into(),
                attempt,
                retry_in: Duration::from_secs(u64::from(attempt)),
            },
        );
    }
    let down = screen(&app, SMALL);
    assert!(down.contains("reconnecting… (server restarted?)"), "{down}");
    assert!(
        down.contains("tv_issue"),
        "the last snapshot stays on screen:\n{down}"
    );
    assert_snapshot!("a_server_restart_down", down);
    let snapshots = fixture(MANY);
    update(
        &mut app,
        Action::NewSnapshot(Box::new(snapshots[14].clone())),
    );
    let back = screen(&app, SMALL);
    assert_no_negative_numbers(&back);
    assert!(
        back.contains("reconnected after 4s; statistics restarted"),
        "{back}"
    );
    assert_snapshot!("a_server_restart_back", back);
}

#[test]
fn filter_and_sort_80x24() {
    let mut actions = vec![Action::StartFilter];
    actions.extend("issue".chars().map(Action::FilterInput));
    actions.extend([Action::FilterDone, Action::NextSort, Action::NextSort]);
    assert_snapshot!(screen(&app_after(MANY, 12, actions), SMALL));
}

#[test]
fn filter_prompt_paused_and_server_error_80x24() {
    let mut actions = vec![
        Action::Pause,
        Action::SourceFailed(
            "ERROR:  permission denied for function pg_tviews_snapshot\nSQLSTATE: 42501".into(),
        ),
        Action::StartFilter,
    ];
    actions.extend("tv_rev".chars().map(Action::FilterInput));
    assert_snapshot!(screen(&app_after(DEMO, 12, actions), SMALL));
}

#[test]
fn end_of_replay_80x24() {
    let app = app_after(DEMO, 30, [Action::ReplayEnded(30)]);
    let screen = screen(&app, SMALL);
    assert!(
        screen.contains("end of replay: 30 snapshots shown"),
        "{screen}"
    );
}

/// Without `shared_preload_libraries` the header says statistics are off.
#[test]
fn statistics_off_80x24() {
    let mut snap = fixture(DEMO).remove(0);
    snap.preloaded = false;
    snap.stats_since = 0.0;
    snap.queues.clear();
    snap.lock_waits.clear();
    for t in &mut snap.tviews {
        *t = tviews_tui::snapshot::TviewStats {
            name: t.name.clone(),
            rows: t.rows,
            ..Default::default()
        };
    }
    let mut app = App::new(config());
    update(&mut app, Action::NewSnapshot(Box::new(snap)));
    update(&mut app, Action::ShowView(View::Backends));
    let screen = screen(&app, SMALL);
    assert!(screen.contains("statistics are off"), "{screen}");
    assert!(
        screen.contains("needs shared_preload_libraries"),
        "{screen}"
    );
}

#[test]
fn no_color_leaves_only_modifiers() {
    for view in View::ALL {
        let mut app = app_after(MANY, 8, [Action::ShowView(view), Action::Down]);
        app.config.no_color = true;
        let backend = draw(&app, LARGE);
        let cells = backend.buffer().content();
        assert!(
            cells
                .iter()
                .all(|c| c.fg == Color::Reset && c.bg == Color::Reset),
            "{view:?}: a colour with NO_COLOR"
        );
        assert!(
            cells
                .iter()
                .any(|c| c.modifier.contains(Modifier::REVERSED)),
            "{view:?}: the selection is in reverse video"
        );
        assert!(
            cells.iter().any(|c| c.modifier.contains(Modifier::BOLD)),
            "{view:?}: highlights are bold"
        );
        app.config.no_color = false;
        assert!(
            draw(&app, LARGE)
                .buffer()
                .content()
                .iter()
                .any(|c| c.fg != Color::Reset),
            "{view:?}: colours without NO_COLOR"
        );
    }
}

/// Every screen at every size from 40×12 to 200×60 draws without panicking.
#[test]
fn every_size_draws() {
    let apps = [
        app_after(MANY, 9, []),
        app_after(MANY, 9, [Action::ShowView(View::Graph)]),
        app_after(DEMO, 9, [Action::ShowView(View::Backends)]),
        app_after(DEMO, 9, [Action::ShowView(View::Prepared)]),
        app_after(DEMO, 9, [Action::Help]),
        explained(3, SMALL),
    ];
    for app in &apps {
        for width in [20, 40, 60, 80, 100, 120, 140, 160, 200] {
            for height in [5, 12, 20, 24, 36, 40, 48, 60] {
                draw(app, (width, height));
            }
        }
    }
}
