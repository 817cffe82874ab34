//! The subcommands. Each lives in its own module with the same shape:
//! `gather` (SQL, async) builds a report value, `render` (pure) turns it into table or
//! JSON text; [`run`] connects and dispatches.
//!
//! Adding one (planned: `list`, `explain`, `verify`, `refresh`, `stats`, `queue`,
//! `graph`, and `top`, the live console in `tviews-tui` that reuses [`crate::conn`]):
//! a module here, a variant of [`Command`] taking [`ConnTarget`] (plus its own
//! arguments), an arm in [`Command::target`] and in [`run`].

pub mod probe;
pub mod status;
pub mod version;

use crate::conn::{self, ConnArgs, ConnTarget};
use crate::failure::Failure;
use crate::output::Style;

#[derive(clap::Subcommand, Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Show the versions of tviews, the server and the pg_tviews extension
    #[command(disable_help_flag = true)]
    Version(ConnTarget),
    /// Show the server, the extension, the number of TVIEWs and health checks
    #[command(disable_help_flag = true)]
    Status(ConnTarget),
}

impl Command {
    /// The positional connection argument of whichever subcommand this is.
    pub fn target(&self) -> &ConnTarget {
        match self {
            Command::Version(t) | Command::Status(t) => t,
        }
    }
}

/// Connects and runs `command`, returning what to print on stdout.
pub async fn run(conn_args: &ConnArgs, command: &Command, style: Style) -> Result<String, Failure> {
    let conn = conn::open(conn_args, command.target().conninfo.as_deref()).await?;
    let text = match command {
        Command::Version(_) => version::render(&version::gather(&conn.client).await?, style)?,
        Command::Status(_) => status::render(&status::gather(&conn).await?, style)?,
    };
    Ok(text)
}
