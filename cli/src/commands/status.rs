//! `tviews status`: the server, the extension, how many TVIEWs, and the extension's own
//! health checks when it has them.

use comfy_table::{Cell, Color};
use serde::Serialize;
use tokio_postgres::Client;

use super::probe::{self, EXTENSION, ExtensionInfo};
use crate::conn::{Connected, HostSpec};
use crate::output::{
    Format, Style, colored, key_value_table, severity_cell, table_text, table_with_header, to_json,
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    pub server: ServerStatus,
    pub connection: ConnectionStatus,
    pub extension: ExtensionStatus,
    pub tviews: TviewsStatus,
    pub health: HealthStatus,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServerStatus {
    pub version: String,
    pub version_num: i32,
    /// `pg_postmaster_start_time()`, as text in the session's time zone.
    pub started_at: String,
    pub database: String,
    pub user: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConnectionStatus {
    /// A socket directory or a host name.
    pub host: String,
    pub port: u16,
    pub socket: bool,
    /// TLS in use (`pg_stat_ssl`).
    pub ssl: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExtensionStatus {
    /// Name, availability, installed and default versions, schema.
    #[serde(flatten)]
    pub info: ExtensionInfo,
    /// pg_tviews is in `shared_preload_libraries`; `None` when this user may not read it.
    pub statistics: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TviewsStatus {
    /// Rows of `tviews.tview`; `None` when the catalog does not exist.
    pub count: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HealthStatus {
    /// `pg_tviews_health_check()` exists in this installation.
    pub available: bool,
    pub summary: HealthSummary,
    pub checks: Vec<HealthCheck>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HealthSummary {
    pub ok: usize,
    pub info: usize,
    pub warning: usize,
    pub error: usize,
    /// Checks whose severity is none of the four above (a newer extension, say).
    pub other: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HealthCheck {
    pub check_name: String,
    pub severity: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl HealthSummary {
    pub fn of(checks: &[HealthCheck]) -> HealthSummary {
        let mut s = HealthSummary::default();
        for c in checks {
            match c.severity.as_str() {
                "ok" => s.ok += 1,
                "info" => s.info += 1,
                "warning" => s.warning += 1,
                "error" => s.error += 1,
                _ => s.other += 1,
            }
        }
        s
    }

    /// `2 ok, 1 warning`; severities with no checks are left out.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [
            (self.error, "error"),
            (self.warning, "warning"),
            (self.info, "info"),
            (self.ok, "ok"),
            (self.other, "other"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, label)| format!("{n} {label}"))
        .collect();
        if parts.is_empty() {
            "no checks".to_string()
        } else {
            parts.join(", ")
        }
    }

    /// The worst severity present, for colouring.
    pub fn worst(&self) -> &'static str {
        if self.error > 0 {
            "error"
        } else if self.warning > 0 {
            "warning"
        } else if self.info > 0 || self.other > 0 {
            "info"
        } else {
            "ok"
        }
    }
}

/// Whether a `shared_preload_libraries` value loads pg_tviews. Entries may be quoted,
/// carry a directory (`$libdir/pg_tviews`) or a `.so` suffix, as the server accepts.
pub fn preloads_extension(shared_preload_libraries: &str) -> bool {
    shared_preload_libraries.split(',').any(|entry| {
        let entry = entry.trim().trim_matches('"').trim();
        let base = entry.rsplit('/').next().unwrap_or(entry);
        base.strip_suffix(".so").unwrap_or(base) == EXTENSION
    })
}

pub async fn gather(conn: &Connected) -> Result<StatusReport, tokio_postgres::Error> {
    let client = &conn.client;
    let version = probe::server_version(client).await?;
    let row = client
        .query_one(
            "SELECT pg_postmaster_start_time()::text, current_database()::text, \
                    current_user::text, \
                    coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false)",
            &[],
        )
        .await?;
    let server = ServerStatus {
        version: version.version,
        version_num: version.version_num,
        started_at: row.try_get(0)?,
        database: row.try_get(1)?,
        user: row.try_get(2)?,
    };
    let target = &conn.target;
    let connection = ConnectionStatus {
        host: match &target.host {
            HostSpec::Socket(dir) => dir.display().to_string(),
            HostSpec::Tcp(h) => h.clone(),
        },
        port: target.port,
        socket: target.is_socket(),
        ssl: row.try_get(3)?,
    };

    // pg_settings hides superuser-only settings such as this one from users without
    // pg_read_all_settings, where current_setting() would raise an error instead.
    let preload: Option<String> = client
        .query_opt(
            "SELECT setting FROM pg_settings WHERE name = 'shared_preload_libraries'",
            &[],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    let extension = ExtensionStatus {
        info: probe::extension_info(client).await?,
        statistics: preload.as_deref().map(preloads_extension),
    };

    let tviews = TviewsStatus {
        count: tview_count(client).await?,
    };
    let health = health(client, extension.info.schema.as_deref()).await?;
    Ok(StatusReport {
        server,
        connection,
        extension,
        tviews,
        health,
    })
}

async fn tview_count(client: &Client) -> Result<Option<i64>, tokio_postgres::Error> {
    // Two statements: a query naming tviews.tview would fail to parse without it.
    let exists: bool = client
        .query_one("SELECT to_regclass('tviews.tview') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    if !exists {
        return Ok(None);
    }
    let n: i64 = client
        .query_one("SELECT count(*) FROM tviews.tview", &[])
        .await?
        .try_get(0)?;
    Ok(Some(n))
}

async fn health(
    client: &Client,
    schema: Option<&str>,
) -> Result<HealthStatus, tokio_postgres::Error> {
    let Some(call) = probe::find_function(client, schema, "pg_tviews_health_check").await? else {
        return Ok(HealthStatus::default());
    };
    // Cast every column: the function is not written yet, and a varchar or enum column
    // should not break the client.
    let sql =
        format!("SELECT check_name::text, severity::text, detail::text, hint::text FROM {call}");
    let rows = client.query(&sql, &[]).await?;
    let checks = rows
        .iter()
        .map(|r| {
            Ok(HealthCheck {
                check_name: r.try_get::<_, Option<String>>(0)?.unwrap_or_default(),
                severity: r.try_get::<_, Option<String>>(1)?.unwrap_or_default(),
                detail: r.try_get(2)?,
                hint: r.try_get(3)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    Ok(HealthStatus {
        available: true,
        summary: HealthSummary::of(&checks),
        checks,
    })
}

pub fn render(r: &StatusReport, style: Style) -> anyhow::Result<String> {
    if style.format == Format::Json {
        return to_json(r);
    }
    let s = &r.server;
    let c = &r.connection;
    let e = &r.extension.info;
    let connection = format!(
        "{} {}, port {}, {}",
        if c.socket { "socket" } else { "host" },
        c.host,
        c.port,
        if c.ssl { "TLS" } else { "no TLS" }
    );
    let extension = match (&e.installed_version, e.available) {
        (Some(v), _) => Cell::new(match &e.schema {
            Some(schema) => format!("{v} (schema {schema})"),
            None => v.clone(),
        }),
        (None, true) => colored(
            format!(
                "not installed in this database (CREATE EXTENSION {})",
                e.name
            ),
            Color::Yellow,
            style,
        ),
        (None, false) => colored(
            "not installed (and not available on this server)",
            Color::Yellow,
            style,
        ),
    };
    let statistics = match r.extension.statistics {
        Some(true) => severity_cell("on", "ok", style),
        Some(false) => severity_cell(
            format!("off (add {} to shared_preload_libraries)", e.name),
            "warning",
            style,
        ),
        None => Cell::new("unknown (shared_preload_libraries is not readable by this user)"),
    };
    let tviews = match r.tviews.count {
        Some(n) => Cell::new(n),
        None => Cell::new("-"),
    };
    let health = if r.health.available {
        severity_cell(r.health.summary.describe(), r.health.summary.worst(), style)
    } else if e.installed {
        Cell::new("not available (no pg_tviews_health_check() in this version)")
    } else {
        Cell::new("-")
    };
    let rows = vec![
        ("server", Cell::new(&s.version)),
        ("started", Cell::new(&s.started_at)),
        ("database", Cell::new(&s.database)),
        ("user", Cell::new(&s.user)),
        ("connection", Cell::new(connection)),
        ("extension", extension),
        ("statistics", statistics),
        ("tviews", tviews),
        ("health", health),
    ];
    let mut out = table_text(&key_value_table(style, rows));
    if !r.health.checks.is_empty() {
        let mut t = table_with_header(style, &["check", "severity", "detail", "hint"]);
        for check in &r.health.checks {
            t.add_row(vec![
                Cell::new(&check.check_name),
                severity_cell(&check.severity, &check.severity, style),
                Cell::new(check.detail.as_deref().unwrap_or("")),
                Cell::new(check.hint.as_deref().unwrap_or("")),
            ]);
        }
        out.push_str(&table_text(&t));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> StatusReport {
        StatusReport {
            server: ServerStatus {
                version: "15.18 (Debian 15.18-0+deb12u1)".into(),
                version_num: 150018,
                started_at: "2026-05-01 10:00:00.123456+00".into(),
                database: "app".into(),
                user: "postgres".into(),
            },
            connection: ConnectionStatus {
                host: "/tmp/cluster".into(),
                port: 5499,
                socket: true,
                ssl: false,
            },
            extension: ExtensionStatus {
                info: ExtensionInfo {
                    name: "pg_tviews".into(),
                    available: true,
                    installed: true,
                    installed_version: Some("0.1.0".into()),
                    default_version: Some("0.1.0".into()),
                    schema: Some("public".into()),
                },
                statistics: Some(false),
            },
            tviews: TviewsStatus { count: Some(3) },
            health: HealthStatus::default(),
        }
    }

    fn checks() -> Vec<HealthCheck> {
        vec![
            HealthCheck {
                check_name: "preload".into(),
                severity: "warning".into(),
                detail: Some("pg_tviews is not in shared_preload_libraries".into()),
                hint: Some("add it and restart".into()),
            },
            HealthCheck {
                check_name: "catalog".into(),
                severity: "ok".into(),
                detail: None,
                hint: None,
            },
        ]
    }

    #[test]
    fn preload_detection() {
        assert!(preloads_extension("pg_tviews"));
        assert!(preloads_extension("pg_stat_statements, pg_tviews"));
        assert!(preloads_extension("\"$libdir/pg_tviews\""));
        assert!(preloads_extension("pg_tviews.so"));
        assert!(!preloads_extension(""));
        assert!(!preloads_extension("pg_tviews_other, auto_explain"));
    }

    #[test]
    fn summary_counts_and_worst() {
        let s = HealthSummary::of(&checks());
        assert_eq!((s.ok, s.warning, s.error), (1, 1, 0));
        assert_eq!(s.describe(), "1 warning, 1 ok");
        assert_eq!(s.worst(), "warning");
        assert_eq!(HealthSummary::of(&[]).describe(), "no checks");
    }

    #[test]
    fn table_without_health() {
        insta::assert_snapshot!(render(&report(), Style::default()).unwrap());
    }

    #[test]
    fn table_with_health_and_no_extension() {
        let mut r = report();
        r.extension.info.installed = false;
        r.extension.info.installed_version = None;
        r.extension.info.schema = None;
        r.extension.statistics = None;
        r.tviews.count = None;
        r.health = HealthStatus {
            available: true,
            summary: HealthSummary::of(&checks()),
            checks: checks(),
        };
        insta::assert_snapshot!(render(&r, Style::default()).unwrap());
    }

    #[test]
    fn json_field_names_are_stable() {
        let mut r = report();
        r.health = HealthStatus {
            available: true,
            summary: HealthSummary::of(&checks()),
            checks: checks(),
        };
        let style = Style::plain(Format::Json);
        insta::assert_snapshot!(render(&r, style).unwrap());
    }
}
