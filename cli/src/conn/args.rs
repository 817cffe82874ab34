//! The psql-style connection flags, for any clap command to flatten in.

use clap::builder::PossibleValue;

use super::resolve::{ConnRequest, SslMode};

/// psql's connection options. Every field is `global`, so the flags work before or
/// after the subcommand (`tviews -p 5433 status` and `tviews status -p 5433`).
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
#[command(next_help_heading = "Connection options")]
pub struct ConnArgs {
    /// Database server host or socket directory [env: PGHOST]
    #[arg(short = 'h', long, global = true, value_name = "HOSTNAME")]
    pub host: Option<String>,

    /// Database server port [env: PGPORT]
    #[arg(short = 'p', long, global = true, value_name = "PORT")]
    pub port: Option<String>,

    /// Database user name [env: PGUSER]
    #[arg(short = 'U', long, global = true, value_name = "USERNAME")]
    pub username: Option<String>,

    /// Database name, or a conninfo string / postgresql:// URI [env: PGDATABASE]
    #[arg(short = 'd', long, global = true, value_name = "DBNAME")]
    pub dbname: Option<String>,

    /// Never prompt for a password
    #[arg(short = 'w', long, global = true)]
    pub no_password: bool,

    /// Prompt for a password before connecting
    #[arg(short = 'W', long, global = true, conflicts_with = "no_password")]
    pub password: bool,

    /// TLS mode, as libpq's sslmode [env: PGSSLMODE]
    #[arg(long, global = true, value_name = "MODE")]
    pub sslmode: Option<SslMode>,
}

impl ConnArgs {
    /// The flags as plain data for [`super::resolve`].
    pub fn request(&self, positional: Option<&str>) -> ConnRequest {
        ConnRequest {
            host: self.host.clone(),
            port: self.port.clone(),
            username: self.username.clone(),
            dbname: self.dbname.clone(),
            positional: positional.map(str::to_string),
            sslmode: self.sslmode,
        }
    }
}

/// The trailing positional argument of a subcommand (clap cannot make a positional
/// argument global, so each subcommand flattens this in).
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnTarget {
    /// Database name, conninfo string ("host=... dbname=...") or postgresql:// URI
    #[arg(value_name = "CONNINFO")]
    pub conninfo: Option<String>,
}

impl clap::ValueEnum for SslMode {
    fn value_variants<'a>() -> &'a [Self] {
        &SslMode::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.as_str()))
    }
}
