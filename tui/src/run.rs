//! The terminal event loop: a poller task sends snapshots over a channel, the loop turns key
//! presses, snapshots and heartbeats into `Action`s, applies them with `update` and redraws.

use std::io;

use anyhow::Context as _;
use crossterm::event::{Event, EventStream};
use futures_util::{Stream, StreamExt as _};
use ratatui::Terminal;
use ratatui::backend::Backend;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Duration, MissedTickBehavior};

use crate::app::{Action, App, Config, HEARTBEAT, update};
use crate::source::SnapshotSource;
use crate::{keys, ui};

/// Runs the console on the real terminal until the user quits.
///
/// The terminal is restored on every way out: normal exit, error, the future being dropped, and
/// panic (`ratatui::try_init` installs a panic hook that restores the terminal, then chains to the
/// hook that was there before, so the panic message lands on a usable screen).
pub async fn run<S: SnapshotSource>(source: S, mut config: Config) -> anyhow::Result<()> {
    config.no_color |= no_color_requested();
    // Created before set-up: a half-done set-up (raw mode on, no alternate screen) is undone too.
    let _restore = RestoreTerminalOnDrop;
    let mut terminal = ratatui::try_init().context("setting up the terminal")?;
    drive(&mut terminal, source, config, EventStream::new()).await
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
    let _poller = AbortOnDrop(tokio::spawn(poll_loop(source, settings_rx, actions_tx)));
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);

    while !app.should_quit {
        terminal
            .draw(|frame| ui::render(frame, &app))
            .context("drawing")?;
        let action = tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) => keys::action_for(key, app.mode),
                Some(Ok(Event::Resize(..))) => Some(Action::Resize),
                Some(Ok(_)) => None,
                Some(Err(error)) => return Err(error).context("reading terminal events"),
                // Input is gone, so nothing could ever ask us to quit: quit now.
                None => Some(Action::Quit),
            },
            action = actions_rx.recv() => match action {
                Some(action) => Some(action),
                // The poller only drops its sender by panicking.
                None => anyhow::bail!("the snapshot poller stopped unexpectedly"),
            },
            _ = heartbeat.tick() => Some(Action::Tick),
        };
        if let Some(action) = action {
            update(&mut app, action);
        }
        let wanted = PollSettings::of(&app);
        settings_tx.send_if_modified(|current| std::mem::replace(current, wanted) != wanted);
    }
    Ok(())
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

/// Polls once per interval; while paused it does not poll at all, so a paused console puts no
/// load on the server. A settings change ends the wait early, so resuming or a new interval takes
/// effect at once.
async fn poll_loop<S: SnapshotSource>(
    mut source: S,
    mut settings: watch::Receiver<PollSettings>,
    actions: mpsc::Sender<Action>,
) {
    loop {
        let current = *settings.borrow_and_update();
        if !current.paused {
            let action = match source.poll().await {
                Ok(snapshot) => Action::NewSnapshot(snapshot),
                Err(error) => Action::SourceError(format!("{error:#}")),
            };
            if actions.send(action).await.is_err() {
                return;
            }
        }
        let changed = if current.paused {
            settings.changed().await
        } else {
            tokio::select! {
                () = tokio::time::sleep(current.interval) => Ok(()),
                changed = settings.changed() => changed,
            }
        };
        if changed.is_err() {
            return;
        }
    }
}

/// `NO_COLOR` set to anything non-empty, per no-color.org.
pub fn no_color_requested() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty())
}

struct RestoreTerminalOnDrop;

impl Drop for RestoreTerminalOnDrop {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Stops the poller when the loop ends, however it ends.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
