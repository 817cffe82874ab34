//! The event loop end to end on a `TestBackend`: replayed snapshots, scripted keys, virtual time.

use std::io;
use std::time::Duration;

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use futures_util::stream::{self, Stream};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tviews_tui::source::read_jsonl;
use tviews_tui::{Config, ReplaySource, drive};

/// Each key after its delay; the delays run on tokio's paused clock, so the test takes no time
/// and the poller's ticks interleave with the keys the same way on every run.
fn scripted_keys(script: Vec<(Duration, char)>) -> impl Stream<Item = io::Result<Event>> + Unpin {
    Box::pin(stream::unfold(
        script.into_iter(),
        |mut script| async move {
            let (delay, key) = script.next()?;
            tokio::time::sleep(delay).await;
            let event = Event::Key(KeyEvent::new(KeyCode::Char(key), KeyModifiers::NONE));
            Some((Ok(event), script))
        },
    ))
}

#[tokio::test(start_paused = true)]
async fn replays_the_fixture_and_quits_on_q() {
    let fixture = include_str!("fixtures/three_ticks.jsonl");
    let source = ReplaySource::new(read_jsonl(fixture.as_bytes()).expect("fixture parses"));
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("test terminal");
    let config = Config {
        server: "replay".into(),
        interval: Duration::from_secs(1),
        no_color: true,
    };
    // Polls at 0 s, 1 s, 2 s use up the fixture; the poll at 3 s reports the end. 'p' at 3.5 s
    // pauses, then 'q' quits.
    let keys = scripted_keys(vec![
        (Duration::from_millis(3500), 'p'),
        (Duration::from_secs(5), 'q'),
    ]);
    tokio::time::timeout(
        Duration::from_secs(60),
        drive(&mut terminal, source, config, keys),
    )
    .await
    .expect("the loop quits on q")
    .expect("the loop ends without error");

    let screen = terminal.backend().to_string();
    assert!(
        screen.contains("every 1s · 22:13:24 UTC PAUSED"),
        "{screen}"
    );
    assert!(
        screen.contains("error: end of replay after 3 snapshots"),
        "{screen}"
    );
    assert!(screen.contains("app.tv_order"), "{screen}");
}
