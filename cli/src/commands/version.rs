//! `tviews version`: the client's, the server's and the extension's versions.

use comfy_table::{Cell, Color};
use serde::Serialize;
use tokio_postgres::Client;

use super::probe::{self, ExtensionInfo, ServerVersion};
use crate::failure::ServerError;
use crate::output::{Format, Style, colored, key_value_table, table_text, to_json};

pub const CLIENT_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VersionReport {
    pub client: ClientVersion,
    pub server: ServerVersion,
    /// The database the extension facts are about.
    pub database: String,
    pub extension: ExtensionVersions,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClientVersion {
    pub version: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExtensionVersions {
    /// Name, availability, installed and default versions, schema.
    #[serde(flatten)]
    pub info: ExtensionInfo,
    /// The loaded shared library's version (`pg_tviews_version()`).
    pub library_version: Option<String>,
    /// Why `pg_tviews_version()` could not be called, when it could not.
    pub library_error: Option<String>,
}

pub async fn gather(client: &Client) -> Result<VersionReport, tokio_postgres::Error> {
    let server = probe::server_version(client).await?;
    let database: String = client
        .query_one("SELECT current_database()::text", &[])
        .await?
        .try_get(0)?;
    let mut ext = ExtensionVersions {
        info: probe::extension_info(client).await?,
        ..ExtensionVersions::default()
    };
    if ext.info.installed {
        match probe::find_function(client, ext.info.schema.as_deref(), "pg_tviews_version").await? {
            None => ext.library_error = Some("function pg_tviews_version() not found".into()),
            // The call loads the library: a library that fails to load (wrong build,
            // missing file) is exactly what this is meant to show, so report it and go on.
            Some(call) => match client.query_one(&format!("SELECT {call}::text"), &[]).await {
                Ok(row) => ext.library_version = row.try_get(0)?,
                Err(e) => match e.as_db_error() {
                    Some(db) => {
                        let err = ServerError::from(db);
                        ext.library_error = Some(format!("{}: {}", err.code, err.message));
                    }
                    None => return Err(e),
                },
            },
        }
    }
    Ok(VersionReport {
        client: ClientVersion {
            version: CLIENT_VERSION.to_string(),
        },
        server,
        database,
        extension: ext,
    })
}

/// Advice derived from the versions: shown under the table.
pub fn notes(r: &VersionReport) -> Vec<String> {
    let lib = &r.extension;
    let e = &lib.info;
    let mut out = Vec::new();
    if !e.available {
        out.push(format!(
            "{} is not installed, and not available on this server (its files are missing)",
            e.name
        ));
    } else if !e.installed {
        out.push(format!(
            "{} is not installed in database \"{}\"; to install it: CREATE EXTENSION {};",
            e.name, r.database, e.name
        ));
    }
    if e.installed && e.default_version.is_some() && e.default_version != e.installed_version {
        out.push(format!(
            "version {} is available: ALTER EXTENSION {} UPDATE;",
            e.default_version.as_deref().unwrap_or_default(),
            e.name
        ));
    }
    if let (Some(lib), Some(sql)) = (&lib.library_version, &e.installed_version)
        && lib != sql
    {
        out.push(format!(
            "the loaded library is version {lib} but the installed SQL objects are version {sql}"
        ));
    }
    if let Some(err) = &lib.library_error {
        out.push(format!("could not ask the library for its version: {err}"));
    }
    out
}

fn or_dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".to_string())
}

pub fn render(r: &VersionReport, style: Style) -> anyhow::Result<String> {
    if style.format == Format::Json {
        return to_json(r);
    }
    let e = &r.extension.info;
    let installed = match &e.installed_version {
        Some(v) => Cell::new(v),
        None => colored("not installed", Color::Yellow, style),
    };
    let default = match &e.default_version {
        Some(v) => Cell::new(v),
        None => colored("not available", Color::Yellow, style),
    };
    let rows = vec![
        ("tviews (client)", Cell::new(&r.client.version)),
        ("server", Cell::new(&r.server.version)),
        ("server_version_num", Cell::new(r.server.version_num)),
        ("extension", Cell::new(&e.name)),
        ("installed version", installed),
        ("default version", default),
        (
            "library version",
            Cell::new(or_dash(&r.extension.library_version)),
        ),
    ];
    let mut out = table_text(&key_value_table(style, rows));
    for note in notes(r) {
        out.push_str(&note);
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ext: ExtensionVersions) -> VersionReport {
        VersionReport {
            client: ClientVersion {
                version: "0.1.0".into(),
            },
            server: ServerVersion {
                version: "15.18 (Debian 15.18-0+deb12u1)".into(),
                version_num: 150018,
            },
            database: "app".into(),
            extension: ExtensionVersions {
                info: ExtensionInfo {
                    name: "pg_tviews".into(),
                    ..ext.info
                },
                ..ext
            },
        }
    }

    fn installed_info() -> ExtensionInfo {
        ExtensionInfo {
            available: true,
            installed: true,
            installed_version: Some("0.1.0".into()),
            default_version: Some("0.1.0".into()),
            schema: Some("public".into()),
            ..Default::default()
        }
    }

    fn installed() -> ExtensionVersions {
        ExtensionVersions {
            info: installed_info(),
            library_version: Some("0.1.0".into()),
            library_error: None,
        }
    }

    #[test]
    fn table_installed() {
        insta::assert_snapshot!(render(&report(installed()), Style::default()).unwrap());
    }

    #[test]
    fn table_not_installed() {
        let r = report(ExtensionVersions {
            info: ExtensionInfo {
                available: true,
                default_version: Some("0.1.0".into()),
                ..Default::default()
            },
            ..Default::default()
        });
        insta::assert_snapshot!(render(&r, Style::default()).unwrap());
    }

    #[test]
    fn table_not_available() {
        insta::assert_snapshot!(
            render(&report(ExtensionVersions::default()), Style::default()).unwrap()
        );
    }

    #[test]
    fn notes_on_mismatches() {
        let r = report(ExtensionVersions {
            info: ExtensionInfo {
                default_version: Some("0.2.0".into()),
                ..installed_info()
            },
            library_version: Some("0.2.0".into()),
            library_error: None,
        });
        assert_eq!(
            notes(&r),
            vec![
                "version 0.2.0 is available: ALTER EXTENSION pg_tviews UPDATE;",
                "the loaded library is version 0.2.0 but the installed SQL objects are version 0.1.0",
            ]
        );
        let r = report(ExtensionVersions {
            library_version: None,
            library_error: Some("58P01: could not access file".into()),
            ..installed()
        });
        assert_eq!(
            notes(&r),
            vec!["could not ask the library for its version: 58P01: could not access file"]
        );
    }

    #[test]
    fn json_field_names_are_stable() {
        let style = Style::plain(Format::Json);
        insta::assert_snapshot!(render(&report(installed()), style).unwrap());
    }
}
