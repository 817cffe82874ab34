//! The command line of `tviews`.

use clap::{ArgAction, Parser};

use crate::commands::Command;
use crate::conn::ConnArgs;
use crate::output::OutputArgs;

/// Shown by `--help` after the options: how connections are resolved and what the exit
/// codes mean (the same text as `cli/README.md`).
pub const AFTER_HELP: &str = "\
Connection settings, highest precedence first:
  1. -h, -p, -U, --sslmode, and -d NAME (or CONNINFO) when it is a plain database name
  2. a conninfo string (\"host=... dbname=...\") or postgresql:// URI given as -d or CONNINFO
  3. DATABASE_URL, only when neither -d nor CONNINFO is given
  4. the service named by service= or PGSERVICE (PGSERVICEFILE or ~/.pg_service.conf,
     then $PGSYSCONFDIR/pg_service.conf)
  5. PGHOST, PGHOSTADDR, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGPASSFILE, PGSSLMODE,
     PGSSLROOTCERT, PGSSLCERT, PGSSLKEY, PGAPPNAME, PGCONNECT_TIMEOUT, PGOPTIONS
  6. defaults: the socket in /var/run/postgresql or /tmp (the first that has one),
     else localhost; port 5432; user = OS user; database = user name; sslmode prefer
Password: -W prompts; else password= or PGPASSWORD; else ~/.pgpass (or PGPASSFILE; ignored
if group or others can read it); else a prompt if the server asks, stdin is a terminal and
-w is not given.

Output: colour only when stdout is a terminal and neither --no-color nor NO_COLOR is set.

Exit status:
  0  success (status and version report an extension that is not installed)
  1  error: bad usage, a server error (printed with its SQLSTATE), the extension missing
     (for the other commands), a TVIEW differing from its definition (verify), a
     refresh that would fail at commit (explain --for)
  2  could not connect to the server, or the connection was lost";

/// tviews: administer pg_tviews, the transactional incrementally maintained views.
#[derive(Parser, Clone, Debug, PartialEq, Eq)]
#[command(
    name = "tviews",
    version,
    // -h is the host, as in psql; help is --help (or -?).
    disable_help_flag = true,
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Print help
    // Declared first so that it is listed under "Options", not the flattened headings.
    #[arg(short = '?', long, action = ArgAction::Help, global = true)]
    help: Option<bool>,

    #[command(flatten)]
    pub conn: ConnArgs,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::SslMode;
    use crate::output::Format;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("tviews").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn psql_flags_before_or_after_the_subcommand() {
        let a = parse(&[
            "-h", "/tmp", "-p", "5499", "-U", "postgres", "-d", "app", "status",
        ]);
        let b = parse(&[
            "status", "-h", "/tmp", "-p", "5499", "-U", "postgres", "-d", "app",
        ]);
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a, b);
        assert_eq!(a.conn.host.as_deref(), Some("/tmp"));
        assert_eq!(a.conn.port.as_deref(), Some("5499"));
        assert_eq!(a.conn.username.as_deref(), Some("postgres"));
        assert_eq!(a.conn.dbname.as_deref(), Some("app"));
    }

    #[test]
    fn positional_tls_and_output_flags() {
        let c = parse(&[
            "version",
            "postgresql://u@h/db",
            "--sslmode",
            "verify-full",
            "--format",
            "json",
            "--no-color",
            "-w",
        ])
        .unwrap();
        assert_eq!(
            c.command.target().conninfo.as_deref(),
            Some("postgresql://u@h/db")
        );
        assert_eq!(c.conn.sslmode, Some(SslMode::VerifyFull));
        assert_eq!(c.output.format, Format::Json);
        assert!(c.output.no_color && c.conn.no_password);
    }

    #[test]
    fn usage_errors() {
        assert!(parse(&["status", "-w", "-W"]).is_err());
        assert!(parse(&["status", "--sslmode", "strict"]).is_err());
        assert!(parse(&["status", "--format", "xml"]).is_err());
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn help_text() {
        let help = Cli::command().render_help().to_string();
        insta::assert_snapshot!(help);
    }
}
