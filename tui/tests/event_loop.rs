//! The event loop end to end on a `TestBackend`: scripted sources and keys on tokio's paused
//! clock, so every run interleaves polls and keys the same way and takes no time.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use futures_util::stream::{self, Stream};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokio::time::Instant;
use tviews_tui::source::read_jsonl;
use tviews_tui::{Config, FetchError, ReplaySource, SnapshotSource, drive};

const DEMO: &str = include_str!("fixtures/demo.jsonl");
const MANY: &str = include_str!("fixtures/many.jsonl");

fn documents(text: &str) -> Vec<String> {
    read_jsonl(text.as_bytes()).expect("fixture parses")
}

/// Each key after its delay (from the previous one).
fn scripted_keys(
    script: Vec<(Duration, KeyCode)>,
) -> impl Stream<Item = io::Result<Event>> + Unpin {
    Box::pin(stream::unfold(
        script.into_iter(),
        |mut script| async move {
            let (delay, code) = script.next()?;
            tokio::time::sleep(delay).await;
            let event = Event::Key(KeyEvent::new(code, KeyModifiers::NONE));
            Some((Ok(event), script))
        },
    ))
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn config() -> Config {
    Config {
        server: "test".into(),
        interval: Duration::from_secs(1),
        no_color: true,
        ..Config::default()
    }
}

/// Runs the loop to its end (60 s of virtual time at most) and returns the last screen.
async fn run_to_end<S: SnapshotSource>(
    source: S,
    keys: Vec<(Duration, KeyCode)>,
    size: (u16, u16),
) -> String {
    let mut terminal = Terminal::new(TestBackend::new(size.0, size.1)).expect("test terminal");
    tokio::time::timeout(
        Duration::from_secs(600),
        drive(&mut terminal, source, config(), scripted_keys(keys)),
    )
    .await
    .expect("the loop quits")
    .expect("the loop ends without error");
    terminal.backend().to_string()
}

/// A source that plays a script of answers and notes when it was asked.
struct Scripted {
    answers: VecDeque<Result<String, FetchError>>,
    asked: Arc<Mutex<Vec<Instant>>>,
    explains: Arc<Mutex<Vec<(String, bool)>>>,
}

impl Scripted {
    fn new(answers: Vec<Result<String, FetchError>>) -> (Self, Arc<Mutex<Vec<Instant>>>) {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let source = Scripted {
            answers: answers.into(),
            asked: asked.clone(),
            explains: Arc::new(Mutex::new(Vec::new())),
        };
        (source, asked)
    }
}

impl SnapshotSource for Scripted {
    async fn fetch(&mut self) -> Result<String, FetchError> {
        self.asked.lock().expect("lock").push(Instant::now());
        self.answers.pop_front().unwrap_or(Err(FetchError::End(0)))
    }

    async fn explain(&mut self, tview: String, verbose: bool) -> Result<String, String> {
        self.explains
            .lock()
            .expect("lock")
            .push((tview.clone(), verbose));
        tokio::time::sleep(secs(0.1)).await;
        Ok(format!(
            "{tview} (key pk_product bigint, cascade depth 0)\n└── read by tv_category"
        ))
    }
}

/// Seconds between successive fetches.
fn gaps(asked: &Mutex<Vec<Instant>>) -> Vec<f64> {
    let asked = asked.lock().expect("lock");
    asked
        .windows(2)
        .map(|w| ((w[1] - w[0]).as_secs_f64() * 10.0).round() / 10.0)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn replays_a_recording_switches_views_and_quits_on_q() {
    let source = ReplaySource::new(documents(DEMO));
    // 30 snapshots a second apart, then the end; views along the way, q at 40 s.
    let keys = vec![
        (secs(5.5), KeyCode::Char('2')),
        (secs(1.0), KeyCode::Char('3')),
        (secs(1.0), KeyCode::Char('4')),
        (secs(1.0), KeyCode::Tab),
        (secs(31.0), KeyCode::Char('q')),
    ];
    let screen = run_to_end(source, keys, (80, 24)).await;
    assert!(screen.contains("END OF REPLAY"), "{screen}");
    assert!(
        screen.contains("end of replay: 30 snapshots shown"),
        "{screen}"
    );
    assert!(
        screen.contains("refresh activity over the last"),
        "{screen}"
    );
    assert!(screen.contains("tv_product"), "{screen}");
}

/// The server goes away: the console says so at once, keeps the last snapshot on screen,
/// and tries again after 1, 1, 2, 4 and then 8 s; when it answers again, the polls go back
/// to the interval and the status bar says it reconnected.
#[tokio::test(start_paused = true)]
async fn reconnects_with_backoff_and_says_so() {
    let docs = documents(MANY);
    let lost = || Err(FetchError::Disconnected("connection refused".into()));
    let mut answers: Vec<Result<String, FetchError>> =
        docs[10..14].iter().cloned().map(Ok).collect();
    answers.extend([lost(), lost(), lost(), lost(), lost(), lost()]);
    answers.extend(docs[14..17].iter().cloned().map(Ok));
    let (source, asked) = Scripted::new(answers);
    // Down from 4 s; the fifth failed attempt is at 4+1+1+2+4 = 12 s.
    let screen_down = {
        let (source, _) = Scripted::new({
            let mut a: Vec<_> = docs[10..14].iter().cloned().map(Ok).collect();
            a.extend([lost(), lost(), lost(), lost(), lost()]);
            a
        });
        run_to_end(source, vec![(secs(12.5), KeyCode::Char('q'))], (80, 24)).await
    };
    assert!(
        screen_down.contains("reconnecting… (server restarted?) attempt 5, next in 8s"),
        "{screen_down}"
    );
    assert!(screen_down.contains("RECONNECTING"), "{screen_down}");
    assert!(
        screen_down.contains("tv_issue"),
        "the last snapshot stays:\n{screen_down}"
    );

    let screen = run_to_end(source, vec![(secs(29.5), KeyCode::Char('q'))], (80, 24)).await;
    // Up at 0-3 s, lost at 4, 5, 6, 8, 12, 20 s, back at 28 s.
    assert_eq!(
        gaps(&asked),
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 4.0, 8.0, 8.0, 1.0],
        "fetch times"
    );
    assert!(
        screen.contains("statistics restarted"),
        "the reset after the restart is announced:\n{screen}"
    );
    assert!(!screen.contains("RECONNECTING"), "{screen}");
}

/// While paused nothing is fetched; resuming fetches at once.
#[tokio::test(start_paused = true)]
async fn a_paused_console_queries_nothing() {
    let docs = documents(DEMO);
    let (source, asked) = Scripted::new(docs.into_iter().map(Ok).collect());
    let keys = vec![
        (secs(2.5), KeyCode::Char('p')),
        (secs(10.0), KeyCode::Char(' ')),
        (secs(0.5), KeyCode::Char('q')),
    ];
    let screen = run_to_end(source, keys, (80, 24)).await;
    assert_eq!(gaps(&asked), [1.0, 1.0, 10.5], "fetch times");
    assert!(!screen.contains("PAUSED"), "{screen}");
}

/// `+` and `-` change the pace at once.
#[tokio::test(start_paused = true)]
async fn plus_and_minus_change_the_interval() {
    let docs = documents(DEMO);
    let (source, asked) = Scripted::new(docs.into_iter().map(Ok).collect());
    let keys = vec![
        (secs(0.5), KeyCode::Char('+')),
        (secs(4.5), KeyCode::Char('-')),
        (secs(0.1), KeyCode::Char('-')),
        (secs(1.2), KeyCode::Char('q')),
    ];
    let screen = run_to_end(source, keys, (80, 24)).await;
    // 0 s, + at 0.5 s (fetch now, then every 2 s), - at 5 s, - at 5.1 s (0.5 s).
    assert_eq!(
        gaps(&asked),
        [0.5, 2.0, 2.0, 0.5, 0.1, 0.5, 0.5],
        "fetch times"
    );
    assert!(screen.contains("every 500ms"), "{screen}");
}

/// Enter asks the source for the selected TVIEW's explain and shows it; `v` asks again with
/// the statements; Esc closes it.
#[tokio::test(start_paused = true)]
async fn enter_shows_the_explain_from_the_source() {
    let docs = documents(DEMO);
    let (source, _) = Scripted::new(docs.into_iter().map(Ok).collect());
    let explains = source.explains.clone();
    let keys = vec![
        (secs(2.5), KeyCode::Enter),
        (secs(0.5), KeyCode::Char('v')),
        (secs(0.5), KeyCode::Char('q')),
    ];
    let screen = run_to_end(source, keys, (80, 24)).await;
    let asked = explains.lock().expect("lock").clone();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!((asked[0].1, asked[1].1), (false, true));
    assert!(screen.contains("explain tv_"), "{screen}");
    assert!(screen.contains("with statements"), "{screen}");
    assert!(screen.contains("(key pk_product bigint"), "{screen}");
}

/// A document of another schema_version is an error on screen, not a crash; the console keeps
/// polling and recovers when the documents are readable again.
#[tokio::test(start_paused = true)]
async fn an_unsupported_document_is_reported_and_survived() {
    let docs = documents(DEMO);
    let (source, _) = Scripted::new(vec![
        Ok(docs[0].clone()),
        Ok(r#"{"schema_version": 2}"#.into()),
    ]);
    let screen = run_to_end(source, vec![(secs(1.5), KeyCode::Char('q'))], (100, 24)).await;
    assert!(
        screen.contains("error: pg_tviews_snapshot() returned schema_version 2"),
        "{screen}"
    );
    let (source, _) = Scripted::new(vec![
        Ok(docs[0].clone()),
        Ok(r#"{"schema_version": 2}"#.into()),
        Ok(docs[1].clone()),
    ]);
    let screen = run_to_end(source, vec![(secs(2.5), KeyCode::Char('q'))], (100, 24)).await;
    assert!(!screen.contains("ERROR"), "{screen}");
}

/// Input that ends (a closed terminal) ends the loop.
#[tokio::test(start_paused = true)]
async fn the_end_of_input_ends_the_loop() {
    let source = ReplaySource::new(documents(DEMO));
    run_to_end(source, vec![(secs(3.0), KeyCode::Char('x'))], (80, 24)).await;
}
