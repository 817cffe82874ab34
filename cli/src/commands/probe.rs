//! Catalog look-ups shared by several subcommands. Each tolerates an extension that is
//! absent, older or newer than this client: a missing object is `None`, not an error.

use postgres_protocol::escape::escape_identifier;
use serde::Serialize;
use tokio_postgres::Client;

use crate::failure::Failure;

pub const EXTENSION: &str = "pg_tviews";

/// The server's version, as `SHOW server_version` / `server_version_num` give it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServerVersion {
    /// e.g. `15.18 (Debian 15.18-0+deb12u1)`.
    pub version: String,
    /// e.g. `150018`.
    pub version_num: i32,
}

pub async fn server_version(client: &Client) -> Result<ServerVersion, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version'), \
                    current_setting('server_version_num')::int4",
            &[],
        )
        .await?;
    Ok(ServerVersion {
        version: row.try_get(0)?,
        version_num: row.try_get(1)?,
    })
}

/// What the server knows about the extension, in this database.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ExtensionInfo {
    /// `pg_tviews`.
    pub name: String,
    /// The control file is on the server (`pg_available_extensions`).
    pub available: bool,
    /// `CREATE EXTENSION` has been run in this database.
    pub installed: bool,
    /// `pg_extension.extversion`.
    pub installed_version: Option<String>,
    /// The control file's `default_version`: what `CREATE EXTENSION` would install.
    pub default_version: Option<String>,
    /// The schema the extension's objects were created in.
    pub schema: Option<String>,
}

pub async fn extension_info(client: &Client) -> Result<ExtensionInfo, tokio_postgres::Error> {
    let available = client
        .query_opt(
            "SELECT default_version FROM pg_available_extensions WHERE name = $1",
            &[&EXTENSION],
        )
        .await?;
    let installed = client
        .query_opt(
            "SELECT e.extversion, n.nspname::text \
               FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
              WHERE e.extname = $1",
            &[&EXTENSION],
        )
        .await?;
    Ok(ExtensionInfo {
        name: EXTENSION.to_string(),
        available: available.is_some(),
        default_version: available.map(|r| r.try_get(0)).transpose()?,
        installed: installed.is_some(),
        installed_version: installed.as_ref().map(|r| r.try_get(0)).transpose()?,
        schema: installed.as_ref().map(|r| r.try_get(1)).transpose()?,
    })
}

/// Where to look for a function of the extension, in order: the extension's schema, then
/// the search path, as call expressions with no arguments (defaults fill the rest). Names
/// are quoted here, in Rust (STYLE.md 1).
pub fn function_candidates(schema: Option<&str>, name: &str) -> Vec<String> {
    let mut out = Vec::with_capacity(2);
    if let Some(s) = schema {
        out.push(format!(
            "{}.{}()",
            escape_identifier(s),
            escape_identifier(name)
        ));
    }
    out.push(format!("{}()", escape_identifier(name)));
    out
}

/// The first candidate of [`function_candidates`] that exists, as a call expression
/// (`"public"."pg_tviews_version"()`), safe to splice: every identifier in it was
/// quoted by [`escape_identifier`]. Found by name (`to_regproc`), so a function whose
/// arguments all have defaults, like `pg_tviews_health_check(interval DEFAULT ...)`,
/// is found too.
pub async fn find_function(
    client: &Client,
    schema: Option<&str>,
    name: &str,
) -> Result<Option<String>, tokio_postgres::Error> {
    for candidate in function_candidates(schema, name) {
        let proc_name = candidate.trim_end_matches("()");
        let row = client
            .query_one("SELECT to_regproc($1) IS NOT NULL", &[&proc_name])
            .await?;
        if row.try_get::<_, bool>(0)? {
            return Ok(Some(candidate));
        }
    }
    Ok(None)
}

/// Runs a query without parameters and maps each row with `f`.
pub async fn rows<T>(
    client: &Client,
    sql: &str,
    f: impl Fn(&tokio_postgres::Row) -> Result<T, tokio_postgres::Error>,
) -> Result<Vec<T>, tokio_postgres::Error> {
    client.query(sql, &[]).await?.iter().map(f).collect()
}

/// The installed extension's SQL API: every view and function named through the
/// extension's schema, whatever the caller's `search_path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Api {
    /// The schema of the extension's objects (`public` by default).
    pub schema: String,
    /// The database, for messages.
    pub database: String,
}

impl Api {
    /// The extension's API in this database, or an error saying how to install it.
    pub async fn require(client: &Client) -> Result<Api, Failure> {
        let info = extension_info(client).await?;
        let database: String = client
            .query_one("SELECT current_database()::text", &[])
            .await?
            .try_get(0)?;
        match info.schema {
            Some(schema) if info.installed => Ok(Api { schema, database }),
            _ => Err(Failure::Other(anyhow::anyhow!(
                "the extension {EXTENSION} is not installed in database \"{database}\"{}",
                if info.available {
                    format!(" (to install it: CREATE EXTENSION {EXTENSION};)")
                } else {
                    " (and not available on this server)".to_string()
                }
            ))),
        }
    }

    /// `"schema"."name"`: a view or function of the extension, quoted, safe to splice.
    pub fn object(&self, name: &str) -> String {
        format!(
            "{}.{}",
            escape_identifier(&self.schema),
            escape_identifier(name)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_quoted() {
        assert_eq!(
            function_candidates(Some("my \"schema\""), "pg_tviews_version"),
            vec![
                "\"my \"\"schema\"\"\".\"pg_tviews_version\"()".to_string(),
                "\"pg_tviews_version\"()".to_string()
            ]
        );
        assert_eq!(
            function_candidates(None, "pg_tviews_health_check"),
            vec!["\"pg_tviews_health_check\"()".to_string()]
        );
    }

    #[test]
    fn api_objects_are_quoted() {
        let api = Api {
            schema: "my schema".into(),
            database: "app".into(),
        };
        assert_eq!(
            api.object("pg_tviews_stats"),
            "\"my schema\".\"pg_tviews_stats\""
        );
    }
}
