//! Where the system PostgreSQL lives, from `pg_config` (asked once per process).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use crate::os;

/// The error `Cluster::create_database_with_extension` returns when the extension is missing.
pub const EXTENSION_NOT_INSTALLED: &str = "pg_tviews is not installed into the system PostgreSQL: \
     run scripts/test.sh, or `cargo pgrx install -p pg_tviews --pg-config /usr/bin/pg_config`";

struct PgConfig {
    bindir: PathBuf,
    sharedir: PathBuf,
}

/// `pg_config --bindir --sharedir`, from `$PG_CONFIG` or the `pg_config` on `PATH`; `None`
/// (after one warning on stderr) when it cannot be run.
fn pg_config() -> Option<&'static PgConfig> {
    static CONFIG: OnceLock<Option<PgConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let program = std::env::var_os("PG_CONFIG").unwrap_or_else(|| "pg_config".into());
            let asked =
                os::run(Command::new(program).args(["--bindir", "--sharedir"])).and_then(|out| {
                    let text = String::from_utf8_lossy(&out.stdout).into_owned();
                    match text.lines().collect::<Vec<_>>()[..] {
                        [bindir, sharedir] => Ok(PgConfig {
                            bindir: bindir.trim().into(),
                            sharedir: sharedir.trim().into(),
                        }),
                        _ => anyhow::bail!("unexpected output of pg_config: {text:?}"),
                    }
                });
            asked
                .inspect_err(|e| {
                    eprintln!(
                        "pg_tviews harness: cannot ask pg_config where PostgreSQL is ({e:#}); \
                         looking for its programs on PATH"
                    );
                })
                .ok()
        })
        .as_ref()
}

/// The full path of a PostgreSQL program (`initdb`, `pg_ctl`, `psql`, ...) in
/// `pg_config --bindir`; the bare name (found on `PATH`) when pg_config is unavailable.
pub fn pg_bin(program: &str) -> PathBuf {
    match pg_config() {
        Some(config) => config.bindir.join(program),
        None => PathBuf::from(program),
    }
}

/// Whether `pg_tviews.control` is in the system PostgreSQL's extension directory, i.e. whether
/// `CREATE EXTENSION pg_tviews` can work. Tests call it to fail fast with a clear message.
pub fn extension_installed() -> bool {
    pg_config().is_some_and(|config| {
        config
            .sharedir
            .join("extension")
            .join("pg_tviews.control")
            .is_file()
    })
}
