//! TVIEWs that come back from a dump.
//!
//! `pg_dump` writes a TVIEW as the objects it is made of: the table and
//! its rows, the backing view in schema `tviews`, the primary key, the
//! capture triggers on its sources and the guard triggers on the table.
//! The `tviews_guard` trigger carries the rest of the definition as its
//! arguments — a format tag, the backing view, the key column, the recorded
//! settings — so a schema is complete without our catalog's rows (which
//! are therefore not dumped: a data-only restore never collides with them).
//!
//! When a `CREATE TRIGGER tviews_guard` ends (a restore, or our own
//! create, which makes the catalog row first), the table is adopted: the
//! catalog row, the internal dependency of the view on the table, and a
//! check that the definition still analyses. The rows are trusted as they
//! are: pg_dump reads the TVIEW and its sources in one snapshot, so they
//! agree (`pg_tviews_verify` checks it).

use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use tviews_core::sql::{ident, literal, qualified};

use crate::error::{raise, raise_with};
use crate::registry::{self, parse_oid};
use crate::{security, spi};

/// First argument of every `tviews_guard` trigger: what the others mean.
pub const FORMAT: &str = "pg_tviews:1";

/// What a TVIEW's guard trigger says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardArgs {
    /// The backing view, schema-qualified and quoted.
    pub view: String,
    pub key: String,
    /// Recorded settings as stored in the catalog (`name=value`).
    pub settings: Vec<String>,
}

impl GuardArgs {
    pub fn to_args(&self) -> Vec<String> {
        let mut v = vec![FORMAT.to_string(), self.view.clone(), self.key.clone()];
        v.extend(self.settings.iter().cloned());
        v
    }

    /// The argument list of `CREATE TRIGGER ... tviews.guard(...)`.
    pub fn to_sql(&self) -> String {
        self.to_args()
            .iter()
            .map(|a| literal(a))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn parse(args: &[String]) -> Option<GuardArgs> {
        match args {
            [format, view, key, settings @ ..] if format == FORMAT => Some(GuardArgs {
                view: view.clone(),
                key: key.clone(),
                settings: settings.to_vec(),
            }),
            _ => None,
        }
    }
}

/// `pg_trigger.tgargs` as hex text → the arguments.
pub fn decode_tgargs(hex: &str) -> Vec<String> {
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    let mut args: Vec<String> = bytes
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // Every argument ends with a NUL: the split leaves one empty tail.
    if args.last().is_some_and(String::is_empty) {
        args.pop();
    }
    args
}

/// The guard arguments every TVIEW should carry, by relid, from the catalog.
pub fn expected_guards(client: &mut SpiClient<'_>) -> Vec<(u32, GuardArgs)> {
    spi::rows(
        client,
        "SELECT t.relid::pg_catalog.oid::pg_catalog.text,
                pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(v.relname),
                t.key_column::pg_catalog.text,
                pg_catalog.array_to_string(t.settings, E'\\n')
         FROM tviews.tview t
         JOIN pg_catalog.pg_class v ON v.oid = t.defview
         JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace",
        &[],
    )
    .into_iter()
    .filter_map(|r| {
        let field = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
        let relid = parse_oid(&field(0)).ok()?.to_u32();
        let settings = field(3)
            .split('\n')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        Some((
            relid,
            GuardArgs {
                view: field(1),
                key: field(2),
                settings,
            },
        ))
    })
    .collect()
}

/// `ddl_command_end` for `CREATE TRIGGER`: adopts the table of every
/// `tviews_guard` trigger the command made.
pub fn on_create_trigger() {
    let found = Spi::connect_mut(|client| {
        spi::rows(
            client,
            "SELECT g.tgrelid::pg_catalog.text, pg_catalog.encode(g.tgargs, 'hex')
             FROM pg_catalog.pg_event_trigger_ddl_commands() d
             JOIN pg_catalog.pg_trigger g ON g.oid = d.objid
             WHERE d.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass
               AND g.tgname = 'tviews_guard'
               AND g.tgfoid = 'tviews.guard()'::pg_catalog.regprocedure",
            &[],
        )
    });
    for r in found {
        let field = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
        let relid = parse_oid(&field(0)).unwrap_or_else(|e| raise(&e));
        adopt(relid, &decode_tgargs(&field(1)));
    }
}

fn adopt(relid: pg_sys::Oid, args: &[String]) {
    let display = Spi::connect_mut(|client| {
        spi::one(
            client,
            "SELECT tviews.display_name($1)",
            &[spi::oid_arg(relid)],
        )
    })
    .unwrap_or_else(|| relid.to_u32().to_string());
    let Some(guard) = GuardArgs::parse(args) else {
        raise_with(
            "22023",
            format!("trigger tviews_guard on {display} does not describe a TVIEW"),
            Some(format!(
                "Its arguments are {args:?}; pg_tviews expects \"{FORMAT}\", the backing view, the key column and the recorded settings."
            )),
            Some("Triggers of pg_tviews are made by CREATE TABLE tv_x AS ... and by pg_dump; do not create them by hand.".into()),
        )
    };
    let Some(reg) = registry::get() else { return };
    let (ext_owner, catalog_relid) = (reg.ext_owner, reg.catalog_relid);
    drop(reg);
    let adopted = Spi::connect_mut(|client| {
        let row = spi::rows(
            client,
            "SELECT c.relowner::pg_catalog.text,
                    pg_catalog.pg_has_role(c.relowner, 'USAGE')::pg_catalog.text,
                    v.oid::pg_catalog.text, v.relkind::pg_catalog.text, vn.nspname::pg_catalog.text,
                    v.relowner::pg_catalog.text,
                    (SELECT t.defview::pg_catalog.oid::pg_catalog.text FROM tviews.tview t WHERE t.relid::pg_catalog.oid = c.oid),
                    (SELECT t.relid::pg_catalog.oid::pg_catalog.text FROM tviews.tview t WHERE t.defview::pg_catalog.oid = v.oid)
             FROM pg_catalog.pg_class c
             LEFT JOIN pg_catalog.pg_class v ON v.oid = pg_catalog.to_regclass($2)
             LEFT JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
             WHERE c.oid = $1",
            &[
                spi::oid_arg(relid),
                pgrx::datum::DatumWithOid::from(guard.view.as_str()),
            ],
        );
        let Some(row) = row.into_iter().next() else {
            return false;
        };
        let field = |i: usize| row.get(i).cloned().flatten();
        let owns = field(1).as_deref() == Some("true");
        if !owns {
            raise_with(
                "42501",
                format!("must be owner of table {display} to make it a TVIEW"),
                None,
                Some("Restore TVIEWs as their owner or as a superuser.".into()),
            );
        }
        let view_oid = field(2);
        let is_ours = field(3).as_deref() == Some("v")
            && field(4).as_deref() == Some("tviews")
            && field(5) == field(0);
        if view_oid.is_none() || !is_ours {
            raise_with(
                "42P01",
                format!("the backing view {} of TVIEW {display} is missing", guard.view),
                Some(format!(
                    "A TVIEW's definition lives in a view in schema tviews owned by the TVIEW's owner; trigger tviews_guard on {display} names {}.",
                    guard.view
                )),
                Some("Dump and restore schema tviews together with the TVIEWs' schemas (pg_dump without -n/-t filters that leave it out).".into()),
            );
        }
        let view = parse_oid(view_oid.as_deref().unwrap_or_default()).unwrap_or_else(|e| raise(&e));
        match (field(6), field(7)) {
            // Our own CREATE, or a trigger made again: the row is there.
            (Some(v), _) if v == view.to_u32().to_string() => {
                record_view_dependency(client, view, relid);
                return false;
            }
            (Some(_), _) => raise_with(
                "42710",
                format!("TVIEW {display} already has a backing view"),
                Some(format!(
                    "Trigger tviews_guard names {} instead.",
                    guard.view
                )),
                Some("Do not create pg_tviews triggers by hand.".into()),
            ),
            (None, Some(other)) => raise_with(
                "42710",
                format!("view {} already backs another TVIEW", guard.view),
                Some(format!("It backs the table with OID {other}.")),
                Some("Do not create pg_tviews triggers by hand.".into()),
            ),
            (None, None) => {}
        }
        if let Some(diff) = column_difference(client, relid, view) {
            raise_with(
                "42804",
                format!("table {display} does not have the columns of its TVIEW definition"),
                Some(diff),
                Some("Restore the TVIEW's table and its backing view from the same dump.".into()),
            );
        }
        record_view_dependency(client, view, relid);
        insert_catalog_row(
            client,
            ext_owner,
            relid,
            view,
            &guard.key,
            guard.settings.clone(),
        );
        true
    });
    if !adopted {
        return;
    }
    // SAFETY: queues a relcache invalidation for our catalog table.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(catalog_relid) };
    registry::invalidate();
    // Loading the registry analyses the definition: a restore into a
    // database where it no longer works fails here, naming the TVIEW.
    if let Some(reg) = registry::get() {
        reg.require(relid);
    }
}

/// The catalog row of a TVIEW, written as the extension owner.
pub fn insert_catalog_row(
    client: &mut SpiClient<'_>,
    ext_owner: pg_sys::Oid,
    relid: pg_sys::Oid,
    view: pg_sys::Oid,
    key: &str,
    settings: Vec<String>,
) {
    security::as_user(ext_owner, false, || {
        spi::run(
            client,
            "INSERT INTO tviews.tview (relid, defview, key_column, settings) \
             VALUES ($1::pg_catalog.regclass, $2::pg_catalog.regclass, $3, $4)",
            &[
                spi::oid_arg(relid),
                spi::oid_arg(view),
                pgrx::datum::DatumWithOid::from(key),
                spi::text_array(settings),
            ],
        );
    });
}

/// How the table's columns differ from its backing view's (names and
/// types, in order), if they do.
pub fn column_difference(
    client: &mut SpiClient<'_>,
    relid: pg_sys::Oid,
    view: pg_sys::Oid,
) -> Option<String> {
    let cols = |client: &mut SpiClient<'_>, rel: pg_sys::Oid| -> Vec<String> {
        spi::rows(
            client,
            "SELECT pg_catalog.quote_ident(attname) || ' ' || pg_catalog.format_type(atttypid, atttypmod)
             FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped
             ORDER BY attnum",
            &[spi::oid_arg(rel)],
        )
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect()
    };
    let (table, defined) = (cols(client, relid), cols(client, view));
    (table != defined).then(|| {
        format!(
            "The table has ({}); its definition returns ({}).",
            table.join(", "),
            defined.join(", ")
        )
    })
}

/// The view belongs to the table: dropping the table drops it, and
/// dropping something the view needs drops the TVIEW (with CASCADE).
pub fn record_view_dependency(client: &mut SpiClient<'_>, view: pg_sys::Oid, relid: pg_sys::Oid) {
    let exists = spi::one(
        client,
        "SELECT 1::pg_catalog.text FROM pg_catalog.pg_depend
         WHERE classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND objid = $1 AND objsubid = 0
           AND refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND refobjid = $2
           AND refobjsubid = 0 AND deptype = 'i'",
        &[spi::oid_arg(view), spi::oid_arg(relid)],
    );
    if exists.is_some() {
        return;
    }
    // SAFETY: both objects exist; recordDependencyOn copies the addresses.
    unsafe {
        let depender = pg_sys::ObjectAddress {
            classId: pg_sys::RelationRelationId,
            objectId: view,
            objectSubId: 0,
        };
        let referenced = pg_sys::ObjectAddress {
            classId: pg_sys::RelationRelationId,
            objectId: relid,
            objectSubId: 0,
        };
        pg_sys::recordDependencyOn(
            &depender,
            &referenced,
            pg_sys::DependencyType::DEPENDENCY_INTERNAL,
        );
        pg_sys::CommandCounterIncrement();
    }
}

/// `CREATE TRIGGER tviews_guard ... tviews.guard(args)` for a relation.
pub fn guard_trigger_sql(rel: &str, args: &GuardArgs) -> String {
    format!(
        "CREATE TRIGGER {} BEFORE INSERT OR UPDATE OR DELETE ON {rel} FOR EACH STATEMENT EXECUTE FUNCTION {}({})",
        ident("tviews_guard"),
        qualified("tviews", "guard"),
        args.to_sql()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tgargs_round_trip() {
        let g = GuardArgs {
            view: "tviews.tv_post".into(),
            key: "pk_post".into(),
            settings: vec!["DateStyle=ISO, MDY".into(), "TimeZone=UTC".into()],
        };
        let hex: String = g
            .to_args()
            .iter()
            .flat_map(|a| a.bytes().chain(std::iter::once(0)))
            .map(|b| format!("{b:02x}"))
            .collect();
        let args = decode_tgargs(&hex);
        assert_eq!(GuardArgs::parse(&args), Some(g));
        assert_eq!(GuardArgs::parse(&["x".into()]), None);
    }
}
