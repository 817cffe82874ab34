//! What connection resolution reads from the outside world, behind small seams so the
//! rules can be tested without touching the real environment or file system.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// A snapshot of the process environment plus the two facts libpq gets from the
/// password database: the OS user name and the home directory.
#[derive(Clone, Debug, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
    os_user: Option<String>,
    home: Option<PathBuf>,
}

impl Environment {
    /// An environment with no variables, user or home: tests add what they need.
    pub fn empty() -> Environment {
        Environment::default()
    }

    /// The real process environment. Variables that are not valid UTF-8 are skipped:
    /// no connection setting can use them anyway.
    pub fn from_process() -> Environment {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect::<BTreeMap<_, _>>();
        // libpq (PG 15, pqGetHomeDirectory) prefers $HOME and falls back to getpwuid.
        let home = vars
            .get("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(std::env::home_dir);
        Environment {
            vars,
            os_user: whoami::username().ok(),
            home,
        }
    }

    pub fn with_var(mut self, key: &str, value: &str) -> Environment {
        self.vars.insert(key.to_string(), value.to_string());
        self
    }

    pub fn with_os_user(mut self, user: &str) -> Environment {
        self.os_user = Some(user.to_string());
        self
    }

    pub fn with_home(mut self, home: impl Into<PathBuf>) -> Environment {
        self.home = Some(home.into());
        self
    }

    /// A variable's value; empty counts as unset.
    pub fn var(&self, key: &str) -> Option<&str> {
        self.vars
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn os_user(&self) -> Option<&str> {
        self.os_user.as_deref()
    }

    pub fn home(&self) -> Option<&Path> {
        self.home.as_deref()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    File,
    Socket,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileInfo {
    pub kind: FileKind,
    /// Unix permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

/// Read access to files: the password file, service files, socket and certificate paths.
pub trait Files {
    fn read_to_string(&self, path: &Path) -> io::Result<String>;
    /// `None` when the path does not exist (or cannot be examined).
    fn info(&self, path: &Path) -> Option<FileInfo>;

    fn exists(&self, path: &Path) -> bool {
        self.info(path).is_some()
    }
}

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemFiles;

impl Files for SystemFiles {
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn info(&self, path: &Path) -> Option<FileInfo> {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        // Follows symlinks, as libpq's stat() does.
        let meta = std::fs::metadata(path).ok()?;
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            FileKind::File
        } else if ft.is_socket() {
            FileKind::Socket
        } else {
            FileKind::Other
        };
        Some(FileInfo {
            kind,
            mode: meta.permissions().mode() & 0o7777,
        })
    }
}

/// An in-memory file system for tests (of this crate and of its users).
#[derive(Clone, Debug, Default)]
pub struct MemoryFiles {
    files: BTreeMap<PathBuf, (Option<String>, FileInfo)>,
}

impl MemoryFiles {
    pub fn new() -> MemoryFiles {
        MemoryFiles::default()
    }

    /// A regular file with the given permission bits.
    pub fn with_file(mut self, path: impl Into<PathBuf>, mode: u32, contents: &str) -> Self {
        let info = FileInfo {
            kind: FileKind::File,
            mode,
        };
        self.files
            .insert(path.into(), (Some(contents.to_string()), info));
        self
    }

    /// A Unix-domain socket, e.g. `/tmp/.s.PGSQL.5432`.
    pub fn with_socket(mut self, path: impl Into<PathBuf>) -> Self {
        let info = FileInfo {
            kind: FileKind::Socket,
            mode: 0o777,
        };
        self.files.insert(path.into(), (None, info));
        self
    }
}

impl Files for MemoryFiles {
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        match self.files.get(path) {
            Some((Some(contents), _)) => Ok(contents.clone()),
            Some((None, _)) => Err(io::Error::other("not a regular file")),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    fn info(&self, path: &Path) -> Option<FileInfo> {
        self.files.get(path).map(|(_, info)| *info)
    }
}
