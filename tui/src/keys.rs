//! Key bindings: a crossterm `KeyEvent` and what is on screen in, an `Action` out.
//!
//! Keys follow pg_activity where it has one: space pauses, `+`/`-` lengthen and shorten the
//! interval, `q` quits. `Esc` closes whatever overlay is open and quits only from the main screen.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::app::{Action, Mode};

pub fn action_for(key: KeyEvent, mode: Mode) -> Option<Action> {
    // Terminals that report releases and repeats (Windows, kitty protocol) would otherwise act
    // twice per key press.
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return matches!(key.code, KeyCode::Char('c')).then_some(Action::Quit);
    }
    match mode {
        Mode::Filter => match key.code {
            KeyCode::Char(c) => Some(Action::FilterInput(c)),
            KeyCode::Backspace => Some(Action::FilterBackspace),
            KeyCode::Enter | KeyCode::Esc => Some(Action::FilterDone),
            _ => None,
        },
        Mode::Help => match key.code {
            KeyCode::Char('?' | 'h') | KeyCode::Esc => Some(Action::Help),
            KeyCode::Char('q') => Some(Action::Quit),
            _ => None,
        },
        Mode::Detail => match key.code {
            KeyCode::Enter | KeyCode::Esc => Some(Action::OpenSelected),
            KeyCode::Char('q') => Some(Action::Quit),
            KeyCode::Char('?' | 'h') => Some(Action::Help),
            _ => None,
        },
        Mode::Normal => match key.code {
            KeyCode::Char('q') | KeyCode::Esc => Some(Action::Quit),
            KeyCode::Char('?' | 'h') => Some(Action::Help),
            KeyCode::Char('p' | ' ') => Some(Action::Pause),
            KeyCode::Char('+') => Some(Action::SlowerInterval),
            KeyCode::Char('-') => Some(Action::FasterInterval),
            KeyCode::Up | KeyCode::Char('k') => Some(Action::SelectPrev),
            KeyCode::Down | KeyCode::Char('j') => Some(Action::SelectNext),
            KeyCode::Enter => Some(Action::OpenSelected),
            KeyCode::Char('s') => Some(Action::CycleSort),
            KeyCode::Char('/') => Some(Action::StartFilter),
            _ => None,
        },
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
            (KeyCode::Esc, Action::Quit),
            (KeyCode::Char('?'), Action::Help),
            (KeyCode::Char('p'), Action::Pause),
            (KeyCode::Char(' '), Action::Pause),
            (KeyCode::Char('+'), Action::SlowerInterval),
            (KeyCode::Char('-'), Action::FasterInterval),
            (KeyCode::Up, Action::SelectPrev),
            (KeyCode::Char('k'), Action::SelectPrev),
            (KeyCode::Down, Action::SelectNext),
            (KeyCode::Char('j'), Action::SelectNext),
            (KeyCode::Enter, Action::OpenSelected),
            (KeyCode::Char('s'), Action::CycleSort),
            (KeyCode::Char('/'), Action::StartFilter),
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
        for c in ['q', 'j', '/', ' '] {
            let action = action_for(press(KeyCode::Char(c)), Mode::Filter);
            assert_eq!(action, Some(Action::FilterInput(c)));
        }
        let backspace = action_for(press(KeyCode::Backspace), Mode::Filter);
        assert_eq!(backspace, Some(Action::FilterBackspace));
        let esc = action_for(press(KeyCode::Esc), Mode::Filter);
        assert_eq!(esc, Some(Action::FilterDone));
    }

    #[test]
    fn esc_closes_overlays_and_q_still_quits() {
        assert_eq!(
            action_for(press(KeyCode::Esc), Mode::Help),
            Some(Action::Help)
        );
        let close = action_for(press(KeyCode::Esc), Mode::Detail);
        assert_eq!(close, Some(Action::OpenSelected));
        for mode in [Mode::Help, Mode::Detail] {
            assert_eq!(
                action_for(press(KeyCode::Char('q')), mode),
                Some(Action::Quit)
            );
        }
    }

    #[test]
    fn ctrl_c_quits_everywhere_and_releases_are_ignored() {
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        for mode in [Mode::Normal, Mode::Filter, Mode::Help, Mode::Detail] {
            assert_eq!(action_for(ctrl_c, mode), Some(Action::Quit));
        }
        let mut release = press(KeyCode::Char('q'));
        release.kind = KeyEventKind::Release;
        assert_eq!(action_for(release, Mode::Normal), None);
    }
}
