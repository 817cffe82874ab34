//! `tviews queue`: the TVIEW work pending in every backend right now
//! (`pg_tviews_queue_realtime`), who waits for a value lock and who holds it
//! (`pg_tviews_lock_waits`), and prepared transactions holding TVIEW work
//! (`pg_tviews_prepared`).

use comfy_table::Cell;
use serde::Serialize;
use tokio_postgres::Client;

use super::probe::{self, Api};
use crate::failure::Failure;
use crate::output::{
    Format, Style, human_ms, severity_cell, short_time, table_text, table_with_header, to_json,
};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueReport {
    /// Without `shared_preload_libraries` the live queue is not collected.
    pub preloaded: bool,
    pub pending: Vec<Pending>,
    pub lock_waits: Vec<LockWait>,
    pub prepared: Vec<Prepared>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Pending {
    pub pid: i32,
    pub database: Option<String>,
    /// `None` for another database's TVIEW, or before a TVIEW is chosen.
    pub tview: Option<String>,
    pub keys_pending: i64,
    pub phase: String,
    pub age_ms: Option<f64>,
    pub waiting_for: Option<String>,
    pub usename: Option<String>,
    pub xact_start: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LockWait {
    pub waiting_pid: i32,
    pub relation: Option<String>,
    pub waiting_for: Option<String>,
    pub wanted_mode: String,
    pub waiting_ms: Option<f64>,
    pub holder_pid: Option<i32>,
    /// A prepared transaction holding the lock.
    pub holder_gid: Option<String>,
    pub held_mode: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prepared {
    pub gid: String,
    pub owner: String,
    pub prepared_at: String,
    pub age_ms: f64,
    pub tviews: Vec<String>,
    pub value_locks: i64,
    pub relation_locks: i64,
}

const AGE_MS: &str = "(extract(epoch FROM {})::float8 * 1000)";

fn age(column: &str) -> String {
    AGE_MS.replace("{}", column)
}

pub async fn gather(client: &Client) -> Result<QueueReport, Failure> {
    let api = Api::require(client).await?;
    let preloaded: bool = client
        .query_one(
            &format!(
                "SELECT preloaded FROM {}",
                api.object("pg_tviews_cache_stats")
            ),
            &[],
        )
        .await?
        .try_get(0)?;
    let pending = probe::rows(
        client,
        &format!(
            "SELECT pid, database::text, tview::text, keys_pending::int8, phase::text, {}, \
                        waiting_for::text, usename::text, xact_start::text \
                 FROM {} ORDER BY pid",
            age("age"),
            api.object("pg_tviews_queue_realtime")
        ),
        |r| {
            Ok(Pending {
                pid: r.try_get(0)?,
                database: r.try_get(1)?,
                tview: r.try_get(2)?,
                keys_pending: r.try_get(3)?,
                phase: r.try_get(4)?,
                age_ms: r.try_get(5)?,
                waiting_for: r.try_get(6)?,
                usename: r.try_get(7)?,
                xact_start: r.try_get(8)?,
            })
        },
    )
    .await?;
    let lock_waits = probe::rows(
        client,
        &format!(
            "SELECT waiting_pid, relation::text, waiting_for::text, wanted_mode::text, {}, \
                        holder_pid, holder_gid::text, held_mode::text \
                 FROM {} ORDER BY waiting_pid, holder_pid",
            age("waiting"),
            api.object("pg_tviews_lock_waits")
        ),
        |r| {
            Ok(LockWait {
                waiting_pid: r.try_get(0)?,
                relation: r.try_get(1)?,
                waiting_for: r.try_get(2)?,
                wanted_mode: r.try_get(3)?,
                waiting_ms: r.try_get(4)?,
                holder_pid: r.try_get(5)?,
                holder_gid: r.try_get(6)?,
                held_mode: r.try_get(7)?,
            })
        },
    )
    .await?;
    let prepared = probe::rows(
        client,
        &format!(
            "SELECT gid::text, owner::text, prepared_at::text, {}, tviews::text[], \
                        value_locks::int8, relation_locks::int8 \
                 FROM {} ORDER BY prepared_at",
            age("age"),
            api.object("pg_tviews_prepared")
        ),
        |r| {
            Ok(Prepared {
                gid: r.try_get(0)?,
                owner: r.try_get(1)?,
                prepared_at: r.try_get(2)?,
                age_ms: r.try_get(3)?,
                tviews: r.try_get(4)?,
                value_locks: r.try_get(5)?,
                relation_locks: r.try_get(6)?,
            })
        },
    )
    .await?;
    Ok(QueueReport {
        preloaded,
        pending,
        lock_waits,
        prepared,
    })
}

fn or_dash(v: Option<&str>) -> String {
    v.unwrap_or("-").to_string()
}

fn ms(v: Option<f64>) -> String {
    v.map(human_ms).unwrap_or_else(|| "-".into())
}

pub fn render(r: &QueueReport, style: Style) -> anyhow::Result<String> {
    if style.format == Format::Json {
        return to_json(r);
    }
    let mut out = String::new();
    if !r.preloaded {
        out.push_str(
            "live queue off: pg_tviews is not in shared_preload_libraries (prepared transactions are still shown)\n",
        );
    } else if r.pending.is_empty() {
        out.push_str("no TVIEW work pending\n");
    } else {
        let mut t = table_with_header(
            style,
            &[
                "pid",
                "database",
                "tview",
                "keys",
                "phase",
                "for",
                "waiting for",
                "user",
                "xact start",
            ],
        );
        for p in &r.pending {
            let waiting = p.waiting_for.is_some();
            t.add_row(vec![
                Cell::new(p.pid),
                Cell::new(or_dash(p.database.as_deref())),
                Cell::new(or_dash(p.tview.as_deref())),
                Cell::new(p.keys_pending),
                Cell::new(&p.phase),
                Cell::new(ms(p.age_ms)),
                severity_cell(
                    or_dash(p.waiting_for.as_deref()),
                    if waiting { "warning" } else { "" },
                    style,
                ),
                Cell::new(or_dash(p.usename.as_deref())),
                Cell::new(p.xact_start.as_deref().map(short_time).unwrap_or_default()),
            ]);
        }
        out.push_str(&table_text(&t));
    }
    if !r.lock_waits.is_empty() {
        let mut t = table_with_header(
            style,
            &[
                "waiting pid",
                "relation",
                "waiting for",
                "wants",
                "waiting",
                "held by",
                "holds",
            ],
        );
        for w in &r.lock_waits {
            let holder = match (&w.holder_pid, &w.holder_gid) {
                (Some(pid), _) => format!("pid {pid}"),
                (None, Some(gid)) => format!("prepared transaction '{gid}'"),
                (None, None) => "-".into(),
            };
            t.add_row(vec![
                Cell::new(w.waiting_pid),
                Cell::new(or_dash(w.relation.as_deref())),
                Cell::new(or_dash(w.waiting_for.as_deref())),
                Cell::new(&w.wanted_mode),
                severity_cell(ms(w.waiting_ms), "warning", style),
                Cell::new(holder),
                Cell::new(&w.held_mode),
            ]);
        }
        out.push_str(&table_text(&t));
    }
    if !r.prepared.is_empty() {
        let mut t = table_with_header(
            style,
            &[
                "prepared transaction",
                "owner",
                "prepared at",
                "age",
                "tviews",
                "value locks",
                "relation locks",
            ],
        );
        for p in &r.prepared {
            t.add_row(vec![
                Cell::new(&p.gid),
                Cell::new(&p.owner),
                Cell::new(short_time(&p.prepared_at)),
                Cell::new(human_ms(p.age_ms)),
                Cell::new(p.tviews.join(", ")),
                Cell::new(p.value_locks),
                Cell::new(p.relation_locks),
            ]);
        }
        out.push_str(&table_text(&t));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> QueueReport {
        QueueReport {
            preloaded: true,
            pending: vec![Pending {
                pid: 4242,
                database: Some("shop".into()),
                tview: Some("tv_product".into()),
                keys_pending: 3,
                phase: "locking".into(),
                age_ms: Some(1500.0),
                waiting_for: Some("value lock on tv_product".into()),
                usename: Some("app".into()),
                xact_start: Some("2026-05-01 10:00:00.123+00".into()),
            }],
            lock_waits: vec![LockWait {
                waiting_pid: 4242,
                relation: Some("tv_product".into()),
                waiting_for: Some("value lock on tv_product".into()),
                wanted_mode: "ExclusiveLock".into(),
                waiting_ms: Some(1500.0),
                holder_pid: None,
                holder_gid: Some("tx1".into()),
                held_mode: "ExclusiveLock".into(),
            }],
            prepared: vec![Prepared {
                gid: "tx1".into(),
                owner: "app".into(),
                prepared_at: "2026-05-01 09:59:00.5+00".into(),
                age_ms: 61_000.0,
                tviews: vec!["tv_product".into()],
                value_locks: 2,
                relation_locks: 0,
            }],
        }
    }

    #[test]
    fn tables() {
        insta::assert_snapshot!(render(&report(), Style::default()).unwrap());
    }

    #[test]
    fn nothing_pending() {
        let r = QueueReport {
            preloaded: true,
            pending: vec![],
            lock_waits: vec![],
            prepared: vec![],
        };
        assert_eq!(
            render(&r, Style::default()).unwrap(),
            "no TVIEW work pending\n"
        );
    }

    #[test]
    fn json_field_names_are_stable() {
        let style = Style::plain(Format::Json);
        insta::assert_snapshot!(render(&report(), style).unwrap());
    }
}
