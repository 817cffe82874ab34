//! Running the built `tviews` binary and checking what it did, for every end-to-end
//! test file (each is its own crate and uses a subset, hence the allow).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_tviews");

/// Runs `tviews` with only the given environment and `HOME`: the developer's PG*
/// variables, DATABASE_URL or ~/.pgpass must not leak into a test.
pub fn tviews(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().env("HOME", home).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    match cmd.output() {
        Ok(out) => out,
        Err(e) => panic!("could not run {BIN}: {e}"),
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit code and both streams, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    )
}

/// Asserts the exit code, showing both streams when it is wrong.
pub fn expect_code(out: &Output, code: i32, what: &str) {
    assert_eq!(out.status.code(), Some(code), "{what}: {}", describe(out));
}

/// Asserts the exit code and a piece of stderr.
pub fn fails_with(out: &Output, code: i32, text: &str) {
    expect_code(out, code, text);
    assert!(
        stderr(out).contains(text),
        "expected {text:?} in stderr\n{}",
        describe(out)
    );
}

/// Exit code 0 and stdout parsed as JSON.
pub fn json(out: &Output, what: &str) -> Value {
    expect_code(out, 0, what);
    match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(e) => panic!("{what}: stdout is not JSON ({e}):\n{}", stdout(out)),
    }
}
