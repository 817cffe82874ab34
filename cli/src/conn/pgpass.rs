//! The password file (`~/.pgpass`, or `PGPASSFILE` / `passfile=`), with libpq's rules
//! (`fe-connect.c: passwordFromFile`, `pwdfMatchesString`):
//!
//! * each line is `hostname:port:database:username:password`; lines starting with `#`
//!   are comments; the first matching line wins;
//! * a field that is exactly `*` matches anything; `\:` and `\\` escape a colon or a
//!   backslash inside a field (and in the password);
//! * the file is ignored, with a warning, if it is not a regular file or if group or
//!   others have any access to it.
//!
//! For a Unix-domain socket the hostname field may be `localhost` or the socket
//! directory. (libpq accepts `localhost` only for its compiled-in socket directory;
//! tviews looks in two default directories and treats both alike.)

use std::path::Path;

use super::inputs::{FileKind, Files};

/// What a line must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassQuery<'a> {
    /// Accepted spellings of the host: one for TCP, two for a socket.
    pub hosts: Vec<&'a str>,
    pub port: &'a str,
    pub dbname: &'a str,
    pub user: &'a str,
}

/// One field of a line, unescaped, and whether it was the bare wildcard.
#[derive(Debug, PartialEq, Eq)]
struct Field {
    text: String,
    wildcard: bool,
}

/// Splits a line at unescaped colons. Returns `None` for a line with fewer than four
/// colons: libpq needs the colon after the user name to call a line a match.
fn split_line(line: &str) -> Option<(Vec<Field>, String)> {
    let mut fields = Vec::with_capacity(4);
    let mut current = String::new();
    let mut raw_star = true; // still possible that the raw field is exactly "*"
    let mut raw_len = 0;
    let mut chars = line.chars();
    while fields.len() < 4 {
        match chars.next() {
            None => return None,
            Some(':') => {
                fields.push(Field {
                    wildcard: raw_star && raw_len == 1,
                    text: std::mem::take(&mut current),
                });
                raw_star = true;
                raw_len = 0;
            }
            Some('\\') => {
                raw_star = false;
                raw_len += 1;
                // A backslash at the very end stands for itself.
                current.push(chars.next().unwrap_or('\\'));
            }
            Some(c) => {
                raw_star &= c == '*';
                raw_len += 1;
                current.push(c);
            }
        }
    }
    // The password runs to the next unescaped colon or the end of the line.
    let mut password = String::new();
    while let Some(c) = chars.next() {
        match c {
            ':' => break,
            '\\' => password.push(chars.next().unwrap_or('\\')),
            c => password.push(c),
        }
    }
    Some((fields, password))
}

/// Finds the password for `query` in the text of a password file.
/// An empty password counts as none, as in libpq.
pub fn lookup(contents: &str, query: &PassQuery<'_>) -> Option<String> {
    for line in contents.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((fields, password)) = split_line(line) else {
            continue;
        };
        let matches = |f: &Field, want: &[&str]| f.wildcard || want.contains(&f.text.as_str());
        if matches(&fields[0], &query.hosts)
            && matches(&fields[1], &[query.port])
            && matches(&fields[2], &[query.dbname])
            && matches(&fields[3], &[query.user])
        {
            return (!password.is_empty()).then_some(password);
        }
    }
    None
}

/// The outcome of consulting a password file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassFileResult {
    pub password: Option<String>,
    /// libpq's warning when the file was skipped for its type or permissions.
    pub warning: Option<String>,
}

/// Reads `path` through `files` and looks `query` up, applying libpq's checks.
/// A missing or unreadable file is silently no password, as in libpq.
pub fn read_password(files: &dyn Files, path: &Path, query: &PassQuery<'_>) -> PassFileResult {
    let Some(info) = files.info(path) else {
        return PassFileResult::default();
    };
    let shown = path.display();
    if info.kind != FileKind::File {
        return PassFileResult {
            password: None,
            warning: Some(format!("password file \"{shown}\" is not a plain file")),
        };
    }
    if info.mode & 0o077 != 0 {
        return PassFileResult {
            password: None,
            warning: Some(format!(
                "password file \"{shown}\" has group or world access; \
                 permissions should be u=rw (0600) or less"
            )),
        };
    }
    match files.read_to_string(path) {
        Ok(contents) => PassFileResult {
            password: lookup(&contents, query),
            warning: None,
        },
        Err(_) => PassFileResult::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::inputs::MemoryFiles;

    fn q<'a>(hosts: &[&'a str], port: &'a str, db: &'a str, user: &'a str) -> PassQuery<'a> {
        PassQuery {
            hosts: hosts.to_vec(),
            port,
            dbname: db,
            user,
        }
    }

    #[test]
    fn first_match_wins_and_wildcards() {
        let file = "\
# comment line
db1.example:5432:app:alice:first
*:*:app:alice:second
*:*:*:*:fallback
";
        assert_eq!(
            lookup(file, &q(&["db1.example"], "5432", "app", "alice")).as_deref(),
            Some("first")
        );
        assert_eq!(
            lookup(file, &q(&["db2.example"], "5432", "app", "alice")).as_deref(),
            Some("second")
        );
        assert_eq!(
            lookup(file, &q(&["db1.example"], "5433", "other", "bob")).as_deref(),
            Some("fallback")
        );
    }

    #[test]
    fn escapes_in_fields_and_password() {
        let file = r"my\:host:5432:d\\b:u:pa\:ss\\word:ignored";
        assert_eq!(
            lookup(file, &q(&["my:host"], "5432", r"d\b", "u")).as_deref(),
            Some(r"pa:ss\word")
        );
        // An escaped star is a literal star, not a wildcard.
        let file = r"\*:5432:db:u:pw";
        assert_eq!(lookup(file, &q(&["h"], "5432", "db", "u")), None);
        assert_eq!(
            lookup(file, &q(&["*"], "5432", "db", "u")).as_deref(),
            Some("pw")
        );
        // "**" is not a wildcard either.
        assert_eq!(lookup("**:*:*:*:pw", &q(&["h"], "1", "d", "u")), None);
    }

    #[test]
    fn incomplete_lines_and_empty_passwords_do_not_match() {
        assert_eq!(lookup("*:*:*:*", &q(&["h"], "1", "d", "u")), None);
        assert_eq!(lookup("*:*:*:*:", &q(&["h"], "1", "d", "u")), None);
        assert_eq!(
            lookup("*:*:*:*:pw\r\n", &q(&["h"], "1", "d", "u")).as_deref(),
            Some("pw")
        );
    }

    #[test]
    fn socket_matches_localhost_or_directory() {
        let file = "localhost:5432:*:u:local\n/tmp/sock:5433:*:u:dir\n";
        assert_eq!(
            lookup(
                file,
                &q(&["/var/run/postgresql", "localhost"], "5432", "d", "u")
            )
            .as_deref(),
            Some("local")
        );
        assert_eq!(
            lookup(file, &q(&["/tmp/sock", "localhost"], "5433", "d", "u")).as_deref(),
            Some("dir")
        );
    }

    #[test]
    fn permissions_and_file_type_are_checked() {
        let query = q(&["h"], "5432", "d", "u");
        let files = MemoryFiles::new()
            .with_file("/home/u/.pgpass", 0o600, "*:*:*:*:secret")
            .with_file("/home/u/open", 0o644, "*:*:*:*:secret")
            .with_socket("/home/u/sock");
        let ok = read_password(&files, Path::new("/home/u/.pgpass"), &query);
        assert_eq!(ok.password.as_deref(), Some("secret"));
        assert_eq!(ok.warning, None);

        let open = read_password(&files, Path::new("/home/u/open"), &query);
        assert_eq!(open.password, None);
        assert_eq!(
            open.warning.as_deref(),
            Some(
                "password file \"/home/u/open\" has group or world access; \
                 permissions should be u=rw (0600) or less"
            )
        );

        let sock = read_password(&files, Path::new("/home/u/sock"), &query);
        assert_eq!(
            sock.warning.as_deref(),
            Some("password file \"/home/u/sock\" is not a plain file")
        );

        let missing = read_password(&files, Path::new("/nope"), &query);
        assert_eq!(missing, PassFileResult::default());
    }
}
