//! The libpq connection keywords tviews understands, and one layer of values.
//!
//! Every source of settings (flags, a conninfo string, `DATABASE_URL`, a service file,
//! `PG*` variables) is parsed into a [`Params`] layer first; resolution then stacks the
//! layers. Keeping the layers as plain maps makes the precedence rules a one-liner
//! ([`Params::fill_from`]) and lets each parser be tested on its own.

use std::collections::BTreeMap;
use std::fmt;

/// A connection keyword that tviews acts on. Names and environment variables are libpq's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Keyword {
    Host,
    HostAddr,
    Port,
    DbName,
    User,
    Password,
    PassFile,
    Service,
    ConnectTimeout,
    ApplicationName,
    FallbackApplicationName,
    Options,
    SslMode,
    SslRootCert,
    SslCert,
    SslKey,
    TargetSessionAttrs,
    ChannelBinding,
}

impl Keyword {
    pub const ALL: [Keyword; 18] = [
        Keyword::Host,
        Keyword::HostAddr,
        Keyword::Port,
        Keyword::DbName,
        Keyword::User,
        Keyword::Password,
        Keyword::PassFile,
        Keyword::Service,
        Keyword::ConnectTimeout,
        Keyword::ApplicationName,
        Keyword::FallbackApplicationName,
        Keyword::Options,
        Keyword::SslMode,
        Keyword::SslRootCert,
        Keyword::SslCert,
        Keyword::SslKey,
        Keyword::TargetSessionAttrs,
        Keyword::ChannelBinding,
    ];

    /// The keyword as written in a conninfo string.
    pub fn name(self) -> &'static str {
        match self {
            Keyword::Host => "host",
            Keyword::HostAddr => "hostaddr",
            Keyword::Port => "port",
            Keyword::DbName => "dbname",
            Keyword::User => "user",
            Keyword::Password => "password",
            Keyword::PassFile => "passfile",
            Keyword::Service => "service",
            Keyword::ConnectTimeout => "connect_timeout",
            Keyword::ApplicationName => "application_name",
            Keyword::FallbackApplicationName => "fallback_application_name",
            Keyword::Options => "options",
            Keyword::SslMode => "sslmode",
            Keyword::SslRootCert => "sslrootcert",
            Keyword::SslCert => "sslcert",
            Keyword::SslKey => "sslkey",
            Keyword::TargetSessionAttrs => "target_session_attrs",
            Keyword::ChannelBinding => "channel_binding",
        }
    }

    /// The environment variable libpq reads for this keyword, if any.
    pub fn env_var(self) -> Option<&'static str> {
        Some(match self {
            Keyword::Host => "PGHOST",
            Keyword::HostAddr => "PGHOSTADDR",
            Keyword::Port => "PGPORT",
            Keyword::DbName => "PGDATABASE",
            Keyword::User => "PGUSER",
            Keyword::Password => "PGPASSWORD",
            Keyword::PassFile => "PGPASSFILE",
            Keyword::Service => "PGSERVICE",
            Keyword::ConnectTimeout => "PGCONNECT_TIMEOUT",
            Keyword::ApplicationName => "PGAPPNAME",
            Keyword::Options => "PGOPTIONS",
            Keyword::SslMode => "PGSSLMODE",
            Keyword::SslRootCert => "PGSSLROOTCERT",
            Keyword::SslCert => "PGSSLCERT",
            Keyword::SslKey => "PGSSLKEY",
            Keyword::TargetSessionAttrs => "PGTARGETSESSIONATTRS",
            Keyword::ChannelBinding => "PGCHANNELBINDING",
            Keyword::FallbackApplicationName => return None,
        })
    }

    pub fn from_name(name: &str) -> Option<Keyword> {
        Keyword::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Keywords libpq accepts that tviews does not act on. Accepting them (with a warning)
/// keeps a connection string that works for psql working here too, instead of failing
/// on, say, `keepalives=1`.
pub const IGNORED_KEYWORDS: &[&str] = &[
    "client_encoding",
    "gssencmode",
    "gsslib",
    "keepalives",
    "keepalives_count",
    "keepalives_idle",
    "keepalives_interval",
    "krbsrvname",
    "load_balance_hosts",
    "replication",
    "requirepeer",
    "requiressl",
    "ssl_max_protocol_version",
    "ssl_min_protocol_version",
    "sslcompression",
    "sslcrl",
    "sslcrldir",
    "sslpassword",
    "sslsni",
    "tcp_user_timeout",
];

/// Where a value came from; used for precedence and for messages such as
/// "password retrieved from file".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag (`-h`, `-p`, `-U`, `--sslmode`, or `-d NAME` / a positional name).
    Flag,
    /// The conninfo string or URI given with `-d` or as the positional argument.
    ConnString,
    /// The `DATABASE_URL` environment variable.
    DatabaseUrl,
    /// A section of a connection service file.
    ServiceFile(String),
    /// A `PG*` environment variable.
    Env(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => f.write_str("command line"),
            Source::ConnString => f.write_str("connection string"),
            Source::DatabaseUrl => f.write_str("DATABASE_URL"),
            Source::ServiceFile(path) => write!(f, "service file \"{path}\""),
            Source::Env(var) => f.write_str(var),
        }
    }
}

/// One layer of connection settings, all from the same [`Source`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    values: BTreeMap<Keyword, (String, Source)>,
    /// libpq keywords that were given but that tviews ignores (see [`IGNORED_KEYWORDS`]).
    pub ignored: Vec<String>,
}

impl Params {
    pub fn new() -> Params {
        Params::default()
    }

    /// Sets a value. Empty strings count as unset, as they do almost everywhere in libpq
    /// (`host=` means the default host, `PGPORT=` the default port).
    pub fn set(&mut self, key: Keyword, value: impl Into<String>, source: Source) {
        let value = value.into();
        if value.is_empty() {
            self.values.remove(&key);
        } else {
            self.values.insert(key, (value, source));
        }
    }

    pub fn get(&self, key: Keyword) -> Option<&str> {
        self.values.get(&key).map(|(v, _)| v.as_str())
    }

    pub fn source(&self, key: Keyword) -> Option<&Source> {
        self.values.get(&key).map(|(_, s)| s)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Fills every keyword not yet set from a lower-precedence layer.
    pub fn fill_from(&mut self, lower: &Params) {
        for (key, value) in &lower.values {
            self.values.entry(*key).or_insert_with(|| value.clone());
        }
        for name in &lower.ignored {
            if !self.ignored.contains(name) {
                self.ignored.push(name.clone());
            }
        }
    }

    /// Re-labels every value (a parser does not know whether its string came from
    /// `-d`, the positional argument or `DATABASE_URL`).
    pub fn with_source(mut self, source: Source) -> Params {
        for (_, s) in self.values.values_mut() {
            *s = source.clone();
        }
        self
    }

    pub fn keywords(&self) -> impl Iterator<Item = Keyword> + '_ {
        self.values.keys().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in Keyword::ALL {
            assert_eq!(Keyword::from_name(k.name()), Some(k));
        }
        assert_eq!(Keyword::from_name("nope"), None);
    }

    #[test]
    fn empty_value_is_unset_and_higher_layer_wins() {
        let mut high = Params::new();
        high.set(Keyword::Host, "a", Source::Flag);
        high.set(Keyword::Port, "", Source::Flag);
        let mut low = Params::new();
        low.set(Keyword::Host, "b", Source::Env("PGHOST"));
        low.set(Keyword::Port, "6000", Source::Env("PGPORT"));
        high.fill_from(&low);
        assert_eq!(high.get(Keyword::Host), Some("a"));
        assert_eq!(high.get(Keyword::Port), Some("6000"));
        assert_eq!(high.source(Keyword::Port), Some(&Source::Env("PGPORT")));
    }
}
