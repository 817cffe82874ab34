//! Progress on stderr while the server works: an indicatif spinner with the elapsed
//! time, drawn only when stderr is a terminal (hidden in pipes, cron and tests).

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A spinner saying what is running. The server reports no progress for a rebuild, so
/// the elapsed time is what there is to show.
pub fn spinner(visible: bool, message: String) -> ProgressBar {
    let target = if visible {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(None, target);
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_message(message);
    if visible {
        bar.enable_steady_tick(Duration::from_millis(120));
    }
    bar
}
