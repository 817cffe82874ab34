//! The subcommands. Each lives in its own module with the same shape:
//! `gather` (SQL, async) builds a report value, `render` (pure) turns it into a table,
//! a text tree, JSON or dot; [`run`] connects and dispatches.
//!
//! Adding one: a module here, a variant of [`Command`] (taking [`ConnTarget`] when
//! it has no list of names), an arm in [`Command::target`], [`Command::check`] and [`run`].

pub mod explain;
pub mod graph;
pub mod list;
pub mod probe;
pub mod queue;
pub mod refresh;
pub mod stats;
pub mod status;
pub mod top;
pub mod verify;
pub mod version;
pub mod workload;

use crate::conn::{self, ConnArgs, ConnTarget};
use crate::failure::{Failure, Outcome};
use crate::output::{Format, Style};

#[derive(clap::Subcommand, Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Show the versions of tviews, the server and the pg_tviews extension
    #[command(disable_help_flag = true)]
    Version(ConnTarget),
    /// Show the server, the extension, the number of TVIEWs and health checks
    #[command(disable_help_flag = true)]
    Status(ConnTarget),
    /// List the TVIEWs: key, rows, size, sources, last refresh, main counters
    #[command(disable_help_flag = true)]
    List(ConnTarget),
    /// How a TVIEW is maintained: its graph, key paths and refresh statements
    #[command(disable_help_flag = true, after_help = explain::AFTER_HELP)]
    Explain(explain::ExplainArgs),
    /// Compare TVIEWs with their definitions, both ways; exit 1 on any difference
    #[command(disable_help_flag = true)]
    Verify(verify::VerifyArgs),
    /// Rebuild TVIEWs from their definitions now (a repair tool)
    #[command(disable_help_flag = true)]
    Refresh(refresh::RefreshArgs),
    /// Show the refresh statistics: per TVIEW, per source, plan cache, last 24 hours
    #[command(disable_help_flag = true)]
    Stats(stats::StatsArgs),
    /// Show pending TVIEW work, value-lock waits and prepared transactions, live
    #[command(disable_help_flag = true)]
    Queue(ConnTarget),
    /// Show the dependency graph of every TVIEW, or what a change to one source reaches
    #[command(disable_help_flag = true)]
    Graph(graph::GraphArgs),
    /// Watch refreshes live: activity, graph, queues, lock waits, prepared transactions
    #[command(disable_help_flag = true, after_help = top::AFTER_HELP)]
    Top(top::TopArgs),
    /// Write to the demo read model from several sessions, with prepared transactions
    // Hidden: it serves the demo and the console's tests (documented in docs/CLI.md).
    #[command(disable_help_flag = true, hide = true)]
    Workload(workload::WorkloadArgs),
}

/// For the commands that take a list of names instead of a positional connection
/// string (they connect with -d, the flags or the environment).
static NO_TARGET: ConnTarget = ConnTarget { conninfo: None };

impl Command {
    /// The positional connection argument of whichever subcommand this is.
    pub fn target(&self) -> &ConnTarget {
        match self {
            Command::Version(t) | Command::Status(t) | Command::List(t) | Command::Queue(t) => t,
            Command::Explain(a) => &a.target,
            Command::Stats(a) => &a.target,
            Command::Graph(a) => &a.target,
            Command::Workload(a) => &a.target,
            Command::Top(a) => &a.target,
            Command::Verify(_) | Command::Refresh(_) => &NO_TARGET,
        }
    }

    /// Whether the options make sense together, before connecting (a usage error, exit
    /// 1, otherwise).
    pub fn check(&self, format: Format) -> Result<(), String> {
        let dot = matches!(self, Command::Explain(_) | Command::Graph(_));
        if format == Format::Dot && !dot {
            return Err("--format dot is only for explain and graph".into());
        }
        if let Command::Explain(a) = self {
            a.check(format)?;
        }
        if matches!(self, Command::Top(_)) && format != Format::Table {
            return Err("--format is not available with top (it draws a console)".into());
        }
        Ok(())
    }
}

/// Connects and runs `command`, returning what to print and the exit code.
pub async fn run(
    conn_args: &ConnArgs,
    command: &Command,
    style: Style,
) -> Result<Outcome, Failure> {
    if let Command::Workload(args) = command {
        // Opens its own sessions, one per client.
        return workload::run(conn_args, args).await;
    }
    if let Command::Top(args) = command {
        // Connects (and reconnects) by itself, or replays a file without a server.
        return top::run(conn_args, args, style).await;
    }
    let conn = conn::open(conn_args, command.target().conninfo.as_deref()).await?;
    let client = &conn.client;
    let outcome = match command {
        Command::Version(_) => {
            Outcome::ok(version::render(&version::gather(client).await?, style)?)
        }
        Command::Status(_) => Outcome::ok(status::render(&status::gather(&conn).await?, style)?),
        Command::List(_) => Outcome::ok(list::render(&list::gather(client).await?, style)?),
        Command::Explain(args) => explain::run(client, args, style).await?,
        Command::Verify(args) => verify::run(client, args, style).await?,
        Command::Refresh(args) => refresh::run(client, args, style).await?,
        Command::Stats(args) => {
            Outcome::ok(stats::render(&stats::gather(client, args).await?, style)?)
        }
        Command::Queue(_) => Outcome::ok(queue::render(&queue::gather(client).await?, style)?),
        Command::Graph(args) => {
            Outcome::ok(graph::render(&graph::gather(client, args).await?, style)?)
        }
        Command::Workload(_) | Command::Top(_) => unreachable!("run before connecting"),
    };
    Ok(outcome)
}
