//! The event loop: a poller task fetches snapshots and sends them as actions over a channel;
//! the loop turns key presses, those actions and heartbeats into `update` calls and redraws.
//! The poller also carries out the state's requests (a TVIEW's explain), and paces itself:
//! the interval while the server answers, a growing backoff while it cannot be reached.

use std::io::{self, Write as _};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use crossterm::cursor::{Hide, Show};
use crossterm::event::{Event, EventStream};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures_util::{Stream, StreamExt as _};
use ratatui::Terminal;
use ratatui::backend::{Backend, CrosstermBackend};
use tokio::sync::{mpsc, watch};
use tokio::time::{Duration, Instant, MissedTickBehavior};

use crate::app::{Action, App, Config, HEARTBEAT, Request, update};
use crate::snapshot;
use crate::source::{FetchError, SnapshotSource, backoff};
use crate::{keys, ui};

/// Runs the console on the real terminal until the user quits.
///
/// The terminal is restored on every way out: normal exit, an error, the future being dropped,
/// SIGTERM/SIGHUP/SIGINT, and a panic (a hook restores it before the panic message is printed,
/// then chains to the hook that was there before).
pub async fn run<S: SnapshotSource>(source: S, mut config: Config) -> anyhow::Result<()> {
    config.no_color |= no_color_requested();
    let _guard = TerminalGuard::enter().context("setting up the terminal")?;
    let mut terminal =
        Terminal::new(CrosstermBackend::new(io::stdout())).context("setting up the terminal")?;
    terminal.clear().context("clearing the terminal")?;
    tokio::select! {
        result = drive(&mut terminal, source, config, EventStream::new()) => result,
        () = termination() => Ok(()),
    }
}

/// Resolves when the process is asked to stop; raw mode turns Ctrl-C into a key, so SIGINT
/// only comes from `kill`.
async fn termination() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut signals = Vec::new();
    for kind in [
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::interrupt(),
    ] {
        if let Ok(s) = signal(kind) {
            signals.push(s);
        }
    }
    if signals.is_empty() {
        return std::future::pending().await;
    }
    let waits = signals.iter_mut().map(|s| Box::pin(s.recv()));
    futures_util::future::select_all(waits).await;
}

/// The loop itself, on any backend and any event stream, which is how the tests drive it.
pub async fn drive<B, S, E>(
    terminal: &mut Terminal<B>,
    source: S,
    config: Config,
    mut events: E,
) -> anyhow::Result<()>
where
    B: Backend,
    S: SnapshotSource,
    E: Stream<Item = io::Result<Event>> + Unpin,
{
    let mut app = App::new(config);
    let (settings_tx, settings_rx) = watch::channel(PollSettings::of(&app));
    // Small: a poller that runs ahead of a slow terminal should wait, not queue old snapshots.
    let (actions_tx, mut actions_rx) = mpsc::channel(2);
    let (requests_tx, requests_rx) = mpsc::unbounded_channel();
    // The poller runs on this task, beside the UI loop (its futures need not be `Send`), and
    // is dropped with it however the loop ends.
    let poller = poll_loop(source, settings_rx, requests_rx, actions_tx);
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);

    let size = terminal.size().context("reading the terminal's size")?;
    update(&mut app, Action::Resize(size.width, size.height));
    let ui = async {
        while !app.should_quit {
            terminal
                .draw(|frame| ui::render(frame, &app))
                .context("drawing")?;
            let action = tokio::select! {
                event = events.next() => match event {
                    Some(Ok(Event::Key(key))) => keys::action_for(key, app.mode),
                    Some(Ok(Event::Resize(width, height))) => Some(Action::Resize(width, height)),
                    Some(Ok(_)) => None,
                    Some(Err(error)) => return Err(error).context("reading terminal events"),
                    // Input is gone, so nothing could ever ask us to quit: quit now.
                    None => Some(Action::Quit),
                },
                Some(action) = actions_rx.recv() => Some(action),
                _ = heartbeat.tick() => Some(Action::Tick),
            };
            if let Some(action) = action {
                update(&mut app, action);
            }
            for request in app.take_requests() {
                // The poller lives as long as this loop; it only stops receiving when it has
                // returned, which ends the loop below.
                let _ = requests_tx.send(request);
            }
            let wanted = PollSettings::of(&app);
            settings_tx.send_if_modified(|current| std::mem::replace(current, wanted) != wanted);
        }
        Ok(())
    };
    tokio::select! {
        result = ui => result,
        () = poller => anyhow::bail!("the snapshot poller stopped unexpectedly"),
    }
}

/// What the poller needs to know from the UI; sent only when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PollSettings {
    interval: Duration,
    paused: bool,
}

impl PollSettings {
    fn of(app: &App) -> Self {
        Self {
            interval: app.config.interval,
            paused: app.paused,
        }
    }
}

/// Fetches once per interval, or after a backoff while the server is unreachable; while paused
/// (and after the end of a replay) it fetches nothing, so a paused console puts no load on the
/// server. A settings change ends the wait early, so resuming or a new interval takes effect at
/// once. Requests are served while waiting.
async fn poll_loop<S: SnapshotSource>(
    mut source: S,
    mut settings: watch::Receiver<PollSettings>,
    mut requests: mpsc::UnboundedReceiver<Request>,
    actions: mpsc::Sender<Action>,
) {
    let mut failures = 0u32;
    let mut ended = false;
    loop {
        let current = *settings.borrow_and_update();
        let mut wait = current.interval;
        if !current.paused && !ended {
            let action = match source.fetch().await {
                Ok(text) => {
                    failures = 0;
                    match snapshot::parse(&text) {
                        Ok(snap) => Action::NewSnapshot(Box::new(snap)),
                        Err(error) => Action::SourceFailed(error.to_string()),
                    }
                }
                Err(FetchError::Disconnected(message)) => {
                    failures = failures.saturating_add(1);
                    wait = backoff(failures, current.interval);
                    Action::Disconnected {
                        message,
                        attempt: failures,
                        retry_in: wait,
                    }
                }
                Err(FetchError::Failed(message)) => Action::SourceFailed(message),
                Err(FetchError::End(count)) => {
                    ended = true;
                    Action::ReplayEnded(count)
                }
            };
            if actions.send(action).await.is_err() {
                return;
            }
        }
        let polling = !current.paused && !ended;
        let deadline = Instant::now() + wait;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline), if polling => break,
                changed = settings.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
                request = requests.recv() => match request {
                    Some(Request::Explain { tview, verbose }) => {
                        let result = source.explain(tview.clone(), verbose).await;
                        let action = Action::ExplainLoaded { tview, verbose, result };
                        if actions.send(action).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                },
            }
        }
    }
}

/// `NO_COLOR` set to anything non-empty, per no-color.org.
pub fn no_color_requested() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty())
}

/// Whether the terminal is in the console's state (raw mode, alternate screen, no cursor).
static TERMINAL_TAKEN: AtomicBool = AtomicBool::new(false);
static PANIC_HOOK: Once = Once::new();

/// Puts the terminal back: raw mode off first (it has the wider effects), then the main
/// screen and the cursor. Does nothing when the console does not hold the terminal, so every
/// way out can call it.
pub fn restore_terminal() {
    if TERMINAL_TAKEN.swap(false, Ordering::SeqCst) {
        let _ = disable_raw_mode();
        let mut out = io::stdout();
        let _ = execute!(out, LeaveAlternateScreen, Show);
        let _ = out.flush();
    }
}

/// Holds the terminal in the console's state, restoring it when dropped.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> io::Result<TerminalGuard> {
        PANIC_HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                // Before the message, or it would be printed on the alternate screen and lost.
                restore_terminal();
                previous(info);
            }));
        });
        // Marked first: a set-up that fails half-way (raw mode on, no alternate screen) is
        // undone too.
        TERMINAL_TAKEN.store(true, Ordering::SeqCst);
        let guard = TerminalGuard;
        enable_raw_mode()?;
        execute!(io::stdout(), EnterAlternateScreen, Hide)?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}
