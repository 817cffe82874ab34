//! Connection options that speak psql.
//!
//! tokio-postgres reads no environment variables and no password file, so this module
//! does what libpq does for psql, and `tviews top` reuses it.
//!
//! # Where each setting comes from
//!
//! Highest precedence first; the first source that sets a keyword wins, keyword by
//! keyword:
//!
//! 1. explicit flags: `-h/--host`, `-p/--port`, `-U/--username`, `--sslmode`, and
//!    `-d NAME` or a positional `NAME` when it is a plain database name;
//! 2. the connection string given with `-d` or as the trailing positional argument, when
//!    it is a conninfo string (`host=... dbname=...`) or a URI (`postgresql://...`);
//!    (psql lets such a string override `-h/-p/-U`; tviews gives the flag the last word);
//! 3. `DATABASE_URL` (a URI or conninfo string), used only when neither `-d` nor a
//!    positional argument is given;
//! 4. the section of a connection service file named by `service=` or `PGSERVICE`
//!    (`PGSERVICEFILE` or `~/.pg_service.conf`, then `$PGSYSCONFDIR/pg_service.conf`);
//! 5. `PG*` variables: `PGHOST`, `PGHOSTADDR`, `PGPORT`, `PGUSER`, `PGDATABASE`,
//!    `PGPASSWORD`, `PGPASSFILE`, `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`,
//!    `PGAPPNAME`, `PGCONNECT_TIMEOUT`, `PGOPTIONS`, `PGTARGETSESSIONATTRS`,
//!    `PGCHANNELBINDING`;
//! 6. libpq's defaults: host = the first of `/var/run/postgresql` and `/tmp` that holds
//!    the socket `.s.PGSQL.<port>`, else `localhost`; port 5432; user = the OS user;
//!    database = the user name; sslmode `prefer`.
//!
//! The password: `-W` prompts first; otherwise `password=` from the sources above
//! (including `PGPASSWORD`); otherwise the password file (`passfile=`, `PGPASSFILE` or
//! `~/.pgpass`, see [`pgpass`]); otherwise, if the server asks for one and stdin is a
//! terminal and `-w` was not given, a prompt.
//!
//! # Layout
//!
//! * [`params`]: keywords and one layer of values; [`conninfo`]: the two string syntaxes;
//!   [`service`], [`pgpass`]: the files; [`resolve`]: stacking it all into [`Settings`]
//!   (pure: environment and files come in as [`Environment`] and [`Files`]);
//! * [`tls`]: the sslmode plan (pure) and the OpenSSL connector;
//! * [`connect`]: trying the targets; [`args`]: the clap flags; [`open`] ties it together.

pub mod args;
pub mod connect;
pub mod conninfo;
pub mod inputs;
pub mod params;
pub mod pgpass;
pub mod resolve;
pub mod service;
pub mod tls;

use std::io::IsTerminal;

pub use args::{ConnArgs, ConnTarget};
pub use connect::{AttemptFailure, ConnectError, Connected, PasswordPolicy, connect};
pub use conninfo::{ConnInfoError, is_connection_string, parse_connection_string};
pub use inputs::{Environment, Files, MemoryFiles, SystemFiles};
pub use params::{Keyword, Params, Source};
pub use resolve::{
    ConnRequest, HostSpec, Password, PasswordSource, ResolveError, Settings, SslMode, Target,
    resolve,
};

/// Resolves `args` (plus the positional connection argument) against the real
/// environment and files, prints resolution warnings to stderr, and connects, prompting
/// on the terminal if allowed.
pub async fn open(args: &ConnArgs, positional: Option<&str>) -> Result<Connected, ConnectError> {
    let env = Environment::from_process();
    let settings = resolve(&args.request(positional), &env, &SystemFiles)?;
    for w in &settings.warnings {
        eprintln!("tviews: warning: {w}");
    }
    let policy = PasswordPolicy::from_flags(
        args.no_password,
        args.password,
        std::io::stdin().is_terminal(),
    );
    connect(&settings, policy, &mut |prompt| {
        rpassword::prompt_password(prompt)
    })
    .await
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod resolve_tests;
