//! Key bindings: a crossterm `KeyEvent` and what is on screen in, an `Action` out.
//!
//! The keys of pg_activity, pgcenter and htop where they have one: `q` quits, `?`/`h` help,
//! space or `p` pauses, `+`/`-` lengthen and shorten the interval, arrows and `j`/`k` select,
//! `1`..`4` or Tab switch views, `s` sorts, `/` filters. `Esc` closes whatever overlay is open
//! (or clears the filter) and never quits; Ctrl-C quits from anywhere.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::app::{Action, Mode, View};

/// Every binding, for the help screen and `docs/CONSOLE.md`: (keys, what they do).
pub const HELP: &[(&str, &str)] = &[
    ("q  Ctrl-C", "quit"),
    ("?  h", "this help (Esc closes it)"),
    (
        "space  p",
        "pause / resume polling (a paused console queries nothing)",
    ),
    ("+  -", "longer / shorter interval between snapshots"),
    (
        "↑ ↓  k j",
        "select a TVIEW (a backend, a prepared transaction)",
    ),
    ("PgUp PgDn", "move ten rows; Home End (g G): first, last"),
    (
        "← →",
        "graph: move to the layer before / after (follows edges)",
    ),
    (
        "Enter",
        "explain the selected TVIEW (↑↓ scroll, v statements)",
    ),
    (
        "1 2 3 4",
        "activity, graph, backends and lock waits, prepared",
    ),
    ("Tab", "next view (Shift-Tab: previous)"),
    ("s  S", "sort activity by the next / previous column"),
    ("/", "filter by name (Enter keeps it, Esc clears it)"),
    ("Esc", "close the overlay, or clear the filter"),
];

pub fn action_for(key: KeyEvent, mode: Mode) -> Option<Action> {
    // Terminals that report releases (Windows, the kitty protocol) would otherwise act twice
    // per key press.
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return match key.code {
            KeyCode::Char('c') => Some(Action::Quit),
            // less and vi: Ctrl-F/Ctrl-B page, Ctrl-D/Ctrl-U half page (a page here).
            KeyCode::Char('f' | 'd') => Some(Action::PageDown),
            KeyCode::Char('b' | 'u') => Some(Action::PageUp),
            _ => None,
        };
    }
    match mode {
        Mode::Filter => match key.code {
            KeyCode::Char(c) => Some(Action::FilterInput(c)),
            KeyCode::Backspace => Some(Action::FilterBackspace),
            KeyCode::Enter => Some(Action::FilterDone),
            KeyCode::Esc => Some(Action::FilterCancel),
            _ => None,
        },
        Mode::Help => match key.code {
            KeyCode::Char('?' | 'h') | KeyCode::Esc => Some(Action::Help),
            KeyCode::Char('q') => Some(Action::Quit),
            _ => None,
        },
        Mode::Explain => match key.code {
            KeyCode::Enter | KeyCode::Esc => Some(Action::Close),
            KeyCode::Char('q') => Some(Action::Quit),
            KeyCode::Char('?' | 'h') => Some(Action::Help),
            KeyCode::Char('v') => Some(Action::ToggleVerbose),
            KeyCode::Char(' ') => Some(Action::PageDown),
            code => movement(code),
        },
        Mode::Normal => match key.code {
            KeyCode::Char('q') => Some(Action::Quit),
            KeyCode::Esc => Some(Action::Close),
            KeyCode::Char('?' | 'h') => Some(Action::Help),
            KeyCode::Char('p' | ' ') => Some(Action::Pause),
            KeyCode::Char('+' | '=') => Some(Action::SlowerInterval),
            KeyCode::Char('-' | '_') => Some(Action::FasterInterval),
            KeyCode::Left => Some(Action::Left),
            KeyCode::Right => Some(Action::Right),
            KeyCode::Enter => Some(Action::Open),
            KeyCode::Char('s') => Some(Action::NextSort),
            KeyCode::Char('S') => Some(Action::PrevSort),
            KeyCode::Char('/') => Some(Action::StartFilter),
            KeyCode::Char('1') => Some(Action::ShowView(View::Overview)),
            KeyCode::Char('2') => Some(Action::ShowView(View::Graph)),
            KeyCode::Char('3') => Some(Action::ShowView(View::Backends)),
            KeyCode::Char('4') => Some(Action::ShowView(View::Prepared)),
            KeyCode::Tab => Some(Action::NextView),
            KeyCode::BackTab => Some(Action::PrevView),
            code => movement(code),
        },
    }
}

fn movement(code: KeyCode) -> Option<Action> {
    match code {
        KeyCode::Up | KeyCode::Char('k') => Some(Action::Up),
        KeyCode::Down | KeyCode::Char('j') => Some(Action::Down),
        KeyCode::PageUp => Some(Action::PageUp),
        KeyCode::PageDown => Some(Action::PageDown),
        KeyCode::Home | KeyCode::Char('g') => Some(Action::Home),
        KeyCode::End | KeyCode::Char('G') => Some(Action::End),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn main_screen_bindings() {
        let cases = [
            (KeyCode::Char('q'), Action::Quit),
            (KeyCode::Esc, Action::Close),
            (KeyCode::Char('?'), Action::Help),
            (KeyCode::Char('h'), Action::Help),
            (KeyCode::Char('p'), Action::Pause),
            (KeyCode::Char(' '), Action::Pause),
            (KeyCode::Char('+'), Action::SlowerInterval),
            (KeyCode::Char('-'), Action::FasterInterval),
            (KeyCode::Up, Action::Up),
            (KeyCode::Char('k'), Action::Up),
            (KeyCode::Down, Action::Down),
            (KeyCode::Char('j'), Action::Down),
            (KeyCode::PageDown, Action::PageDown),
            (KeyCode::Char('G'), Action::End),
            (KeyCode::Left, Action::Left),
            (KeyCode::Enter, Action::Open),
            (KeyCode::Char('s'), Action::NextSort),
            (KeyCode::Char('S'), Action::PrevSort),
            (KeyCode::Char('/'), Action::StartFilter),
            (KeyCode::Char('2'), Action::ShowView(View::Graph)),
            (KeyCode::Tab, Action::NextView),
            (KeyCode::BackTab, Action::PrevView),
        ];
        for (code, action) in cases {
            assert_eq!(
                action_for(press(code), Mode::Normal),
                Some(action),
                "{code:?}"
            );
        }
        assert_eq!(action_for(press(KeyCode::Char('x')), Mode::Normal), None);
    }

    #[test]
    fn shifted_characters_still_match() {
        let plus = KeyEvent::new(KeyCode::Char('+'), KeyModifiers::SHIFT);
        assert_eq!(action_for(plus, Mode::Normal), Some(Action::SlowerInterval));
    }

    #[test]
    fn filter_mode_takes_every_character() {
        for c in ['q', 'j', '/', ' ', '1'] {
            let action = action_for(press(KeyCode::Char(c)), Mode::Filter);
            assert_eq!(action, Some(Action::FilterInput(c)));
        }
        let backspace = action_for(press(KeyCode::Backspace), Mode::Filter);
        assert_eq!(backspace, Some(Action::FilterBackspace));
        assert_eq!(
            action_for(press(KeyCode::Esc), Mode::Filter),
            Some(Action::FilterCancel)
        );
        assert_eq!(
            action_for(press(KeyCode::Enter), Mode::Filter),
            Some(Action::FilterDone)
        );
    }

    #[test]
    fn overlays_close_with_esc_and_q_still_quits() {
        assert_eq!(
            action_for(press(KeyCode::Esc), Mode::Help),
            Some(Action::Help)
        );
        assert_eq!(
            action_for(press(KeyCode::Esc), Mode::Explain),
            Some(Action::Close)
        );
        for mode in [Mode::Help, Mode::Explain] {
            assert_eq!(
                action_for(press(KeyCode::Char('q')), mode),
                Some(Action::Quit)
            );
        }
        assert_eq!(
            action_for(press(KeyCode::Char('j')), Mode::Explain),
            Some(Action::Down)
        );
        assert_eq!(
            action_for(press(KeyCode::Char('v')), Mode::Explain),
            Some(Action::ToggleVerbose)
        );
    }

    #[test]
    fn ctrl_c_quits_everywhere_and_releases_are_ignored() {
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        for mode in [Mode::Normal, Mode::Filter, Mode::Help, Mode::Explain] {
            assert_eq!(action_for(ctrl_c, mode), Some(Action::Quit));
        }
        let mut release = press(KeyCode::Char('q'));
        release.kind = KeyEventKind::Release;
        assert_eq!(action_for(release, Mode::Normal), None);
    }
}
