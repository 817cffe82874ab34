//! `tviews top`: the live console (crate `tviews-tui`) on a server, or on a recording.
//!
//! This module owns the connection: [`LiveSource`] is the console's `SnapshotSource` over
//! tokio-postgres. Each fetch is one `SELECT pg_tviews_snapshot()::text` (nothing else is
//! queried per tick: the console reads only what the extension exposes, DESIGN.md §8), and
//! Enter runs `pg_tviews_explain(tview, 'text', verbose)`. When the server goes away the fetch
//! says so and the console backs off; the next fetch connects again with the settings and the
//! password that worked the first time (never a prompt: the screen belongs to the console).

use std::io::{self, IsTerminal as _};
use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::Client;
use tviews_tui::snapshot;
use tviews_tui::{Config, FetchError, Recorder, ReplaySource, SnapshotSource};

use super::probe::{self, Api};
use crate::conn::{
    self, ConnArgs, ConnTarget, ConnectError, Environment, HostSpec, Password, PasswordPolicy,
    PasswordSource, Settings, SystemFiles, Target,
};
use crate::failure::{Failure, Outcome, ServerError};
use crate::output::Style;

pub const AFTER_HELP: &str = "\
Keys: q quit · ? help · p or space pause · + - interval · ↑↓ j k select · ← → graph layers
      Enter explain · 1-4 or Tab views (activity, graph, backends, prepared) · s S sort
      / filter · Esc close or clear the filter

Rates are per second of server time between two snapshots; after pg_tviews_stats_reset()
or a server restart they show `reset` for one interval. If the server goes away the
console keeps the last snapshot, says \"reconnecting…\" and reconnects by itself.

Examples:
  tviews top -h /var/tmp/pg_tviews/demo/sock -p 5499 -U postgres tviews_demo
  tviews top --interval 0.5 --record busy.jsonl shop
  tviews top --replay busy.jsonl                 no server needed

docs/CONSOLE.md describes every pane and number.";

#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct TopArgs {
    /// Seconds between snapshots, 0.25 to 3600 (+ and - change it live) [default: 1, or
    /// the pace a replayed recording was made at]
    #[arg(long, value_name = "SECS", value_parser = parse_interval)]
    pub interval: Option<Duration>,

    /// Write every snapshot to FILE, one JSON document per line (replaced if it exists)
    #[arg(long, value_name = "FILE", conflicts_with = "replay")]
    pub record: Option<PathBuf>,

    /// Play a recording made with --record instead of connecting to a server
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,

    #[command(flatten)]
    pub target: ConnTarget,
}

const INTERVAL_RANGE: (f64, f64) = (0.25, 3600.0);

fn parse_interval(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("\"{text}\" is not a number of seconds"))?;
    if !(INTERVAL_RANGE.0..=INTERVAL_RANGE.1).contains(&secs) {
        return Err(format!(
            "the interval must be between {} and {} seconds",
            INTERVAL_RANGE.0, INTERVAL_RANGE.1
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Runs the console until the user quits; prints nothing on success.
pub async fn run(conn_args: &ConnArgs, args: &TopArgs, style: Style) -> Result<Outcome, Failure> {
    if !style.terminal || !io::stdin().is_terminal() {
        return Err(Failure::Other(anyhow::anyhow!(
            "tviews top needs a terminal (for scripts: tviews stats, tviews queue, \
             or SELECT pg_tviews_snapshot())"
        )));
    }
    let mut config = Config {
        // `style.color` is off with --no-color, a non-empty NO_COLOR, or no terminal.
        no_color: !style.color,
        ..Config::default()
    };
    if let Some(path) = &args.replay {
        let source = ReplaySource::open(path).map_err(Failure::Other)?;
        config.server = format!("replay of {}", path.display());
        config.interval = args
            .interval
            .or_else(|| source.recorded_interval())
            .unwrap_or(config.interval)
            .clamp(
                Duration::from_secs_f64(INTERVAL_RANGE.0),
                Duration::from_secs_f64(INTERVAL_RANGE.1),
            );
        tviews_tui::run(source, config).await?;
        return Ok(Outcome::ok(String::new()));
    }
    let mut source = LiveSource::open(conn_args, args.target.conninfo.as_deref()).await?;
    // One snapshot before the screen takes over: a missing function, a permission or a
    // document of another schema_version is reported here, plainly, with its exit code.
    let first = source.fetch().await.map_err(|e| match e {
        FetchError::Disconnected(message) => Failure::ConnectionLost(message),
        other => Failure::Other(anyhow::anyhow!("{other}")),
    })?;
    snapshot::parse(&first).map_err(|e| Failure::Other(anyhow::Error::new(e)))?;
    config.server = source.label.clone();
    config.interval = args.interval.unwrap_or(config.interval);
    match &args.record {
        Some(path) => {
            config.recording = Some(path.display().to_string());
            let recorder = Recorder::create(source, path).map_err(Failure::Other)?;
            tviews_tui::run(recorder, config).await?;
        }
        None => tviews_tui::run(source, config).await?,
    }
    Ok(Outcome::ok(String::new()))
}

/// How long one snapshot may take before the connection is given up as dead (a network that
/// drops packets never fails a read by itself).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(15);

/// The live server: one connection, reopened when it breaks.
pub struct LiveSource {
    settings: Settings,
    client: Option<Client>,
    /// `SELECT "schema"."pg_tviews_snapshot"()::text`, found at connect time.
    snapshot_sql: String,
    explain_sql: String,
    /// `user@host:port/database`, for the header.
    pub label: String,
}

impl LiveSource {
    /// Resolves the connection settings the way psql does and connects, prompting for a
    /// password if needed (before the console takes the screen). Fails like any command:
    /// exit 2 without a connection, 1 without the extension.
    pub async fn open(args: &ConnArgs, positional: Option<&str>) -> Result<LiveSource, Failure> {
        let env = Environment::from_process();
        let mut settings = conn::resolve(&args.request(positional), &env, &SystemFiles)
            .map_err(ConnectError::from)?;
        for w in &settings.warnings {
            eprintln!("tviews: warning: {w}");
        }
        settings.fallback_application_name = "tviews top".to_string();
        let policy =
            PasswordPolicy::from_flags(args.no_password, args.password, io::stdin().is_terminal());
        let mut typed = None;
        let connected = conn::connect(&settings, policy, &mut |prompt| {
            let password = rpassword::prompt_password(prompt)?;
            typed = Some(password.clone());
            Ok(password)
        })
        .await?;
        if let Some(value) = typed {
            for target in &mut settings.targets {
                target.password = Some(Password {
                    value: value.clone(),
                    source: PasswordSource::Prompt,
                });
            }
        }
        let label = label(&settings.user, &settings.dbname, &connected.target);
        let mut source = LiveSource {
            settings,
            client: None,
            snapshot_sql: String::new(),
            explain_sql: String::new(),
            label,
        };
        source.adopt(connected.client).await?;
        Ok(source)
    }

    /// Finds the extension's functions on a new connection and keeps it.
    async fn adopt(&mut self, client: Client) -> Result<(), Failure> {
        let api = Api::require(&client).await?;
        let schema = Some(api.schema.as_str());
        let Some(snapshot) = probe::find_function(&client, schema, "pg_tviews_snapshot").await?
        else {
            return Err(Failure::Other(anyhow::anyhow!(
                "pg_tviews in database \"{}\" has no pg_tviews_snapshot(): update it \
                 (ALTER EXTENSION pg_tviews UPDATE)",
                api.database
            )));
        };
        // PostgreSQL's JIT takes the snapshot's function scans (estimated at 1000 rows each)
        // for an expensive query and compiles it on every call: about 750 ms of server CPU
        // for a document built in 10 ms. The console's own session does without.
        client.batch_execute("SET jit = off").await?;
        self.snapshot_sql = format!("SELECT {snapshot}::text");
        self.explain_sql = format!("SELECT {}($1, 'text', $2)", api.object("pg_tviews_explain"));
        self.client = Some(client);
        Ok(())
    }

    /// A new connection after a loss: the same settings, never a prompt.
    async fn reconnect(&mut self) -> Result<(), FetchError> {
        let mut no_prompt = |_: &str| -> io::Result<String> {
            Err(io::Error::other("no prompt while in the console"))
        };
        let connected = conn::connect(&self.settings, PasswordPolicy::Never, &mut no_prompt)
            .await
            .map_err(|e| FetchError::Disconnected(first_line(&e.to_string())))?;
        self.adopt(connected.client)
            .await
            .map_err(|e| FetchError::Failed(first_line(&e.to_string())))
    }

    /// Turns a query error into what the console should do about it.
    fn classify(&mut self, error: &tokio_postgres::Error) -> FetchError {
        let lost = error.is_closed()
            || self.client.as_ref().is_none_or(Client::is_closed)
            || match error.as_db_error() {
                // The server is shutting down or starting up, or the session was killed.
                Some(db) => {
                    db.code().code().starts_with("57P") || db.code().code().starts_with("08")
                }
                // No answer from the server at all: the socket broke.
                None => true,
            };
        if lost {
            self.client = None;
            let message = match error.as_db_error() {
                Some(db) => db.message().to_string(),
                None => error.to_string(),
            };
            FetchError::Disconnected(message)
        } else {
            FetchError::Failed(server_message(error))
        }
    }
}

impl SnapshotSource for LiveSource {
    async fn fetch(&mut self) -> Result<String, FetchError> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = None;
            self.reconnect().await?;
        }
        let Some(client) = &self.client else {
            return Err(FetchError::Disconnected("not connected".into()));
        };
        let answer =
            tokio::time::timeout(ANSWER_TIMEOUT, client.query_one(&self.snapshot_sql, &[]));
        match answer.await {
            Err(_) => {
                self.client = None;
                Err(FetchError::Disconnected(format!(
                    "no answer in {}s",
                    ANSWER_TIMEOUT.as_secs()
                )))
            }
            Ok(Ok(row)) => row
                .try_get::<_, String>(0)
                .map_err(|e| FetchError::Failed(e.to_string())),
            Ok(Err(error)) => Err(self.classify(&error)),
        }
    }

    async fn explain(&mut self, tview: String, verbose: bool) -> Result<String, String> {
        let Some(client) = &self.client else {
            return Err("not connected to the server".into());
        };
        match client
            .query_one(&self.explain_sql, &[&tview, &verbose])
            .await
        {
            Ok(row) => row.try_get::<_, String>(0).map_err(|e| e.to_string()),
            Err(error) => Err(server_message(&error)),
        }
    }
}

/// `ERROR: message (SQLSTATE)` plus detail and hint, on one line each.
fn server_message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => ServerError::from(db).render().trim_end().to_string(),
        None => error.to_string(),
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

/// `user@host:port/database`, with the socket directory as the host for a socket.
fn label(user: &str, dbname: &str, target: &Target) -> String {
    let host = match &target.host {
        HostSpec::Socket(dir) => dir.display().to_string(),
        HostSpec::Tcp(host) => host.clone(),
    };
    format!("{user}@{host}:{}/{dbname}", target.port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_are_seconds_within_range() {
        assert_eq!(parse_interval("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("2"), Ok(Duration::from_secs(2)));
        assert!(
            parse_interval("0.1")
                .unwrap_err()
                .contains("between 0.25 and 3600")
        );
        assert!(parse_interval("soon").unwrap_err().contains("not a number"));
    }

    #[test]
    fn the_header_names_user_host_port_and_database() {
        let socket = Target {
            host: HostSpec::Socket("/var/run/postgresql".into()),
            hostaddr: None,
            port: 5432,
            password: None,
        };
        assert_eq!(
            label("postgres", "shop", &socket),
            "postgres@/var/run/postgresql:5432/shop"
        );
    }

    #[test]
    fn the_usage_reads_like_the_issue() -> anyhow::Result<()> {
        use anyhow::Context as _;
        use clap::Parser as _;
        let cli = crate::Cli::try_parse_from([
            "tviews",
            "top",
            "--interval",
            "0.5",
            "--record",
            "x.jsonl",
            "shop",
        ])
        .context("parsing")?;
        let crate::commands::Command::Top(args) = cli.command else {
            anyhow::bail!("not top: {:?}", cli.command);
        };
        assert_eq!(args.interval, Some(Duration::from_millis(500)));
        assert_eq!(args.target.conninfo.as_deref(), Some("shop"));
        assert!(
            crate::Cli::try_parse_from(["tviews", "top", "--record", "a", "--replay", "b"])
                .is_err()
        );
        Ok(())
    }
}
