//! What this backend knows about the database's TVIEWs: analyses, plans,
//! capture plans per source, the flush order, and prepared statements.
//!
//! Loaded lazily from `tviews.tview` and the server's catalogs; dropped on
//! any relcache invalidation of a relation it depends on (DDL on a source,
//! a replaced backing view, a create or drop of a TVIEW anywhere, which
//! invalidates the catalog table), so plans always match the schema.

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use tviews_core::TviewError;
use tviews_core::analyze::{Analysis, Target, analyze};
use tviews_core::graph::{GraphNode, TviewGraph};
use tviews_core::locks::{LockPlan, link_columns, lock_plan};
use tviews_core::plan::{
    CapturePlan, RefreshPlan, TviewNames, UpdateFilter, capture_plan, refresh_plan,
};

use crate::error::raise;
use crate::spi::Plan;
use crate::{introspect, security, spi};

/// One TVIEW, ready to refresh.
pub struct Tview {
    pub relid: pg_sys::Oid,
    pub owner: pg_sys::Oid,
    /// Longest chain of TVIEWs below this one.
    pub depth: usize,
    /// Refresh runs as a security-restricted operation, unless the TVIEW
    /// has deferrable triggers (PostgreSQL refuses to queue those inside
    /// one; see docs/ARCHITECTURE.md, "Safety").
    pub restricted: bool,
    pub names: TviewNames,
    /// Settings its refreshes run under (recorded ones + search_path).
    pub settings: Vec<(String, String)>,
    pub analysis: Analysis,
    pub plan: RefreshPlan,
    pub locks: LockPlan,
    /// The lock-level queries and the captured link values of its sources
    /// hold a type whose text depends on settings: run them under the
    /// transport settings.
    pub lock_transport: bool,
    pub apply_keys: OnceCell<Plan>,
    pub apply_all: OnceCell<Plan>,
    pub digest_keys: OnceCell<Plan>,
    pub digest_all: OnceCell<Plan>,
    pub null_keys: OnceCell<Plan>,
    pub derive: Vec<OnceCell<Plan>>,
    pub forward: Vec<OnceCell<Plan>>,
    pub reverse: Vec<OnceCell<Plan>>,
}

/// A TVIEW that cannot be maintained any more, and why.
pub struct Broken {
    pub relid: pg_sys::Oid,
    pub display: String,
    pub error: TviewError,
    /// The tables its backing view reads (through views), from pg_depend.
    pub sources: Vec<u32>,
}

impl Broken {
    /// Raises its error, naming it.
    pub fn raise(&self) -> ! {
        crate::error::raise_with(
            self.error.sqlstate(),
            format!(
                "TVIEW {} cannot be maintained any more: {}",
                self.display, self.error
            ),
            self.error.detail(),
            Some(format!(
                "Its definition stopped passing pg_tviews' checks after it was created (for example, a function it calls was made VOLATILE). Undo that change, or replace the TVIEW with pg_tviews_create_or_replace('{}', ...), or DROP TABLE {}.",
                self.display, self.display
            )),
        )
    }
}

/// One source relation and what its capture trigger does.
pub struct Source {
    pub plan: CapturePlan,
    /// Indexes into [`Registry::broken`] of the broken TVIEWs reading it.
    pub broken: Vec<usize>,
    /// The TVIEW relids behind the plan's indexes.
    pub readers: Vec<pg_sys::Oid>,
    /// Whether a captured value's text form depends on settings (dates,
    /// times, floats...): then capture runs under transport settings.
    pub needs_transport: bool,
    pub on_insert: OnceCell<Plan>,
    pub on_update: OnceCell<Plan>,
    pub on_delete: OnceCell<Plan>,
}

pub struct Registry {
    /// In flush order (dependencies first).
    pub tviews: Vec<Tview>,
    /// TVIEWs whose definition no longer passes the analysis (say, a
    /// function it calls was made VOLATILE): they are not maintained, and
    /// every write that would need them fails with their error.
    pub broken: Vec<Broken>,
    pub index: HashMap<pg_sys::Oid, usize>,
    pub sources: HashMap<pg_sys::Oid, Source>,
    pub ext_owner: pg_sys::Oid,
    pub catalog_relid: pg_sys::Oid,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Registry>>> = const { RefCell::new(None) };
    static DIRTY: Cell<bool> = const { Cell::new(true) };
    /// Relations whose invalidation drops the registry.
    static WATCHED: RefCell<HashSet<pg_sys::Oid>> = RefCell::new(HashSet::new());
}

pub fn register_invalidation() {
    // SAFETY: registering cache callbacks once per backend, in _PG_init.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(
            Some(on_relcache_invalidation),
            pg_sys::Datum::from(0),
        );
        // A function a definition calls may change volatility (or come
        // back): analyse again.
        pg_sys::CacheRegisterSyscacheCallback(
            pg_sys::SysCacheIdentifier::PROCOID as i32,
            Some(on_function_invalidation),
            pg_sys::Datum::from(0),
        );
    };
}

/// Syscache invalidation of pg_proc: only flags.
#[pg_guard]
unsafe extern "C-unwind" fn on_function_invalidation(
    _arg: pg_sys::Datum,
    _cacheid: i32,
    _hash: u32,
) {
    if !DIRTY.with(Cell::get) {
        DIRTY.with(|d| d.set(true));
        crate::shmem::cache_invalidation();
    }
}

/// Relcache invalidation: must not touch the catalogs; only flags.
#[pg_guard]
unsafe extern "C-unwind" fn on_relcache_invalidation(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    let hit = relid == pg_sys::Oid::INVALID
        || WATCHED.with(|w| w.try_borrow().map(|w| w.contains(&relid)).unwrap_or(true));
    if hit && !DIRTY.with(Cell::get) {
        DIRTY.with(|d| d.set(true));
        crate::shmem::cache_invalidation();
    }
}

/// Forgets the registry (after our own DDL, before the invalidation
/// message of the commit arrives).
pub fn invalidate() {
    DIRTY.with(|d| d.set(true));
}

/// The current registry, loading it if needed. `None` when the extension
/// is not installed in this database (a stray trigger or callback).
pub fn get() -> Option<Rc<Registry>> {
    load_counted(true)
}

/// [`get`] for monitoring: a lookup that does not count as a plan-cache
/// hit or miss (a console polling would make an idle database look hot).
pub fn get_quiet() -> Option<Rc<Registry>> {
    load_counted(false)
}

fn load_counted(count: bool) -> Option<Rc<Registry>> {
    if !DIRTY.with(Cell::get)
        && let Some(r) = CURRENT.with(|c| c.borrow().clone())
    {
        if count {
            crate::shmem::cache_event(true);
        }
        return Some(r);
    }
    if count {
        crate::shmem::cache_event(false);
    }
    // Clear the flag first: invalidations that arrive while loading set it again.
    DIRTY.with(|d| d.set(false));
    // Introspection runs under the fixed search_path: type names then come
    // out schema-qualified unless they are in pg_catalog.
    let safe = vec![(
        "search_path".to_string(),
        security::SAFE_SEARCH_PATH.to_string(),
    )];
    let loaded = security::with_settings(&safe, || Spi::connect_mut(load));
    let loaded = match loaded {
        Ok(r) => r.map(Rc::new),
        Err(e) => {
            DIRTY.with(|d| d.set(true));
            raise(&e)
        }
    };
    CURRENT.with(|c| *c.borrow_mut() = loaded.clone());
    loaded
}

fn load(client: &mut SpiClient<'_>) -> Result<Option<Registry>, TviewError> {
    let Some(catalog_relid) = spi::one(
        client,
        "SELECT pg_catalog.to_regclass('tviews.tview')::pg_catalog.oid::pg_catalog.text",
        &[],
    ) else {
        WATCHED.with(|w| w.borrow_mut().clear());
        return Ok(None);
    };
    let catalog_relid = parse_oid(&catalog_relid)?;
    let ext_owner = spi::one(
        client,
        "SELECT extowner::pg_catalog.oid::pg_catalog.text FROM pg_catalog.pg_extension WHERE extname = 'pg_tviews'",
        &[],
    )
    .map(|s| parse_oid(&s))
    .transpose()?
    .unwrap_or(pg_sys::BOOTSTRAP_SUPERUSERID.into());
    let rows = spi::rows(
        client,
        "SELECT t.relid::pg_catalog.oid::pg_catalog.text, t.defview::pg_catalog.oid::pg_catalog.text,
                t.key_column::pg_catalog.text, t.settings::pg_catalog.text,
                c.relowner::pg_catalog.text, n.nspname::pg_catalog.text, c.relname::pg_catalog.text,
                vn.nspname::pg_catalog.text, v.relname::pg_catalog.text,
                (NOT EXISTS (SELECT FROM pg_catalog.pg_trigger g WHERE g.tgrelid = t.relid AND g.tgdeferrable))::pg_catalog.text
         FROM tviews.tview t
         JOIN pg_catalog.pg_class c ON c.oid = t.relid
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_catalog.pg_class v ON v.oid = t.defview
         JOIN pg_catalog.pg_namespace vn ON vn.oid = v.relnamespace
         ORDER BY t.relid",
        &[],
    );
    let mut watched: HashSet<pg_sys::Oid> = HashSet::from([catalog_relid]);
    let mut tviews = Vec::new();
    let mut broken: Vec<Broken> = Vec::new();
    // (relation, column) whose type's text form depends on settings.
    let mut sensitive: HashSet<(u32, String)> = HashSet::new();
    for r in rows {
        let field = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
        let relid = parse_oid(&field(0))?;
        let view = parse_oid(&field(1))?;
        let key = field(2);
        let settings = security::decode_settings(&parse_text_array(&field(3)));
        let owner = parse_oid(&field(4))?;
        let restricted = field(9) == "true";
        let names = TviewNames {
            schema: field(5),
            name: field(6),
            view_schema: field(7),
            view_name: field(8),
        };
        watched.insert(relid);
        watched.insert(view);
        let analysed = introspect::definition(client, view).and_then(|(tree, catalog)| {
            let analysis = analyze(
                &Target {
                    schema: &names.schema,
                    name: &names.name,
                    key_column: Some(&key),
                },
                &tree,
                &catalog,
            )?;
            Ok((analysis, catalog))
        });
        let (analysis, catalog) = match analysed {
            Ok(a) => a,
            Err(error @ (TviewError::Internal(_) | TviewError::NodeTree(_))) => return Err(error),
            Err(error) => {
                let sources = view_sources(client, view);
                watched.extend(sources.iter().map(|o| pg_sys::Oid::from(*o)));
                broken.push(Broken {
                    relid,
                    display: names.display(),
                    error,
                    sources,
                });
                continue;
            }
        };
        watched.extend(catalog.relations.keys().map(|o| pg_sys::Oid::from(*o)));
        let plan = refresh_plan(names.clone(), &analysis);
        let derive = plan.derive.iter().map(|_| OnceCell::new()).collect();
        let locks = lock_plan(&analysis, &plan);
        for rel in catalog.relations.values() {
            for c in rel
                .columns
                .iter()
                .filter(|c| !c.dropped && setting_sensitive(&c.type_name))
            {
                sensitive.insert((rel.oid, c.name.clone()));
            }
        }
        let lock_transport = setting_sensitive(&analysis.key.type_name)
            || link_columns([&locks])
                .values()
                .flatten()
                .any(|t| sensitive.contains(&(t.relation, t.column.clone())));
        let forward = locks.forward.iter().map(|_| OnceCell::new()).collect();
        let reverse = locks.reverse.iter().map(|_| OnceCell::new()).collect();
        tviews.push(Tview {
            relid,
            owner,
            depth: 0,
            restricted,
            names,
            settings: security::refresh_settings(&settings),
            analysis,
            plan,
            locks,
            lock_transport,
            apply_keys: OnceCell::new(),
            apply_all: OnceCell::new(),
            digest_keys: OnceCell::new(),
            digest_all: OnceCell::new(),
            null_keys: OnceCell::new(),
            derive,
            forward,
            reverse,
        });
    }
    // Flush order: cascades first.
    let nodes: Vec<GraphNode> = tviews
        .iter()
        .map(|t| GraphNode {
            relid: t.relid.to_u32(),
            name: t.names.display(),
            sources: t.analysis.sources.iter().map(|s| s.relation).collect(),
        })
        .collect();
    let graph = TviewGraph::build(&nodes)?;
    let order = graph.flush_order();
    for t in tviews.iter_mut() {
        t.depth = graph.depth(t.relid.to_u32());
    }
    tviews.sort_by_key(|t| order.iter().position(|o| *o == t.relid.to_u32()));
    let index: HashMap<pg_sys::Oid, usize> = tviews
        .iter()
        .enumerate()
        .map(|(i, t)| (t.relid, i))
        .collect();

    // Capture plans per source relation.
    let mut by_source: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, t) in tviews.iter().enumerate() {
        for s in &t.analysis.sources {
            by_source.entry(s.relation).or_default().push(i);
        }
    }
    let mut broken_by_source: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, b) in broken.iter().enumerate() {
        for s in &b.sources {
            broken_by_source.entry(*s).or_default().push(i);
            by_source.entry(*s).or_default();
        }
    }
    let links = link_columns(tviews.iter().map(|t| &t.locks));
    let mut sources = HashMap::new();
    for (source, readers) in by_source {
        let args: Vec<(usize, &Analysis, &RefreshPlan)> = readers
            .iter()
            .enumerate()
            .map(|(local, i)| (local, &tviews[*i].analysis, &tviews[*i].plan))
            .collect();
        let source_links: Vec<_> = links
            .get(&source)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default();
        let needs_transport = source_links.iter().any(|t: &tviews_core::locks::Target| {
            sensitive.contains(&(t.relation, t.column.clone()))
        }) || readers
            .iter()
            .any(|i| setting_sensitive(&tviews[*i].analysis.key.type_name));
        let filter = update_filter(
            client,
            source,
            tviews.iter().any(|t| t.relid.to_u32() == source),
        );
        let plan = capture_plan(source, &args, &source_links, filter.as_ref());
        sources.insert(
            pg_sys::Oid::from(source),
            Source {
                plan,
                broken: broken_by_source.remove(&source).unwrap_or_default(),
                readers: readers.iter().map(|i| tviews[*i].relid).collect(),
                needs_transport,
                on_insert: OnceCell::new(),
                on_update: OnceCell::new(),
                on_delete: OnceCell::new(),
            },
        );
    }
    WATCHED.with(|w| *w.borrow_mut() = watched);
    Ok(Some(Registry {
        tviews,
        broken,
        index,
        sources,
        ext_owner,
        catalog_relid,
    }))
}

/// The source's columns, with which an UPDATE captures only rows whose
/// columns read by a TVIEW changed; `None` when row-level security is
/// enabled (a policy may read any column, and its verdict decides what the
/// owner's definition sees).
fn update_filter(client: &mut SpiClient<'_>, source: u32, is_tview: bool) -> Option<UpdateFilter> {
    let rows = spi::rows(
        client,
        "SELECT a.attname::pg_catalog.text, pg_catalog.format_type(a.atttypid, NULL)
         FROM pg_catalog.pg_class c
         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
         WHERE c.oid = $1 AND NOT c.relrowsecurity
         ORDER BY a.attnum",
        &[spi::oid_arg(pg_sys::Oid::from(source))],
    );
    if rows.is_empty() {
        return None;
    }
    let columns = rows
        .into_iter()
        .map(|r| {
            let field = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
            (field(0), field(1))
        })
        .collect();
    Some(UpdateFilter {
        columns,
        changed_rows_only: is_tview,
    })
}

/// Types whose text form depends on DateStyle, TimeZone, IntervalStyle,
/// extra_float_digits or bytea_output.
fn setting_sensitive(type_name: &str) -> bool {
    let t = type_name.trim_end_matches("[]");
    t.starts_with("timestamp")
        || t.starts_with("time ")
        || t == "time"
        || t == "date"
        || t == "interval"
        || t == "real"
        || t == "double precision"
        || t == "bytea"
        || t == "money"
        || t.starts_with("time with")
}

pub fn parse_oid(s: &str) -> Result<pg_sys::Oid, TviewError> {
    s.parse::<u32>()
        .map(pg_sys::Oid::from)
        .map_err(|_| TviewError::Internal(format!("not an OID: {s}")))
}

/// Parses PostgreSQL's text form of a one-dimensional text array.
pub fn parse_text_array(s: &str) -> Vec<String> {
    let inner = s.trim().trim_start_matches('{').trim_end_matches('}');
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = inner.chars();
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        match c {
            '"' => quoted = !quoted,
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if any {
        out.push(cur);
    }
    out
}

impl Registry {
    pub fn tview(&self, relid: pg_sys::Oid) -> Option<&Tview> {
        self.index.get(&relid).map(|i| &self.tviews[*i])
    }

    /// The TVIEW `relid`, or its error when it is broken.
    pub fn require(&self, relid: pg_sys::Oid) -> &Tview {
        if let Some(tv) = self.tview(relid) {
            return tv;
        }
        if let Some(b) = self.broken.iter().find(|b| b.relid == relid) {
            b.raise();
        }
        raise(&TviewError::Internal(format!(
            "TVIEW {} is missing from the registry",
            relid.to_u32()
        )))
    }
}

/// The tables a backing view reads, through the views it reads.
fn view_sources(client: &mut SpiClient<'_>, view: pg_sys::Oid) -> Vec<u32> {
    spi::rows(
        client,
        "WITH RECURSIVE reads(rel) AS (
             SELECT $1::pg_catalog.oid
             UNION
             SELECT d.refobjid
             FROM reads
             JOIN pg_catalog.pg_class c ON c.oid = reads.rel AND c.relkind = 'v'
             JOIN pg_catalog.pg_rewrite r ON r.ev_class = c.oid
             JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                  AND d.objid = r.oid AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                  AND d.refobjid <> c.oid)
         SELECT reads.rel::pg_catalog.text FROM reads
         JOIN pg_catalog.pg_class c ON c.oid = reads.rel AND c.relkind IN ('r', 'p')",
        &[spi::oid_arg(view)],
    )
    .into_iter()
    .filter_map(|r| r.into_iter().next().flatten()?.parse().ok())
    .collect()
}

/// Gets or prepares a statement held in a registry cell (inside an SPI
/// connection).
pub fn prepared<'a>(cell: &'a OnceCell<Plan>, sql: &str, args: &[pg_sys::Oid]) -> &'a Plan {
    if cell.get().is_none() {
        let _ = cell.set(Plan::prepare(sql, args));
    }
    match cell.get() {
        Some(s) => s,
        None => raise(&TviewError::Internal("prepared statement cache".into())),
    }
}

/// The explain model of one TVIEW, with its neighbours in the graph.
pub fn explain(reg: &Registry, tv: &Tview) -> tviews_core::explain::Explain {
    use tviews_core::explain::Upstream;
    let name_of = |oid: u32| reg.tview(pg_sys::Oid::from(oid)).map(|t| t.names.display());
    let mut reads = Vec::new();
    for s in &tv.analysis.sources {
        if let Some(up) = reg.tview(pg_sys::Oid::from(s.relation)) {
            reads.push(Upstream {
                tview: up.names.display(),
                reads: up
                    .analysis
                    .sources
                    .iter()
                    .filter_map(|u| name_of(u.relation))
                    .collect(),
            });
        }
    }
    let read_by = reg
        .tviews
        .iter()
        .filter(|t| {
            t.analysis
                .sources
                .iter()
                .any(|s| s.relation == tv.relid.to_u32())
        })
        .map(|t| t.names.display())
        .collect();
    tviews_core::explain::explain(
        &tv.names.display(),
        &tv.analysis,
        &tv.plan,
        tv.depth,
        reads,
        read_by,
        &|oid| reg.index.contains_key(&pg_sys::Oid::from(oid)),
    )
}
