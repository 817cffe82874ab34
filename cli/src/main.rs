//! The `tviews` binary: parse, run, exit with psql's codes.

use std::process::ExitCode;

use clap::Parser;
use tviews_cli::{Cli, EXIT_ERROR, EXIT_OK};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap exits 2 on usage errors, which psql reserves for connection failures;
            // psql says 1 for a bad option. --help and --version are not errors.
            let code = if e.use_stderr() { EXIT_ERROR } else { EXIT_OK };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    ExitCode::from(tviews_cli::run(&cli))
}
