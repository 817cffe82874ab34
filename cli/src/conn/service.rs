//! Connection service files (`service=name` / `PGSERVICE`), as libpq reads them
//! (`fe-connect.c: parseServiceInfo`, `parseServiceFile`):
//!
//! * the user's file, `PGSERVICEFILE` or `~/.pg_service.conf`, is searched first; then
//!   the system one, `$PGSYSCONFDIR/pg_service.conf` (Debian's libpq: `/etc/postgresql-common`);
//! * INI-like: `[name]` opens a section, `keyword=value` lines inside it, `#` comments;
//! * within a section the first occurrence of a keyword wins, and a section cannot name
//!   another service.

use std::path::{Path, PathBuf};

use super::inputs::{Environment, Files};
use super::params::{IGNORED_KEYWORDS, Keyword, Params, Source};

/// Debian's libpq is built with `--sysconfdir=/etc/postgresql-common`.
pub const DEFAULT_SYSCONFDIR: &str = "/etc/postgresql-common";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("definition of service \"{0}\" not found")]
    NotFound(String),
    #[error("syntax error in service file \"{0}\", line {1}")]
    Syntax(String, usize),
    #[error("nested service specifications not supported in service file \"{0}\", line {1}")]
    Nested(String, usize),
}

/// The files to search, in order.
pub fn service_files(env: &Environment) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(f) = env.var("PGSERVICEFILE") {
        out.push(PathBuf::from(f));
    } else if let Some(home) = env.home() {
        out.push(home.join(".pg_service.conf"));
    }
    let sysconf = env.var("PGSYSCONFDIR").unwrap_or(DEFAULT_SYSCONFDIR);
    out.push(Path::new(sysconf).join("pg_service.conf"));
    out
}

/// Looks `service` up in the service files. Values are labelled with the file they came
/// from.
pub fn load_service(
    service: &str,
    env: &Environment,
    files: &dyn Files,
) -> Result<Params, ServiceError> {
    for path in service_files(env) {
        let Ok(contents) = files.read_to_string(&path) else {
            continue;
        };
        let shown = path.display().to_string();
        if let Some(params) = parse_service_file(&contents, service, &shown)? {
            return Ok(params);
        }
    }
    Err(ServiceError::NotFound(service.to_string()))
}

/// Parses one file; `Ok(None)` when the section is not in it.
pub fn parse_service_file(
    contents: &str,
    service: &str,
    file_name: &str,
) -> Result<Option<Params>, ServiceError> {
    let mut found: Option<Params> = None;
    for (index, raw) in contents.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[') {
            if found.is_some() {
                break; // the next section ends ours
            }
            if name.strip_suffix(']') == Some(service) {
                found = Some(Params::new());
            }
            continue;
        }
        let Some(params) = found.as_mut() else {
            continue;
        };
        let Some((key, value)) = line.split_once('=') else {
            return Err(ServiceError::Syntax(file_name.to_string(), line_no));
        };
        if key == "service" {
            return Err(ServiceError::Nested(file_name.to_string(), line_no));
        }
        match Keyword::from_name(key) {
            Some(k) => {
                if params.get(k).is_none() {
                    params.set(k, value, Source::ServiceFile(file_name.to_string()));
                }
            }
            None if IGNORED_KEYWORDS.contains(&key) => params.ignored.push(key.to_string()),
            None => return Err(ServiceError::Syntax(file_name.to_string(), line_no)),
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::inputs::MemoryFiles;

    const FILE: &str = "\
# my services
[other]
host=elsewhere

[app]
host=db.internal
port=6432
port=7000
dbname=app
  # indented comment
[after]
host=nope
";

    #[test]
    fn finds_section_first_value_wins() {
        let p = parse_service_file(FILE, "app", "f").unwrap().unwrap();
        assert_eq!(p.get(Keyword::Host), Some("db.internal"));
        assert_eq!(p.get(Keyword::Port), Some("6432"));
        assert_eq!(p.get(Keyword::DbName), Some("app"));
        assert_eq!(
            p.source(Keyword::Host),
            Some(&Source::ServiceFile("f".into()))
        );
        assert_eq!(parse_service_file(FILE, "missing", "f").unwrap(), None);
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(
            parse_service_file("[a]\nhost\n", "a", "f"),
            Err(ServiceError::Syntax("f".into(), 2))
        );
        assert_eq!(
            parse_service_file("[a]\nservice=b\n", "a", "f"),
            Err(ServiceError::Nested("f".into(), 2))
        );
        assert_eq!(
            parse_service_file("[a]\nbogus=1\n", "a", "f"),
            Err(ServiceError::Syntax("f".into(), 2))
        );
    }

    #[test]
    fn user_file_then_system_file() {
        let env = Environment::empty().with_home("/home/u");
        let files = MemoryFiles::new()
            .with_file("/home/u/.pg_service.conf", 0o600, "[a]\nhost=user\n")
            .with_file(
                "/etc/postgresql-common/pg_service.conf",
                0o644,
                "[a]\nhost=system\n[b]\nhost=sys-b\n",
            );
        let a = load_service("a", &env, &files).unwrap();
        assert_eq!(a.get(Keyword::Host), Some("user"));
        let b = load_service("b", &env, &files).unwrap();
        assert_eq!(b.get(Keyword::Host), Some("sys-b"));
        assert_eq!(
            load_service("c", &env, &files),
            Err(ServiceError::NotFound("c".into()))
        );
        let env = env
            .with_var("PGSERVICEFILE", "/srv/services")
            .with_var("PGSYSCONFDIR", "/srv/etc");
        assert_eq!(
            service_files(&env),
            vec![
                PathBuf::from("/srv/services"),
                PathBuf::from("/srv/etc/pg_service.conf")
            ]
        );
    }
}
