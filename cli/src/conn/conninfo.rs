//! Parsers for libpq's two connection-string syntaxes, with libpq's rules and messages:
//!
//! * keyword/value: `host=/tmp port=5433 dbname='my db' password='it\'s'`
//!   (`fe-connect.c: conninfo_parse`);
//! * URI: `postgresql://user:pw@host1:5432,host2/db?sslmode=require`
//!   (`fe-connect.c: conninfo_uri_parse_options`), percent-decoded, where a host that
//!   decodes to an absolute path (`%2Fvar%2Frun%2Fpostgresql`) is a socket directory.

use super::params::{IGNORED_KEYWORDS, Keyword, Params, Source};

/// A connection string could not be parsed. The messages are libpq's (minus the string
/// itself, which may hold a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnInfoError {
    #[error("missing \"=\" after \"{0}\" in connection info string")]
    MissingEquals(String),
    #[error("unterminated quoted string in connection info string")]
    UnterminatedQuote,
    #[error("invalid connection option \"{0}\"")]
    InvalidOption(String),
    #[error("invalid URI query parameter: \"{0}\"")]
    InvalidUriParameter(String),
    #[error("missing key/value separator \"=\" in URI query parameter: \"{0}\"")]
    MissingUriSeparator(String),
    #[error("extra key/value separator \"=\" in URI query parameter: \"{0}\"")]
    ExtraUriSeparator(String),
    #[error("invalid percent-encoded token: \"{0}\"")]
    InvalidPercentEncoding(String),
    #[error("forbidden value %00 in percent-encoded value: \"{0}\"")]
    PercentEncodedNul(String),
    #[error("end of string reached when looking for matching \"]\" in IPv6 host address in URI")]
    UnterminatedIpv6,
    #[error("IPv6 host address may not be empty in URI")]
    EmptyIpv6,
    #[error("unexpected character \"{0}\" at position {1} in URI (expected \":\" or \"/\")")]
    UnexpectedUriCharacter(char, usize),
    #[error("invalid URI: it must start with \"postgresql://\" or \"postgres://\"")]
    NotAUri,
}

const URI_PREFIXES: [&str; 2] = ["postgresql://", "postgres://"];

/// True when psql would treat a `-d` value (or the positional DBNAME) as a connection
/// string rather than a database name: a URI prefix or an `=` anywhere
/// (`fe-connect.c: recognized_connection_string`).
pub fn is_connection_string(s: &str) -> bool {
    uri_body(s).is_some() || s.contains('=')
}

/// The part after the scheme, and the scheme's length (for libpq's error positions).
fn uri_body(s: &str) -> Option<(&str, usize)> {
    URI_PREFIXES
        .iter()
        .find_map(|p| s.strip_prefix(p).map(|body| (body, p.len())))
}

/// Parses either syntax, choosing like libpq: a URI prefix means a URI, anything else is
/// keyword/value. The values are labelled [`Source::ConnString`].
pub fn parse_connection_string(s: &str) -> Result<Params, ConnInfoError> {
    match uri_body(s) {
        Some((body, prefix_len)) => parse_uri_body(body, prefix_len),
        None => parse_conninfo(s),
    }
}

/// Stores one keyword/value pair, sorting out unknown and ignored keywords.
fn store(params: &mut Params, key: &str, value: String) -> Result<(), ConnInfoError> {
    match Keyword::from_name(key) {
        Some(k) => {
            params.set(k, value, Source::ConnString);
            Ok(())
        }
        None if IGNORED_KEYWORDS.contains(&key) => {
            params.ignored.push(key.to_string());
            Ok(())
        }
        None => Err(ConnInfoError::InvalidOption(key.to_string())),
    }
}

/// Parses a keyword/value conninfo string.
///
/// Rules (libpq's): pairs are separated by whitespace; spaces may surround `=`; a value
/// is either a bare word, where `\` escapes the next character, or single-quoted, where
/// `\'` and `\\` are the escapes. A later repetition of a keyword wins.
pub fn parse_conninfo(s: &str) -> Result<Params, ConnInfoError> {
    let mut params = Params::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next_if_eq(&'=').is_none() {
            return Err(ConnInfoError::MissingEquals(key));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}

        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(ConnInfoError::UnterminatedQuote),
                    Some('\'') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(ConnInfoError::UnterminatedQuote),
                    },
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    // A trailing lone backslash is dropped, as in libpq.
                    if let Some(escaped) = chars.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        store(&mut params, &key, value)?;
    }
    Ok(params)
}

/// Parses a `postgresql://` or `postgres://` URI.
pub fn parse_uri(s: &str) -> Result<Params, ConnInfoError> {
    match uri_body(s) {
        Some((body, prefix_len)) => parse_uri_body(body, prefix_len),
        None => Err(ConnInfoError::NotAUri),
    }
}

/// `[user[:password]@][host][:port][,...][/dbname][?param=value&...]`
fn parse_uri_body(body: &str, prefix_len: usize) -> Result<Params, ConnInfoError> {
    let mut params = Params::new();

    // Credentials: everything before an '@' that comes before the first '/'.
    let mut rest = body;
    let cred_end = body.find(['@', '/']);
    if let Some(at) = cred_end.filter(|&i| body.as_bytes()[i] == b'@') {
        let creds = &body[..at];
        let (user, password) = match creds.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (creds, None),
        };
        params.set(Keyword::User, percent_decode(user)?, Source::ConnString);
        if let Some(p) = password {
            params.set(Keyword::Password, percent_decode(p)?, Source::ConnString);
        }
        rest = &body[at + 1..];
    }

    // Hosts and ports: a comma-separated list; IPv6 addresses in brackets.
    let mut hosts: Vec<&str> = Vec::new();
    let mut ports: Vec<&str> = Vec::new();
    let mut any_port = false;
    let terminator;
    loop {
        let host;
        if let Some(after) = rest.strip_prefix('[') {
            let close = after.find(']').ok_or(ConnInfoError::UnterminatedIpv6)?;
            if close == 0 {
                return Err(ConnInfoError::EmptyIpv6);
            }
            host = &after[..close];
            rest = &after[close + 1..];
            if let Some(c) = rest.chars().next().filter(|c| !":/?,".contains(*c)) {
                // 1-based position in the whole URI, as libpq reports it.
                let pos = prefix_len + body.len() - rest.len() + 1;
                return Err(ConnInfoError::UnexpectedUriCharacter(c, pos));
            }
        } else {
            let end = rest.find([':', '/', '?', ',']).unwrap_or(rest.len());
            host = &rest[..end];
            rest = &rest[end..];
        }
        hosts.push(host);
        let mut port = "";
        if let Some(after) = rest.strip_prefix(':') {
            let end = after.find(['/', '?', ',']).unwrap_or(after.len());
            port = &after[..end];
            any_port = true;
            rest = &after[end..];
        }
        ports.push(port);
        match rest.strip_prefix(',') {
            Some(after) => rest = after,
            None => {
                terminator = rest.chars().next();
                break;
            }
        }
    }
    // libpq decodes the joined list, so "%2C" inside a host is just as good as a comma.
    let host_list = hosts.join(",");
    if !host_list.is_empty() {
        params.set(
            Keyword::Host,
            percent_decode(&host_list)?,
            Source::ConnString,
        );
    }
    // With several hosts libpq keeps the commas even when no port was given ("," means
    // two default ports); with one host and no port it stores nothing.
    let port_list = ports.join(",");
    if any_port || !port_list.is_empty() {
        params.set(
            Keyword::Port,
            percent_decode(&port_list)?,
            Source::ConnString,
        );
    }

    if terminator == Some('/') {
        let after = &rest[1..];
        let end = after.find('?').unwrap_or(after.len());
        params.set(
            Keyword::DbName,
            percent_decode(&after[..end])?,
            Source::ConnString,
        );
        rest = &after[end..];
    }

    if let Some(query) = rest.strip_prefix('?') {
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = match pair.split_once('=') {
                Some((_, v)) if v.contains('=') => {
                    return Err(ConnInfoError::ExtraUriSeparator(pair.to_string()));
                }
                Some(kv) => kv,
                None => return Err(ConnInfoError::MissingUriSeparator(pair.to_string())),
            };
            let (key, value) = (percent_decode(key)?, percent_decode(value)?);
            // libpq's concession to JDBC URLs: ssl=true means sslmode=require.
            let (key, value) = if key == "ssl" && value == "true" {
                ("sslmode".to_string(), "require".to_string())
            } else {
                (key, value)
            };
            store(&mut params, &key, value).map_err(|e| match e {
                ConnInfoError::InvalidOption(k) => ConnInfoError::InvalidUriParameter(k),
                other => other,
            })?;
        }
    }
    Ok(params)
}

/// Decodes `%XX` escapes. Like libpq, a malformed escape or an encoded NUL is an error,
/// and `+` is left alone (this is not form encoding).
pub fn percent_decode(s: &str) -> Result<String, ConnInfoError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex
                .filter(|h| h.chars().all(|c| c.is_ascii_hexdigit()))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ConnInfoError::InvalidPercentEncoding(s.to_string()))?;
            if byte == 0 {
                return Err(ConnInfoError::PercentEncodedNul(s.to_string()));
            }
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ConnInfoError::InvalidPercentEncoding(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(p: &Params, k: Keyword) -> Option<&str> {
        p.get(k)
    }

    #[test]
    fn detects_connection_strings_like_psql() {
        assert!(is_connection_string("postgresql://localhost"));
        assert!(is_connection_string("postgres://"));
        assert!(is_connection_string("host=x"));
        assert!(is_connection_string("dbname = x"));
        assert!(!is_connection_string("mydb"));
        assert!(!is_connection_string("postgresq://x"));
    }

    #[test]
    fn conninfo_basic_and_spacing() {
        let p = parse_conninfo("  host=/tmp port = 5433\tdbname= app  ").unwrap();
        assert_eq!(get(&p, Keyword::Host), Some("/tmp"));
        assert_eq!(get(&p, Keyword::Port), Some("5433"));
        assert_eq!(get(&p, Keyword::DbName), Some("app"));
    }

    #[test]
    fn conninfo_quoting_rules() {
        let p = parse_conninfo(r"password='va\'lue' dbname='my db' user=a\ b options='-c x=\\y'")
            .unwrap();
        assert_eq!(get(&p, Keyword::Password), Some("va'lue"));
        assert_eq!(get(&p, Keyword::DbName), Some("my db"));
        assert_eq!(get(&p, Keyword::User), Some("a b"));
        assert_eq!(get(&p, Keyword::Options), Some(r"-c x=\y"));
    }

    #[test]
    fn conninfo_empty_quoted_value_and_repeat() {
        let p = parse_conninfo("host='' host=a host=b").unwrap();
        assert_eq!(get(&p, Keyword::Host), Some("b"));
        let p = parse_conninfo("host=''").unwrap();
        assert_eq!(get(&p, Keyword::Host), None);
    }

    #[test]
    fn conninfo_errors() {
        assert_eq!(
            parse_conninfo("host"),
            Err(ConnInfoError::MissingEquals("host".into()))
        );
        assert_eq!(
            parse_conninfo("host x=1"),
            Err(ConnInfoError::MissingEquals("host".into()))
        );
        assert_eq!(
            parse_conninfo("password='abc"),
            Err(ConnInfoError::UnterminatedQuote)
        );
        assert_eq!(
            parse_conninfo(r"password='abc\'"),
            Err(ConnInfoError::UnterminatedQuote)
        );
        assert_eq!(
            parse_conninfo("hots=x"),
            Err(ConnInfoError::InvalidOption("hots".into()))
        );
        assert_eq!(
            ConnInfoError::MissingEquals("host".into()).to_string(),
            "missing \"=\" after \"host\" in connection info string"
        );
    }

    #[test]
    fn conninfo_ignored_keywords_are_recorded() {
        let p = parse_conninfo("keepalives=1 host=x").unwrap();
        assert_eq!(p.ignored, vec!["keepalives".to_string()]);
        assert_eq!(get(&p, Keyword::Host), Some("x"));
    }

    #[test]
    fn uri_full() {
        let p = parse_connection_string(
            "postgresql://al%40ice:p%3Ass@db.example.com:6432/my%20db?sslmode=verify-full&application_name=x",
        )
        .unwrap();
        assert_eq!(get(&p, Keyword::User), Some("al@ice"));
        assert_eq!(get(&p, Keyword::Password), Some("p:ss"));
        assert_eq!(get(&p, Keyword::Host), Some("db.example.com"));
        assert_eq!(get(&p, Keyword::Port), Some("6432"));
        assert_eq!(get(&p, Keyword::DbName), Some("my db"));
        assert_eq!(get(&p, Keyword::SslMode), Some("verify-full"));
        assert_eq!(get(&p, Keyword::ApplicationName), Some("x"));
    }

    #[test]
    fn uri_percent_encoded_socket_directory() {
        let p = parse_uri("postgresql://%2Fvar%2Frun%2Fpostgresql:5433/app").unwrap();
        assert_eq!(get(&p, Keyword::Host), Some("/var/run/postgresql"));
        assert_eq!(get(&p, Keyword::Port), Some("5433"));
        assert_eq!(get(&p, Keyword::DbName), Some("app"));
        // The socket directory may also come as a query parameter.
        let p = parse_uri("postgres:///app?host=/tmp/pg%20sock&port=5499").unwrap();
        assert_eq!(get(&p, Keyword::Host), Some("/tmp/pg sock"));
        assert_eq!(get(&p, Keyword::Port), Some("5499"));
    }

    #[test]
    fn uri_minimal_forms() {
        let p = parse_uri("postgresql://").unwrap();
        assert!(p.is_empty());
        let p = parse_uri("postgresql://localhost").unwrap();
        assert_eq!(get(&p, Keyword::Host), Some("localhost"));
        assert_eq!(get(&p, Keyword::Port), None);
        let p = parse_uri("postgresql:///mydb").unwrap();
        assert_eq!(get(&p, Keyword::Host), None);
        assert_eq!(get(&p, Keyword::DbName), Some("mydb"));
        let p = parse_uri("postgresql://user@").unwrap();
        assert_eq!(get(&p, Keyword::User), Some("user"));
        let p = parse_uri("postgresql://host/").unwrap();
        assert_eq!(get(&p, Keyword::DbName), None);
        let p = parse_uri("postgresql://host?").unwrap();
        assert_eq!(get(&p, Keyword::Host), Some("host"));
    }

    #[test]
    fn uri_ipv6_and_multiple_hosts() {
        let p = parse_uri("postgresql://[::1]:5433,[fe80::1%25eth0],other:7/db").unwrap();
        assert_eq!(get(&p, Keyword::Host), Some("::1,fe80::1%eth0,other"));
        assert_eq!(get(&p, Keyword::Port), Some("5433,,7"));
        let p = parse_uri("postgresql://a,b/db").unwrap();
        assert_eq!(get(&p, Keyword::Host), Some("a,b"));
        assert_eq!(get(&p, Keyword::Port), Some(","));
    }

    #[test]
    fn uri_errors() {
        assert_eq!(
            parse_uri("postgresql://[::1"),
            Err(ConnInfoError::UnterminatedIpv6)
        );
        assert_eq!(
            parse_uri("postgresql://[]/db"),
            Err(ConnInfoError::EmptyIpv6)
        );
        assert_eq!(parse_uri("host=x"), Err(ConnInfoError::NotAUri));
        assert_eq!(
            parse_uri("postgresql://[::1]x/db"),
            Err(ConnInfoError::UnexpectedUriCharacter('x', 19))
        );
        assert_eq!(
            parse_uri("postgresql://h/db?sslmode"),
            Err(ConnInfoError::MissingUriSeparator("sslmode".into()))
        );
        assert_eq!(
            parse_uri("postgresql://h/db?a=b=c"),
            Err(ConnInfoError::ExtraUriSeparator("a=b=c".into()))
        );
        assert_eq!(
            parse_uri("postgresql://h/db?nope=1"),
            Err(ConnInfoError::InvalidUriParameter("nope".into()))
        );
        assert_eq!(
            parse_uri("postgresql://h/d%zz"),
            Err(ConnInfoError::InvalidPercentEncoding("d%zz".into()))
        );
        assert_eq!(
            parse_uri("postgresql://h/d%2"),
            Err(ConnInfoError::InvalidPercentEncoding("d%2".into()))
        );
        assert_eq!(
            parse_uri("postgresql://h/d%00"),
            Err(ConnInfoError::PercentEncodedNul("d%00".into()))
        );
    }

    #[test]
    fn uri_ssl_true_is_require() {
        let p = parse_uri("postgresql://h/db?ssl=true").unwrap();
        assert_eq!(get(&p, Keyword::SslMode), Some("require"));
    }

    #[test]
    fn percent_decode_keeps_plus_and_utf8() {
        assert_eq!(percent_decode("a+b%C3%A9").unwrap(), "a+bé");
        assert!(percent_decode("%FF").is_err());
    }
}
