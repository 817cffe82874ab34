//! SQL text helpers: identifier and literal quoting done in Rust, so the
//! generators are testable without a server (STYLE.md §1).
//!
//! Generated statements quote every identifier (always, not only when
//! needed: a reserved word or a mixed-case name can never slip through) and
//! pass every value as a `$n` parameter; literals appear only in DDL that
//! PostgreSQL cannot parameterise, through [`literal`].

/// `"name"`, with embedded double quotes doubled.
pub fn ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `"schema"."name"`.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// A string literal: `'it''s'`, or `E'a\\b'` when it holds a backslash (so
/// it reads the same whatever `standard_conforming_strings` says).
pub fn literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 3);
    if value.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            _ => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `OPERATOR("schema".=)`-style reference to a specific operator, so a
/// shadowing operator earlier on a search_path can never be picked.
pub fn operator(schema: &str, name: &str) -> String {
    format!("OPERATOR({}.{})", ident(schema), name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(ident("tv_post"), r#""tv_post""#);
        assert_eq!(ident(r#"we"ird"#), r#""we""ird""#);
        assert_eq!(ident("Select"), r#""Select""#);
        assert_eq!(qualified("public", "tv post"), r#""public"."tv post""#);
    }

    #[test]
    fn quotes_literals() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal(r"a\b"), r"E'a\\b'");
        assert_eq!(literal(""), "''");
    }

    /// Reverses [`ident`] the way PostgreSQL's scanner reads a quoted identifier.
    fn unquote_ident(s: &str) -> Option<String> {
        let inner = s.strip_prefix('"')?.strip_suffix('"')?;
        let mut out = String::new();
        let mut chars = inner.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                // Inside, a quote must be doubled.
                if chars.next() != Some('"') {
                    return None;
                }
            }
            out.push(c);
        }
        Some(out)
    }

    proptest! {
        #[test]
        fn ident_round_trips(s in "\\PC{0,40}") {
            prop_assert_eq!(unquote_ident(&ident(&s)), Some(s));
        }

        #[test]
        fn literal_has_balanced_quotes(s in "\\PC{0,40}") {
            let l = literal(&s);
            let body = l.trim_start_matches('E');
            let inner = &body[1..body.len() - 1];
            // Every quote inside the literal is doubled.
            prop_assert_eq!(inner.matches('\'').count() % 2, 0);
            prop_assert!(!inner.replace("''", "").contains('\''));
        }
    }
}
