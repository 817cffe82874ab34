//! docs/ERROR_REFERENCE.md stays true to the tests and the sources (no
//! cluster needed): every documented error names a test that exists and
//! asserts its SQLSTATE, and every SQLSTATE pg_tviews raises is documented.
//! The format is described at the top of the reference.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The repository root (this crate lives in `tests/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the repository")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The section whose entries need no test.
const INTERNAL_SECTION: &str = "Internal errors";

/// PostgreSQL's condition name of each SQLSTATE the reference may use
/// (Appendix A of the PostgreSQL manual). Add a line when you document a
/// new SQLSTATE.
const CONDITIONS: &[(&str, &str)] = &[
    ("0A000", "feature_not_supported"),
    ("21000", "cardinality_violation"),
    ("22004", "null_value_not_allowed"),
    ("22012", "division_by_zero"),
    ("22023", "invalid_parameter_value"),
    ("23502", "not_null_violation"),
    ("23505", "unique_violation"),
    ("25006", "read_only_sql_transaction"),
    ("2BP01", "dependent_objects_still_exist"),
    ("39P01", "trigger_protocol_violated"),
    ("40001", "serialization_failure"),
    ("40P01", "deadlock_detected"),
    ("42501", "insufficient_privilege"),
    ("42601", "syntax_error"),
    ("42602", "invalid_name"),
    ("42703", "undefined_column"),
    ("42710", "duplicate_object"),
    ("42804", "datatype_mismatch"),
    ("42809", "wrong_object_type"),
    ("42P01", "undefined_table"),
    ("42P07", "duplicate_table"),
    ("42P16", "invalid_table_definition"),
    ("42P17", "invalid_object_definition"),
    ("54000", "program_limit_exceeded"),
    ("55P03", "lock_not_available"),
    ("XX000", "internal_error"),
];

/// One `###` entry of the reference.
#[derive(Debug)]
struct Entry {
    /// The `###` line, for messages.
    heading: String,
    /// Line number of the heading (1-based).
    line: usize,
    section: String,
    sqlstate: String,
    condition: String,
    /// The lines after the heading, up to the next heading.
    body: Vec<String>,
}

impl Entry {
    /// The text after `- **<field>:**`, if the entry has that line.
    fn field(&self, name: &str) -> Option<&str> {
        let prefix = format!("- **{name}:**");
        self.body
            .iter()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(str::trim)
    }

    fn what(&self) -> String {
        format!("line {}: {}", self.line, self.heading)
    }
}

fn is_sqlstate(s: &str) -> bool {
    s.len() == 5
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

fn parse_reference(text: &str) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut section = String::new();
    // Whether the lines being read belong to the last entry.
    let mut in_entry = false;
    let mut in_code = false;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("```") {
            in_code = !in_code;
        } else if in_code {
            // Examples in code blocks are not entries.
        } else if let Some(title) = line.strip_prefix("### ") {
            let mut words = title.split_whitespace();
            entries.push(Entry {
                heading: line.to_string(),
                line: i + 1,
                section: section.clone(),
                sqlstate: words.next().unwrap_or_default().to_string(),
                condition: words.next().unwrap_or_default().to_string(),
                body: Vec::new(),
            });
            in_entry = true;
            continue;
        } else if line.starts_with('#') {
            // Any other heading ends the entry before it.
            if let Some(title) = line.strip_prefix("## ") {
                section = title.trim().to_string();
            }
            in_entry = false;
            continue;
        }
        if in_entry && let Some(e) = entries.last_mut() {
            e.body.push(line.to_string());
        }
    }
    entries
}

/// The backquoted spans of a line: `a`, `b` → ["a", "b"].
fn code_spans(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

/// The SQLSTATEs given to `raise_with("XXXXX", ...)` in one source file.
fn raise_with_codes(source: &str) -> Vec<String> {
    let mut codes = Vec::new();
    for (pos, _) in source.match_indices("raise_with(") {
        let rest = source[pos + "raise_with(".len()..].trim_start();
        if let Some(code) = rest
            .strip_prefix('"')
            .and_then(|r| r.get(..5))
            .filter(|c| is_sqlstate(c))
        {
            codes.push(code.to_string());
        }
    }
    codes
}

/// The SQLSTATEs `TviewError::sqlstate` returns (`=> "XXXXX"`).
fn core_codes(source: &str) -> Vec<String> {
    source
        .match_indices("=> \"")
        .filter_map(|(pos, m)| source.get(pos + m.len()..pos + m.len() + 5))
        .filter(|c| is_sqlstate(c))
        .map(str::to_string)
        .collect()
}

/// The variants of `pub enum TviewError`.
fn core_variants(source: &str) -> Vec<String> {
    let start = source
        .find("pub enum TviewError {")
        .expect("core/src/error.rs defines pub enum TviewError");
    let body = &source[start..];
    let end = body.find("\n}").expect("the enum ends");
    body[..end]
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| l.starts_with(|c: char| c.is_ascii_uppercase()))
        .map(|l| {
            l.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

/// The SQLSTATEs of `ERRCODE = 'XXXXX'` in SQL scripts.
fn sql_codes(source: &str) -> Vec<String> {
    source
        .match_indices("ERRCODE = '")
        .filter_map(|(pos, m)| source.get(pos + m.len()..pos + m.len() + 5))
        .filter(|c| is_sqlstate(c))
        .map(str::to_string)
        .collect()
}

fn files_in(dir: &str, ext: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("listing {dir}: {e}"))
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(ext))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    files.sort();
    files
}

/// Problems with one `Tested by` reference (`path::test_fn`).
fn check_test_reference(reference: &str, sqlstate: &str) -> Option<String> {
    let Some((path, test)) = reference.rsplit_once("::") else {
        return Some(format!("`{reference}` is not `path::test_fn`"));
    };
    let full = root().join(path);
    let Ok(source) = std::fs::read_to_string(&full) else {
        return Some(format!("`{reference}`: {path} does not exist"));
    };
    if test.is_empty() || !source.contains(&format!("fn {test}(")) {
        return Some(format!("`{reference}`: {path} has no `fn {test}(`"));
    }
    if !source.contains(&format!("\"{sqlstate}\"")) {
        return Some(format!(
            "`{reference}`: {path} never asserts \"{sqlstate}\""
        ));
    }
    None
}

#[test]
fn every_error_is_documented_and_tested() {
    let reference = read("docs/ERROR_REFERENCE.md");
    let entries = parse_reference(&reference);
    assert!(
        entries.len() > 20,
        "docs/ERROR_REFERENCE.md: found only {} entries",
        entries.len()
    );
    let mut problems = Vec::new();
    for e in &entries {
        let what = e.what();
        match CONDITIONS.iter().find(|(code, _)| *code == e.sqlstate) {
            _ if !is_sqlstate(&e.sqlstate) => problems.push(format!(
                "{what}: an entry's heading must start with its SQLSTATE"
            )),
            None => problems.push(format!(
                "{what}: SQLSTATE {} is not in CONDITIONS of tests/tests/error_reference.rs",
                e.sqlstate
            )),
            Some((_, name)) if *name != e.condition => problems.push(format!(
                "{what}: the condition name of {} is {name}",
                e.sqlstate
            )),
            Some(_) => {}
        }
        for field in ["Message", "Cause", "Fix", "Raised by"] {
            if e.field(field).is_none_or(str::is_empty) {
                problems.push(format!("{what}: no `- **{field}:**` line"));
            }
        }
        if let Some(raised) = e.field("Raised by") {
            for span in code_spans(raised) {
                if (span.ends_with(".rs") || span.ends_with(".sql")) && !root().join(span).exists()
                {
                    problems.push(format!("{what}: Raised by: {span} does not exist"));
                }
            }
        }
        match e.field("Tested by") {
            None if e.section == INTERNAL_SECTION => {}
            None => problems.push(format!(
                "{what}: no `- **Tested by:**` line (only entries under \"{INTERNAL_SECTION}\" may have none)"
            )),
            Some(tested) => {
                let refs = code_spans(tested);
                if refs.is_empty() {
                    problems.push(format!("{what}: Tested by names no `path::test_fn`"));
                }
                for r in refs {
                    if let Some(p) = check_test_reference(r, &e.sqlstate) {
                        problems.push(format!("{what}: {p}"));
                    }
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "docs/ERROR_REFERENCE.md:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn every_sqlstate_we_raise_is_in_the_reference() {
    let reference = read("docs/ERROR_REFERENCE.md");
    let documented: BTreeSet<String> = parse_reference(&reference)
        .into_iter()
        .map(|e| e.sqlstate)
        .collect();
    let mut raised: Vec<(String, String)> = Vec::new();
    for file in files_in("ext/src", ".rs") {
        raised.extend(
            raise_with_codes(&read(&file))
                .into_iter()
                .map(|c| (c, file.clone())),
        );
    }
    for file in files_in("ext/sql", ".sql") {
        raised.extend(
            sql_codes(&read(&file))
                .into_iter()
                .map(|c| (c, file.clone())),
        );
    }
    let core = read("core/src/error.rs");
    raised.extend(
        core_codes(&core)
            .into_iter()
            .map(|c| (c, "core/src/error.rs".to_string())),
    );
    // The scan itself must find what we know is there.
    for code in ["0A000", "40001", "42809", "XX000", "42P17"] {
        assert!(
            raised.iter().any(|(c, _)| c == code),
            "the scan of the sources no longer finds {code}: update tests/tests/error_reference.rs"
        );
    }
    let missing: BTreeSet<String> = raised
        .iter()
        .filter(|(c, _)| !documented.contains(c))
        .map(|(c, f)| format!("{c} (raised in {f})"))
        .collect();
    assert!(
        missing.is_empty(),
        "SQLSTATEs raised but not documented in docs/ERROR_REFERENCE.md: {missing:?}"
    );
    let variants = core_variants(&core);
    assert!(
        variants.len() >= 5,
        "found only {variants:?} in pub enum TviewError"
    );
    let undocumented: Vec<&String> = variants
        .iter()
        .filter(|v| !reference.contains(&format!("TviewError::{v}")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "TviewError variants not named in docs/ERROR_REFERENCE.md: {undocumented:?}"
    );
}

#[test]
fn the_scanners_read_what_they_should() {
    let src = "raise_with(\n    \"22023\",\n    x)\nfn raise_with(\n sqlstate: &str)\ncrate::error::raise_with(\"40001\", m)";
    assert_eq!(raise_with_codes(src), ["22023", "40001"]);
    assert_eq!(
        core_codes("X { .. } => \"42703\", // c\nY => \"XX000\","),
        ["42703", "XX000"]
    );
    assert_eq!(
        sql_codes("RAISE EXCEPTION 'x' USING ERRCODE = '0A000', DETAIL = 'y'"),
        ["0A000"]
    );
    assert_eq!(
        core_variants(
            "pub enum TviewError {\n    #[error(\"a\")]\n    A { x: String },\n    B(String),\n    C,\n}\n"
        ),
        ["A", "B", "C"]
    );
    let entries = parse_reference(
        "## S\n\n### 0A000 feature_not_supported — t\n\n- **Message:** `m`\n```\n### not an entry\n```\n## Internal errors\n### XX000 internal_error — i\n- **Fix:** f\n",
    );
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].field("Message"), Some("`m`"));
    assert_eq!(entries[1].section, INTERNAL_SECTION);
    assert_eq!(entries[1].field("Fix"), Some("f"));
    assert_eq!(code_spans("`a::b`, `c`"), ["a::b", "c"]);
}
