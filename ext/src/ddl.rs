//! CREATE and DROP of TVIEWs, through event triggers.
//!
//! `CREATE TABLE tv_x AS SELECT ...` runs as an ordinary `CREATE TABLE AS`
//! (same semantics: `IF NOT EXISTS`, the `SELECT n` tag, column lists,
//! storage options), bracketed by two event triggers:
//! - `ddl_command_start` sees the analysed statement: it takes our own
//!   options out of `WITH (...)`, refuses what a TVIEW cannot be (temporary,
//!   `WITH NO DATA`), and deparses the query (with a search_path of
//!   pg_catalog only, so every name comes out schema-qualified);
//! - `ddl_command_end` turns the new table into a TVIEW: the backing view,
//!   the analysis (errors abort the whole statement, so nothing is left
//!   half-created), the primary key, the catalog row, capture triggers.
//!
//! Event triggers fire in every backend whether or not the library was
//! preloaded, which a ProcessUtility hook would not (docs/ARCHITECTURE.md).
//! `DROP TABLE` needs nothing special: the backing view is an internal
//! dependency of the table, and `sql_drop` cleans the catalog and triggers.

use std::cell::RefCell;
use std::ffi::{CStr, CString};

use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use tviews_core::analyze::{Target, analyze};
use tviews_core::sql::{ident, literal, qualified};

use crate::error::{raise, raise_with};
use crate::registry::{self, parse_oid, prepared};
use crate::{introspect, security, spi};

/// A `CREATE TABLE tv_... AS` between its two event triggers.
#[derive(Debug, Clone)]
struct PendingCreate {
    name: String,
    key: Option<String>,
    sql: String,
    settings: Vec<(String, String)>,
}

thread_local! {
    static PENDING: RefCell<Vec<PendingCreate>> = const { RefCell::new(Vec::new()) };
}

pub fn clear_pending() {
    PENDING.with(|p| {
        if let Ok(mut p) = p.try_borrow_mut() {
            p.clear();
        }
    });
}

/// Prefix that makes a `CREATE TABLE ... AS` a TVIEW.
pub const PREFIX: &str = "tv_";

macro_rules! v1_function {
    ($finfo:ident, $name:ident, $body:path) => {
        #[unsafe(no_mangle)]
        #[doc(hidden)]
        pub extern "C" fn $finfo() -> &'static pg_sys::Pg_finfo_record {
            const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }

        /// # Safety
        /// Called by PostgreSQL's function manager with a valid `fcinfo`.
        #[pg_guard]
        #[unsafe(no_mangle)]
        pub unsafe extern "C-unwind" fn $name(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
            // SAFETY: called as an event trigger (checked inside).
            unsafe { $body(fcinfo) };
            pg_sys::Datum::from(0)
        }
    };
}

v1_function!(
    pg_finfo_tviews_ddl_command_start,
    tviews_ddl_command_start,
    on_command_start
);
v1_function!(
    pg_finfo_tviews_ddl_command_end,
    tviews_ddl_command_end,
    on_command_end
);
v1_function!(pg_finfo_tviews_sql_drop, tviews_sql_drop, on_sql_drop);
v1_function!(pg_finfo_tviews_ddl_watch, tviews_ddl_watch, on_ddl_watch);
v1_function!(
    pg_finfo_tviews_reconcile_triggers,
    tviews_reconcile_triggers,
    on_reconcile
);

/// `tviews.reconcile_triggers()`: makes every trigger of ours match the
/// catalog (upgrade scripts call it; a superuser may, as a repair).
unsafe fn on_reconcile(_fcinfo: pg_sys::FunctionCallInfo) {
    reconcile_triggers();
}

unsafe fn on_ddl_watch(fcinfo: pg_sys::FunctionCallInfo) {
    // SAFETY: only checks the call context.
    unsafe { event_data(fcinfo) };
    crate::watch::on_ddl_end();
}

unsafe fn event_data(fcinfo: pg_sys::FunctionCallInfo) -> *mut pg_sys::EventTriggerData {
    // SAFETY: fcinfo is valid; the node tag is checked.
    unsafe {
        let ctx = (*fcinfo).context;
        if ctx.is_null() || (*ctx).type_ != pg_sys::NodeTag::T_EventTriggerData {
            raise_with(
                "39P01",
                "pg_tviews: not called as an event trigger",
                None,
                None,
            );
        }
        ctx.cast()
    }
}

unsafe fn list_ptrs(list: *mut pg_sys::List) -> Vec<*mut std::ffi::c_void> {
    if list.is_null() {
        return Vec::new();
    }
    // SAFETY: a valid pointer List.
    unsafe {
        (0..(*list).length as usize)
            .map(|i| (*(*list).elements.add(i)).ptr_value)
            .collect()
    }
}

unsafe fn cstr(p: *const std::ffi::c_char) -> Option<String> {
    // SAFETY: a NUL-terminated string or NULL.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

unsafe fn on_command_start(fcinfo: pg_sys::FunctionCallInfo) {
    // SAFETY: the parse tree of the running statement, valid for its duration.
    unsafe {
        let data = event_data(fcinfo);
        let tree = (*data).parsetree;
        if tree.is_null() || (*tree).type_ != pg_sys::NodeTag::T_CreateTableAsStmt {
            return;
        }
        let ctas = tree as *mut pg_sys::CreateTableAsStmt;
        if (*ctas).objtype != pg_sys::ObjectType::OBJECT_TABLE {
            return;
        }
        let into = (*ctas).into;
        let rel = (*into).rel;
        let name = cstr((*rel).relname).unwrap_or_default();

        // Our options: WITH (tviews.key = '...'). Taken out of the list so
        // the table itself does not see an unknown namespace.
        let mut key = None;
        let mut kept: *mut pg_sys::List = std::ptr::null_mut();
        let mut ours = false;
        for p in list_ptrs((*into).options) {
            let def = p as *mut pg_sys::DefElem;
            if cstr((*def).defnamespace).as_deref() == Some("tviews") {
                ours = true;
                let opt = cstr((*def).defname).unwrap_or_default();
                match opt.as_str() {
                    "key" => key = cstr(pg_sys::defGetString(def)),
                    _ => raise_with(
                        "22023",
                        format!("unrecognized TVIEW option \"tviews.{opt}\""),
                        Some("The options of a TVIEW are: tviews.key.".into()),
                        Some("Name the key column with WITH (tviews.key = 'column').".into()),
                    ),
                }
            } else {
                kept = pg_sys::lappend(kept, p);
            }
        }
        if !name.starts_with(PREFIX) {
            if ours {
                raise_with(
                    "22023",
                    format!("tviews options given for \"{name}\", which is not a TVIEW"),
                    Some(format!(
                        "Only tables named {PREFIX}... created with CREATE TABLE AS are TVIEWs."
                    )),
                    Some(format!(
                        "Name the table {PREFIX}{name}, or remove the tviews options."
                    )),
                );
            }
            return;
        }
        (*into).options = kept;
        if pg_sys::XactIsoLevel >= pg_sys::XACT_REPEATABLE_READ as i32 {
            raise_with(
                "0A000",
                format!("TVIEW \"{name}\" cannot be created under REPEATABLE READ or SERIALIZABLE"),
                Some("A new TVIEW must include rows that writers commit while it is being created, which a transaction snapshot cannot see.".into()),
                Some("Create TVIEWs in a READ COMMITTED transaction (the default).".into()),
            );
        }
        if (*rel).relpersistence == pg_sys::RELPERSISTENCE_TEMP as std::ffi::c_char {
            raise_with(
                "0A000",
                format!("a TVIEW cannot be temporary: \"{name}\""),
                Some(
                    "Temporary tables are visible to one session only, while a TVIEW is maintained by every writer."
                        .into(),
                ),
                Some(format!(
                    "Create a permanent table, or name it without the {PREFIX} prefix for a plain temporary table."
                )),
            );
        }
        if (*into).skipData {
            raise_with(
                "0A000",
                format!("TVIEW \"{name}\" cannot be created WITH NO DATA"),
                Some(
                    "A TVIEW always equals its definition, so it is populated when it is created."
                        .into(),
                ),
                Some("Remove WITH NO DATA.".into()),
            );
        }
        let query = (*ctas).query;
        // CREATE TABLE ... AS EXECUTE arrives as a utility Query.
        if query.is_null()
            || (*query).type_ != pg_sys::NodeTag::T_Query
            || (*(query as *mut pg_sys::Query)).commandType != pg_sys::CmdType::CMD_SELECT
        {
            raise_with(
                "0A000",
                "CREATE TABLE ... AS EXECUTE cannot create a TVIEW",
                None,
                Some("Write the SELECT itself in the CREATE TABLE ... AS statement.".into()),
            );
        }
        let safe = vec![("search_path".to_string(), "pg_catalog".to_string())];
        let sql = security::with_settings(&safe, || {
            // Deparse a copy: ruleutils rewrites parts of the tree it is
            // given (join alias lists) in memory that does not outlive this
            // trigger, and CREATE TABLE AS executes the original afterwards.
            let copy =
                pg_sys::copyObjectImpl(query as *const std::ffi::c_void) as *mut pg_sys::Query;
            let p = pg_sys::pg_get_querydef(copy, false);
            cstr(p).unwrap_or_default()
        });
        let sql = sql.trim().trim_end_matches(';').to_string();
        PENDING.with(|pending| {
            pending.borrow_mut().push(PendingCreate {
                name,
                key,
                sql,
                settings: security::current_settings(),
            })
        });
    }
}

unsafe fn on_command_end(fcinfo: pg_sys::FunctionCallInfo) {
    // SAFETY: as in on_command_start.
    let name = unsafe {
        let data = event_data(fcinfo);
        let tree = (*data).parsetree;
        if tree.is_null() || (*tree).type_ != pg_sys::NodeTag::T_CreateTableAsStmt {
            return;
        }
        let ctas = tree as *mut pg_sys::CreateTableAsStmt;
        cstr((*(*(*ctas).into).rel).relname).unwrap_or_default()
    };
    let pending = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        let pos = p.iter().rposition(|c| c.name == name)?;
        Some(p.remove(pos))
    });
    let Some(pending) = pending else { return };
    let created = Spi::connect_mut(|client| {
        spi::one(
            client,
            "SELECT objid::pg_catalog.text FROM pg_catalog.pg_event_trigger_ddl_commands() \
             WHERE object_type = 'table' ORDER BY objid DESC LIMIT 1",
            &[],
        )
    });
    // IF NOT EXISTS on an existing table creates nothing.
    let Some(created) = created else { return };
    let relid = parse_oid(&created).unwrap_or_else(|e| raise(&e));
    finish_create(relid, &pending);
}

/// Everything that makes table `relid` a TVIEW.
fn finish_create(relid: pg_sys::Oid, p: &PendingCreate) {
    let reg_before = registry::get();
    let Some(reg_before) = reg_before else { return };
    let ext_owner = reg_before.ext_owner;
    let catalog_relid = reg_before.catalog_relid;
    drop(reg_before);
    let stale = Spi::connect_mut(|client| {
        let info = spi::rows(
            client,
            "SELECT n.nspname::pg_catalog.text, c.relname::pg_catalog.text, c.relowner::pg_catalog.text,
                    pg_catalog.quote_ident(r.rolname)
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_catalog.pg_roles r ON r.oid = c.relowner WHERE c.oid = $1",
            &[spi::oid_arg(relid)],
        );
        let Some(info) = info.into_iter().next() else {
            return false;
        };
        let field = |i: usize| info.get(i).cloned().flatten().unwrap_or_default();
        let (schema, name, owner_ident) = (field(0), field(1), field(3));
        let columns: Vec<String> = spi::rows(
            client,
            "SELECT attname::pg_catalog.text FROM pg_catalog.pg_attribute \
             WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            &[spi::oid_arg(relid)],
        )
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect();

        // 1. The backing view, created by the extension owner in our schema
        //    and then given to the TVIEW's owner.
        let view_name = free_view_name(client, &schema, &name);
        let col_list = columns
            .iter()
            .map(|c| ident(c))
            .collect::<Vec<_>>()
            .join(", ");
        let view_q = qualified("tviews", &view_name);
        let safe = vec![("search_path".to_string(), "pg_catalog".to_string())];
        security::as_user(ext_owner, false, || {
            security::with_settings(&safe, || {
                let create = format!("CREATE VIEW {view_q} ({col_list}) AS {}", p.sql);
                let mut c = std::panic::AssertUnwindSafe(&mut *client);
                PgTryBuilder::new(std::panic::AssertUnwindSafe(|| spi::run(&mut c, &create, &[])))
                    // A view over a temporary table would be temporary,
                    // which schema tviews cannot hold.
                    .catch_when(PgSqlErrorCode::ERRCODE_INVALID_TABLE_DEFINITION, |e| {
                        raise_with(
                            "0A000",
                            format!("TVIEW {name} cannot read temporary tables"),
                            Some(caught_detail(&e)),
                            Some("A temporary table is visible to one session only: read permanent tables.".into()),
                        )
                    })
                    .execute();
                spi::run(
                    client,
                    &format!("ALTER VIEW {view_q} OWNER TO {owner_ident}"),
                    &[],
                );
            })
        });
        let view = spi::one(
            client,
            "SELECT c.oid::pg_catalog.text || ' ' || c.relpersistence::pg_catalog.text FROM pg_catalog.pg_class c
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'tviews' AND c.relname = $1",
            &[pgrx::datum::DatumWithOid::from(view_name.as_str())],
        )
        .unwrap_or_default();
        let (view_oid, persistence) = view.split_once(' ').unwrap_or(("", ""));
        if persistence == "t" {
            raise_with(
                "0A000",
                format!("TVIEW {name} cannot read temporary tables"),
                Some("A temporary table is visible to one session only.".into()),
                Some("Read permanent tables only.".into()),
            );
        }
        let view = parse_oid(view_oid).unwrap_or_else(|e| raise(&e));

        // 2. The analysis: every rejection happens here, before anything
        //    else is made (and the statement's error undoes the table and view).
        let key = p.key.clone();
        let target = Target {
            schema: &schema,
            name: &name,
            key_column: key.as_deref(),
        };
        let analysis = security::with_settings(
            &[("search_path".into(), security::SAFE_SEARCH_PATH.into())],
            || {
                let (tree, catalog) =
                    introspect::definition(client, view).unwrap_or_else(|e| raise(&e));
                analyze(&target, &tree, &catalog).unwrap_or_else(|e| raise(&e))
            },
        );

        // 3'. Writers that were running while the table was filled: wait
        //     for them and keep new ones out until we commit (the capture
        //     triggers come later in this statement), and note whether the
        //     snapshot that filled the table could have missed a commit.
        let stale = lock_sources(&analysis);

        // 3. The primary key on the key column; duplicates or NULLs in the
        //    definition's result fail here with a TVIEW-specific message.
        add_primary_key(client, &schema, &name, &analysis.key.name);

        // 4. The view belongs to the table: dropping the table drops it, and
        //    dropping something the view needs drops the TVIEW (with CASCADE).
        crate::adopt::record_view_dependency(client, view, relid);

        // 5. The catalog row, as the extension owner.
        let settings = security::encode_settings(&p.settings);
        crate::adopt::insert_catalog_row(
            client,
            ext_owner,
            relid,
            view,
            &analysis.key.name,
            settings,
        );
        stale
    });
    // 6. Every backend (this one included) reloads its registry; capture
    //    triggers go on the sources.
    // SAFETY: queues a relcache invalidation for our catalog table.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(catalog_relid) };
    registry::invalidate();
    reconcile_triggers();
    validate(relid, stale);
}

/// Locks every source of a new TVIEW against writes until commit (waiting
/// for writers in flight), and tells whether the snapshot the table was
/// filled from may have missed a transaction that committed since: any
/// transaction running when it was taken, or any transaction id assigned
/// after it other than our own.
fn lock_sources(analysis: &tviews_core::analyze::Analysis) -> bool {
    let mut rels: Vec<u32> = analysis.sources.iter().map(|s| s.relation).collect();
    rels.sort();
    for r in rels {
        // SAFETY: locks a relation of this database for the transaction.
        unsafe {
            pg_sys::LockRelationOid(
                pg_sys::Oid::from(r),
                pg_sys::ShareRowExclusiveLock as pg_sys::LOCKMODE,
            )
        };
    }
    // SAFETY: reads the active snapshot and transaction ids.
    unsafe {
        let snap = pg_sys::GetActiveSnapshot();
        if snap.is_null() {
            return true;
        }
        let snap = &*snap;
        if snap.xcnt > 0 || snap.subxcnt > 0 || snap.suboverflowed {
            return true;
        }
        let next = pg_sys::ReadNextTransactionId();
        let xmax = snap.xmax;
        let ours: std::collections::BTreeSet<u32> = [
            pg_sys::GetTopTransactionIdIfAny(),
            pg_sys::GetCurrentTransactionIdIfAny(),
        ]
        .into_iter()
        .filter(|x| x.into_inner() >= xmax.into_inner())
        .map(|x| x.into_inner())
        .collect();
        next.into_inner().wrapping_sub(xmax.into_inner()) as usize != ours.len()
    }
}

fn free_view_name(client: &mut SpiClient<'_>, schema: &str, name: &str) -> String {
    let base = if schema == "public" {
        name.to_string()
    } else {
        format!("{schema}__{name}")
    };
    let base = truncate_ident(&base, 56);
    for n in 0.. {
        let candidate = if n == 0 {
            base.clone()
        } else {
            format!("{base}_{n}")
        };
        let exists = spi::one(
            client,
            "SELECT 1::pg_catalog.text FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace s ON s.oid = c.relnamespace \
             WHERE s.nspname = 'tviews' AND c.relname = $1",
            &[pgrx::datum::DatumWithOid::from(candidate.as_str())],
        );
        if exists.is_none() {
            return candidate;
        }
    }
    unreachable!("an unbounded loop returns")
}

/// At most `max` bytes, cut at a character boundary.
fn truncate_ident(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn add_primary_key(client: &mut SpiClient<'_>, schema: &str, name: &str, key: &str) {
    let sql = format!(
        "ALTER TABLE {} ADD PRIMARY KEY ({})",
        qualified(schema, name),
        ident(key)
    );
    let display = if schema == "public" {
        name.to_string()
    } else {
        format!("{schema}.{name}")
    };
    let mut client = std::panic::AssertUnwindSafe(client);
    PgTryBuilder::new(std::panic::AssertUnwindSafe(|| spi::run(&mut client, &sql, &[])))
        .catch_when(PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION, |e| {
            raise_with(
                "23505",
                format!("the definition of TVIEW {display} returns the key \"{key}\" more than once"),
                Some(caught_detail(&e)),
                Some("A TVIEW has one row per key: make the key unique in the definition (join on unique columns, or GROUP BY the key), or name another key with WITH (tviews.key = 'column').".into()),
            )
        })
        .catch_when(PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION, |e| {
            raise_with(
                "23502",
                format!("the definition of TVIEW {display} returns NULL keys in \"{key}\""),
                Some(caught_detail(&e)),
                Some(format!("Filter out rows where {key} is NULL, or choose a key that is never NULL.")),
            )
        })
        .execute();
}

fn caught_detail(e: &pgrx::pg_sys::panic::CaughtError) -> String {
    match e {
        pgrx::pg_sys::panic::CaughtError::PostgresError(r)
        | pgrx::pg_sys::panic::CaughtError::ErrorReport(r) => r
            .detail()
            .map(str::to_string)
            .unwrap_or_else(|| r.message().to_string()),
        pgrx::pg_sys::panic::CaughtError::RustPanic { ereport, .. } => {
            ereport.message().to_string()
        }
    }
}

/// Prepares the new TVIEW's statements now, so a problem shows at CREATE
/// rather than at the first write.
fn validate(relid: pg_sys::Oid, refill: bool) {
    let Some(reg) = registry::get() else { return };
    let tv = reg.require(relid);
    Spi::connect_mut(|_client| {
        security::as_user(tv.owner, true, || {
            security::with_settings(&tv.settings, || {
                prepared(&tv.apply_keys, &tv.plan.apply_keys, &[pg_sys::TEXTARRAYOID]);
                prepared(&tv.apply_all, &tv.plan.apply_all, &[]);
                for (cell, sql) in tv.derive.iter().zip(&tv.plan.derive) {
                    prepared(cell, sql, &[pg_sys::TEXTARRAYOID]);
                }
                if refill {
                    // A fresh snapshot (READ COMMITTED) sees what the
                    // writers we waited for committed.
                    let _maintenance = crate::guard::Maintenance::begin();
                    prepared(&tv.apply_all, &tv.plan.apply_all, &[]).run(&[], None);
                }
            })
        })
    });
}

/// Every TVIEW has its guard triggers (`tviews_guard` carrying what a
/// restore needs, see [`crate::adopt`]), and no other table has them.
fn reconcile_guards(ext_owner: pg_sys::Oid) {
    let _ours = crate::watch::OwnDdl::begin();
    Spi::connect_mut(|client| {
        let expected: std::collections::BTreeMap<u32, crate::adopt::GuardArgs> =
            crate::adopt::expected_guards(client).into_iter().collect();
        let existing = spi::rows(
            client,
            "SELECT t.tgrelid::pg_catalog.text, t.tgname::pg_catalog.text,
                    pg_catalog.encode(t.tgargs, 'hex')
             FROM pg_catalog.pg_trigger t
             WHERE t.tgfoid = 'tviews.guard()'::pg_catalog.regprocedure",
            &[],
        );
        // relid -> (trigger name, arguments)
        let mut have: std::collections::BTreeMap<u32, Vec<(String, Vec<String>)>> =
            Default::default();
        for r in existing {
            let field = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
            if let Ok(oid) = parse_oid(&field(0)) {
                have.entry(oid.to_u32())
                    .or_default()
                    .push((field(1), crate::adopt::decode_tgargs(&field(2))));
            }
        }
        security::as_user(ext_owner, false, || {
            let all: std::collections::BTreeSet<u32> =
                expected.keys().chain(have.keys()).copied().collect();
            for oid in all {
                let Some(rel) = spi::one(
                    client,
                    "SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)
                     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1",
                    &[spi::oid_arg(pg_sys::Oid::from(oid))],
                ) else {
                    continue;
                };
                let present = have.remove(&oid).unwrap_or_default();
                let Some(args) = expected.get(&oid) else {
                    for (n, _) in present {
                        spi::run(client, &format!("DROP TRIGGER {} ON {rel}", ident(&n)), &[]);
                    }
                    continue;
                };
                let guard = present.iter().find(|(n, _)| n == "tviews_guard");
                if guard.is_none_or(|(_, a)| *a != args.to_args()) {
                    if guard.is_some() {
                        spi::run(client, &format!("DROP TRIGGER tviews_guard ON {rel}"), &[]);
                    }
                    spi::run(client, &crate::adopt::guard_trigger_sql(&rel, args), &[]);
                }
                if !present.iter().any(|(n, _)| n == "tviews_guard_truncate") {
                    spi::run(
                        client,
                        &format!(
                            "CREATE TRIGGER tviews_guard_truncate BEFORE TRUNCATE ON {rel} \
                             FOR EACH STATEMENT EXECUTE FUNCTION tviews.guard()"
                        ),
                        &[],
                    );
                }
            }
        });
    });
}

/// Name and event of each capture trigger.
const CAPTURE_TRIGGERS: &[(&str, &str)] = &[
    (
        "tviews_capture_ins",
        "AFTER INSERT ON {rel} REFERENCING NEW TABLE AS tviews_new",
    ),
    (
        "tviews_capture_upd",
        "AFTER UPDATE ON {rel} REFERENCING OLD TABLE AS tviews_old NEW TABLE AS tviews_new",
    ),
    (
        "tviews_capture_del",
        "AFTER DELETE ON {rel} REFERENCING OLD TABLE AS tviews_old",
    ),
    ("tviews_capture_trunc", "AFTER TRUNCATE ON {rel}"),
];

/// Makes the capture triggers match what the TVIEWs read: creates the
/// missing ones, drops those on relations no TVIEW reads any more.
pub fn reconcile_triggers() {
    let Some(reg) = registry::get() else { return };
    let needed: std::collections::BTreeSet<u32> = reg.sources.keys().map(|o| o.to_u32()).collect();
    let ext_owner = reg.ext_owner;
    drop(reg);
    reconcile_guards(ext_owner);
    let _ours = crate::watch::OwnDdl::begin();
    Spi::connect_mut(|client| {
        let existing = spi::rows(
            client,
            "SELECT t.tgrelid::pg_catalog.text, t.tgname::pg_catalog.text,
                    pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)
             FROM pg_catalog.pg_trigger t
             JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
             WHERE t.tgfoid = 'tviews.capture()'::pg_catalog.regprocedure",
            &[],
        );
        let mut have: std::collections::BTreeMap<u32, (String, Vec<String>)> = Default::default();
        for r in existing {
            let field = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
            let Ok(oid) = parse_oid(&field(0)) else {
                continue;
            };
            have.entry(oid.to_u32())
                .or_insert_with(|| (field(2), Vec::new()))
                .1
                .push(field(1));
        }
        security::as_user(ext_owner, false, || {
            for (oid, (rel, names)) in &have {
                if !needed.contains(oid) {
                    for n in names {
                        spi::run(client, &format!("DROP TRIGGER {} ON {rel}", ident(n)), &[]);
                    }
                }
            }
            for oid in &needed {
                let present = have.get(oid).map(|(_, n)| n.clone()).unwrap_or_default();
                let missing: Vec<_> = CAPTURE_TRIGGERS
                    .iter()
                    .filter(|(n, _)| !present.iter().any(|p| p == n))
                    .collect();
                if missing.is_empty() {
                    continue;
                }
                let rel = spi::one(
                    client,
                    "SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(c.relname)
                     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1",
                    &[spi::oid_arg(pg_sys::Oid::from(*oid))],
                );
                let Some(rel) = rel else { continue };
                for (name, event) in missing {
                    spi::run(
                        client,
                        &format!(
                            "CREATE TRIGGER {} {} FOR EACH STATEMENT EXECUTE FUNCTION tviews.capture()",
                            ident(name),
                            event.replace("{rel}", &rel)
                        ),
                        &[],
                    );
                }
            }
        });
    });
}

unsafe fn on_sql_drop(fcinfo: pg_sys::FunctionCallInfo) {
    // SAFETY: only checks the call context.
    unsafe { event_data(fcinfo) };
    let touched = Spi::connect_mut(|client| {
        spi::one(
            client,
            "SELECT pg_catalog.to_regclass('tviews.tview')::pg_catalog.text",
            &[],
        )?;
        let reg = registry_owner(client)?;
        crate::watch::check_dropped_triggers(client);
        let deleted = security::as_user(reg.0, false, || {
            spi::rows(
                client,
                "WITH dropped AS (SELECT objid FROM pg_catalog.pg_event_trigger_dropped_objects()
                                  WHERE object_type IN ('table', 'view'))
                 DELETE FROM tviews.tview
                 WHERE relid::pg_catalog.oid IN (SELECT objid FROM dropped)
                    OR defview::pg_catalog.oid IN (SELECT objid FROM dropped)
                 RETURNING relid::pg_catalog.oid::pg_catalog.text",
                &[],
            )
        });
        Some((reg.1, !deleted.is_empty()))
    });
    let Some((catalog_relid, any)) = touched else {
        return;
    };
    if any {
        // SAFETY: queues a relcache invalidation for our catalog table.
        unsafe { pg_sys::CacheInvalidateRelcacheByRelid(catalog_relid) };
        registry::invalidate();
        reconcile_triggers();
    }
}

/// The extension owner and the catalog table's OID, read directly (the
/// registry may not load while objects are being dropped).
fn registry_owner(client: &mut SpiClient<'_>) -> Option<(pg_sys::Oid, pg_sys::Oid)> {
    let row = spi::rows(
        client,
        "SELECT e.extowner::pg_catalog.text, 'tviews.tview'::pg_catalog.regclass::pg_catalog.oid::pg_catalog.text
         FROM pg_catalog.pg_extension e WHERE e.extname = 'pg_tviews'",
        &[],
    );
    let r = row.into_iter().next()?;
    let owner = parse_oid(r.first().cloned().flatten()?.as_str()).ok()?;
    let cat = parse_oid(r.get(1).cloned().flatten()?.as_str()).ok()?;
    Some((owner, cat))
}

/// `CREATE TABLE <name> [WITH (tviews.key = ...)] AS <definition>`, for the
/// function API: the definition must be exactly one SELECT.
pub fn create_statement(
    client: &mut SpiClient<'_>,
    name: &str,
    definition: &str,
    key: Option<&str>,
) -> String {
    check_single_select(definition);
    let parts: Vec<String> = spi::rows(
        client,
        "SELECT pg_catalog.unnest(pg_catalog.parse_ident($1))",
        &[pgrx::datum::DatumWithOid::from(name)],
    )
    .into_iter()
    .filter_map(|r| r.into_iter().next().flatten())
    .collect();
    if !parts.last().is_some_and(|n| n.starts_with(PREFIX)) {
        raise_with(
            "42602",
            format!("a TVIEW's name starts with {PREFIX}: \"{name}\""),
            Some("CREATE TABLE ... AS makes a TVIEW of a table named tv_...; the functions follow the same rule.".into()),
            Some(format!("Name it {PREFIX}{}.", parts.last().map(String::as_str).unwrap_or(name))),
        );
    }
    let target = parts.iter().map(|p| ident(p)).collect::<Vec<_>>().join(".");
    let with = key
        .map(|k| format!(" WITH (tviews.key = {})", literal(k)))
        .unwrap_or_default();
    format!("CREATE TABLE {target}{with} AS {definition}")
}

fn check_single_select(definition: &str) {
    let Ok(c) = CString::new(definition) else {
        raise_with(
            "22023",
            "the definition contains a NUL character",
            None,
            None,
        )
    };
    // SAFETY: raw_parser only parses; errors are raised as syntax errors.
    let ok = unsafe {
        let list = pg_sys::raw_parser(c.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        let stmts = list_ptrs(list);
        stmts.len() == 1 && {
            let raw = stmts[0] as *mut pg_sys::RawStmt;
            !(*raw).stmt.is_null() && (*(*raw).stmt).type_ == pg_sys::NodeTag::T_SelectStmt
        }
    };
    if !ok {
        raise_with(
            "42601",
            "a TVIEW definition must be exactly one SELECT statement",
            None,
            Some("Pass the query only, without a trailing second statement.".into()),
        );
    }
}
