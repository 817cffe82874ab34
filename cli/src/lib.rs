//! `tviews`, the admin command line of pg_tviews, as a library: the binary in
//! `main.rs` only parses arguments and calls [`run`].
//!
//! * [`conn`]: psql-compatible connection options (reused by `tviews top`);
//! * [`commands`]: one module per subcommand, each `gather` (SQL) + `render` (pure);
//! * [`output`]: `--format`, colour, tables; [`failure`]: errors and exit codes;
//! * [`tree`]: `cargo tree`-style text trees; [`progress`]: spinners on stderr;
//! * [`cli`]: the clap definition.

pub mod cli;
pub mod commands;
pub mod conn;
pub mod failure;
pub mod output;
pub mod progress;
pub mod tree;

use std::io::{IsTerminal, Write};

pub use cli::Cli;
pub use failure::{EXIT_CONNECTION, EXIT_ERROR, EXIT_OK, Failure, Outcome};

use output::{Style, use_color};

/// Runs a parsed command line to completion and returns the process exit code.
pub fn run(cli: &Cli) -> u8 {
    let terminal = std::io::stdout().is_terminal();
    let no_color_env = std::env::var("NO_COLOR").ok();
    let style = Style {
        format: cli.output.format,
        color: use_color(cli.output.no_color, no_color_env.as_deref(), terminal),
        terminal,
        progress: std::io::stderr().is_terminal(),
    };
    // Checked before connecting: a bad combination is a usage error.
    if let Err(message) = cli.command.check(cli.output.format) {
        eprintln!("tviews: error: {message}");
        return EXIT_ERROR;
    }
    // One thread is plenty for one connection, and keeps the 2-core CI machine free.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tviews: error: could not start the async runtime: {e}");
            return EXIT_ERROR;
        }
    };
    match runtime.block_on(commands::run(&cli.conn, &cli.command, style)) {
        Ok(outcome) => {
            // A closed pipe (`tviews status | head -1`) is not an error worth a message.
            let mut out = std::io::stdout().lock();
            let written = out
                .write_all(outcome.stdout.as_bytes())
                .and_then(|()| out.flush());
            eprint!("{}", outcome.stderr);
            match written {
                Ok(()) => outcome.code,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => outcome.code,
                Err(e) => {
                    eprintln!("tviews: error: could not write output: {e}");
                    EXIT_ERROR
                }
            }
        }
        Err(failure) => {
            eprint!("{}", failure.render());
            failure.exit_code()
        }
    }
}
