//! Definition analysis: from the server's analysed query tree to the facts
//! the refresh planner needs.
//!
//! The central question, per source relation: given the old and new images
//! of rows changed in it, which TVIEW keys can have changed? We answer it
//! from the equalities the definition itself states (`JOIN ... ON a = b`,
//! `WHERE a = b`, the correlation of a subquery): every such equality that
//! must hold for a row to contribute is an edge between two columns, and
//! the columns joined by edges form equivalence classes. A row of a source
//! can only influence the TVIEW rows whose key is reachable from its own
//! columns through those classes (DESIGN.md §3). When a source has no such
//! path, any change to it means a full rebuild (still exact, just slower).
//!
//! Scopes: the top query, each subquery in FROM (and each view it reads,
//! expanded like the rewriter does), each CTE reference and each sublink is
//! a scope; column references (`Var`s) are resolved through joins,
//! subqueries and views down to a column of a base relation.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::Serialize;

use crate::catalog::{Catalog, Oid, Relation};
use crate::error::{Result, TviewError};
use crate::node::{self, Node, Value};

// PostgreSQL 15's RTEKind values.
const RTE_RELATION: i64 = 0;
const RTE_SUBQUERY: i64 = 1;
const RTE_JOIN: i64 = 2;
const RTE_CTE: i64 = 6;

/// PostgreSQL 15's `FirstLowInvalidHeapAttributeNumber`: bitmapsets of
/// columns (`selectedCols`) are offset by it.
const ATTR_BITMAP_OFFSET: i64 = -7;

/// What is being analysed.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub schema: &'a str,
    pub name: &'a str,
    /// The key column; `None` means the convention `pk_<entity>` where the
    /// TVIEW is named `tv_<entity>`.
    pub key_column: Option<&'a str>,
}

impl Target<'_> {
    pub fn display(&self) -> String {
        if self.schema == "public" {
            self.name.to_string()
        } else {
            format!("{}.{}", self.schema, self.name)
        }
    }

    /// The key column by convention: `tv_post` → `pk_post`.
    pub fn conventional_key(&self) -> String {
        let entity = self.name.strip_prefix("tv_").unwrap_or(self.name);
        format!("pk_{entity}")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Analysis {
    pub key: KeyColumn,
    /// Output columns, in order.
    pub columns: Vec<String>,
    /// One entry per distinct base relation the definition reads.
    pub sources: Vec<Source>,
    pub aggregated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyColumn {
    pub name: String,
    /// SQL type name of the key, usable in a cast.
    pub type_name: String,
    pub relation: Oid,
    pub relation_column: String,
    /// The definition may return a NULL key: the column is nullable, or
    /// its relation is on the nullable side of an outer join, with no
    /// `WHERE key IS NOT NULL` (or equality) above. A keyed refresh then
    /// checks that no NULL key appeared (it cannot see such rows).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub nullable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    pub relation: Oid,
    pub schema: String,
    pub name: String,
    /// Columns of the relation the definition reads (a change to another
    /// column cannot change the TVIEW).
    pub columns_read: Vec<String>,
    /// The definition reads a system column (`ctid`, `xmin`...) of it: every
    /// update changes what it reads.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub reads_system_columns: bool,
    pub mapping: Mapping,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mapping {
    /// Changed rows map to keys through these paths (one per occurrence
    /// of the relation in the definition, deduplicated).
    Keyed { paths: Vec<KeyPath> },
    /// No path to the key: any change rebuilds the whole TVIEW.
    Full { reason: String },
}

/// How a changed row of a source reaches TVIEW keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, PartialOrd, Ord)]
pub struct KeyPath {
    /// The column of the changed row the path starts from.
    pub column: String,
    /// The type of the values taken from it (the element type when `unnest`).
    pub column_type: String,
    /// The column is an array whose elements are the values (`x = ANY(arr)`).
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub unnest: bool,
    /// Relations to join, in order, to go from those values to the key.
    /// Empty: the values are the keys themselves.
    pub hops: Vec<Hop>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, PartialOrd, Ord)]
pub struct Hop {
    pub relation: Oid,
    pub schema: String,
    pub name: String,
    /// The column of this relation matched against the incoming values:
    /// equal to one of them, or (`overlap`) an array containing one.
    pub join_column: String,
    /// The equality operator `(schema, name)` the definition uses there.
    pub operator: (String, String),
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub overlap: bool,
    /// The type of `join_column` (an array type when `overlap`).
    pub join_type: String,
    /// The column that leads on (to the next hop, or the key on the last).
    pub next_column: String,
    /// `next_column` is an array whose elements lead on.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub next_unnest: bool,
}

impl KeyPath {
    pub fn is_direct(&self) -> bool {
        self.hops.is_empty()
    }
}

/// Per relation while analysing: its key paths, why it needs full
/// rebuilds (if it does), and the attribute numbers read.
type RelationFacts = (Vec<KeyPath>, Option<String>, BTreeSet<i64>, bool);

/// A column of a base relation occurrence: (scope, range table index, attnum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Col {
    scope: usize,
    rt: usize,
    att: i64,
}

/// A base relation occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct RteRef {
    scope: usize,
    rt: usize,
}

impl Col {
    fn rte(&self) -> RteRef {
        RteRef {
            scope: self.scope,
            rt: self.rt,
        }
    }
}

struct Scope<'a> {
    query: &'a Node,
    parent: Option<usize>,
    /// Rows of this scope influence other rows of it (LIMIT, window
    /// functions, DISTINCT ON, set operations): its outputs cannot be
    /// mapped column by column.
    nonlocal: bool,
    rtable: Vec<&'a Node>,
    /// Child scopes standing for range table entries (subqueries, views, CTEs).
    rte_scopes: HashMap<usize, usize>,
}

/// Analyses a definition. `tree` is the view's `pg_rewrite.ev_action` (a
/// list with one `QUERY`), parsed by [`node::parse`]; nested views must be
/// present in `catalog.view_queries`.
pub fn analyze(target: &Target<'_>, tree: &Value, catalog: &Catalog) -> Result<Analysis> {
    let query = first_query(tree)?;
    let mut parsed_views = Vec::new();
    // Parse every nested view once up front: scopes borrow from them.
    for (oid, text) in &catalog.view_queries {
        let v = node::parse(text).map_err(|e| TviewError::NodeTree(e.to_string()))?;
        parsed_views.push((*oid, v));
    }
    let views: HashMap<Oid, &Node> = parsed_views
        .iter()
        .map(|(oid, v)| first_query(v).map(|q| (*oid, q)))
        .collect::<Result<_>>()?;
    let mut a = Analyzer {
        catalog,
        views,
        scopes: Vec::new(),
        classes: UnionFind::default(),
        edge_ops: HashMap::new(),
        base_rtes: BTreeMap::new(),
        elem_edges: Vec::new(),
        target,
    };
    check_top_level(query)?;
    check_functions(tree, catalog)?;
    for (_, v) in &parsed_views {
        check_functions(v, catalog)?;
    }
    a.add_scope(query, None, 0)?;
    a.collect_edges()?;
    let analysis = a.finish()?;
    // Safety net: every table the definition reads anywhere must have been
    // traced to the key (or to a full rebuild). A table the scope walk
    // missed would get no capture trigger and go stale silently.
    let mut read = BTreeSet::new();
    for t in std::iter::once(tree).chain(parsed_views.iter().map(|(_, v)| v)) {
        // A CTE nothing references is never run (a SELECT's CTEs run when
        // read): what it reads does not matter.
        t.walk_pruned(&mut |n| {
            if n.is("COMMONTABLEEXPR") && n.int("cterefcount") == Some(0) {
                return false;
            }
            if n.is("RANGETBLENTRY")
                && n.int("rtekind") == Some(RTE_RELATION)
                && matches!(n.str("relkind"), Some("r") | Some("p"))
                && let Some(oid) = n.uint("relid")
            {
                read.insert(oid);
            }
            true
        });
    }
    for oid in read {
        if !analysis.sources.iter().any(|s| s.relation == oid) {
            let name = catalog
                .relations
                .get(&oid)
                .map(Relation::display_name)
                .unwrap_or_else(|| oid.to_string());
            return Err(unsupported(
                &format!("reading {name} where this definition does"),
                "pg_tviews could not trace how rows of this table reach the TVIEW's key. Please report the definition; meanwhile rewrite that part as a join or a correlated subquery.",
            ));
        }
    }
    Ok(analysis)
}

fn first_query(tree: &Value) -> Result<&Node> {
    let q = match tree {
        Value::List(l) => l.first().and_then(Value::as_node),
        Value::Node(n) => Some(n),
        _ => None,
    };
    q.filter(|n| n.is("QUERY"))
        .ok_or_else(|| TviewError::NodeTree("expected a QUERY node".into()))
}

fn unsupported(construct: &str, hint: &str) -> TviewError {
    TviewError::Unsupported {
        construct: construct.into(),
        hint: hint.into(),
    }
}

/// Constructs the top level cannot have at all.
fn check_top_level(q: &Node) -> Result<()> {
    if q.int("commandType") != Some(1) {
        return Err(unsupported(
            "a statement other than SELECT",
            "Define the TVIEW with a SELECT query.",
        ));
    }
    if !matches!(q.get("limitCount"), Value::Null) || !matches!(q.get("limitOffset"), Value::Null) {
        return Err(unsupported(
            "LIMIT or OFFSET",
            "A TVIEW holds every row of its definition; filter with WHERE instead, or read the top rows from the TVIEW with ORDER BY ... LIMIT.",
        ));
    }
    if q.bool("hasWindowFuncs") {
        return Err(unsupported(
            "a window function",
            "Window functions make one row depend on others; compute the value with a correlated subquery or an aggregate instead.",
        ));
    }
    if q.bool("hasDistinctOn") {
        return Err(unsupported(
            "DISTINCT ON",
            "Use GROUP BY on the key, or a correlated subquery with ORDER BY ... LIMIT 1 for the row you want.",
        ));
    }
    if q.bool("hasTargetSRFs") {
        return Err(unsupported(
            "a set-returning function in the select list",
            "Each key must appear once; move the function to FROM (LATERAL) and make the key unique, or aggregate its rows.",
        ));
    }
    if q.bool("hasRecursive") {
        return Err(unsupported(
            "WITH RECURSIVE",
            "Recursive queries cannot be maintained by key yet.",
        ));
    }
    if q.bool("hasModifyingCTE") {
        return Err(unsupported(
            "a data-modifying WITH",
            "A definition must only read.",
        ));
    }
    if q.bool("hasForUpdate") || !q.list("rowMarks").is_empty() {
        return Err(unsupported(
            "FOR UPDATE/SHARE",
            "Remove the locking clause.",
        ));
    }
    if !matches!(q.get("groupingSets"), Value::Null) {
        return Err(unsupported(
            "GROUPING SETS, ROLLUP or CUBE",
            "Create one TVIEW per grouping level.",
        ));
    }
    if let Some(setop) = q.node("setOperations")
        && !union_all_only(setop)
    {
        return Err(unsupported(
            "UNION (without ALL), INTERSECT or EXCEPT",
            "Use UNION ALL of branches whose keys never collide (for example a different key range or a type column in the key), or create one TVIEW per branch.",
        ));
    }
    Ok(())
}

/// Whether a set operation tree is made of UNION ALL only.
fn union_all_only(n: &Node) -> bool {
    if n.is("RANGETBLREF") {
        return true;
    }
    n.is("SETOPERATIONSTMT")
        && n.int("op") == Some(1)
        && n.bool("all")
        && n.node("larg").is_some_and(union_all_only)
        && n.node("rarg").is_some_and(union_all_only)
}

/// The range table indexes of a set operation's branches, left to right.
fn setop_leaves(n: &Node, out: &mut Vec<usize>) {
    if n.is("RANGETBLREF") {
        if let Some(rt) = n.int("rtindex").and_then(|r| usize::try_from(r).ok()) {
            out.push(rt);
        }
        return;
    }
    for side in ["larg", "rarg"] {
        if let Some(c) = n.node(side) {
            setop_leaves(c, out);
        }
    }
}

/// Whether output column `resno` of `q` is one of its GROUP BY columns
/// (trivially true when `q` does not aggregate).
fn key_is_grouped(q: &Node, resno: i64) -> bool {
    let aggregated = q.bool("hasAggs") || !q.list("groupClause").is_empty();
    if !aggregated {
        return true;
    }
    let Some(te) = q
        .list("targetList")
        .iter()
        .filter_map(Value::as_node)
        .find(|te| te.int("resno") == Some(resno))
    else {
        return false;
    };
    let sgr = te.int("ressortgroupref").unwrap_or(0);
    sgr != 0
        && q.list("groupClause")
            .iter()
            .filter_map(Value::as_node)
            .any(|g| g.int("tleSortGroupRef") == Some(sgr))
}

/// Functions whose result depends on the time, the session or the
/// settings even though they are marked stable.
const SESSION_FUNCTIONS: &[&str] = &[
    "now",
    "statement_timestamp",
    "transaction_timestamp",
    "current_setting",
    "current_schema",
    "current_schemas",
    "current_user",
    "session_user",
    "pg_backend_pid",
    "pg_my_temp_schema",
    "inet_client_addr",
    "inet_client_port",
    "inet_server_addr",
    "inet_server_port",
    "pg_current_xact_id",
    "pg_current_xact_id_if_assigned",
    "txid_current",
    "txid_current_if_assigned",
    "pg_postmaster_start_time",
    "pg_conf_load_time",
];

fn check_functions(tree: &Value, catalog: &Catalog) -> Result<()> {
    let mut err = None;
    tree.walk(&mut |n| {
        if err.is_some() {
            return;
        }
        let field = match n.tag.as_str() {
            "FUNCEXPR" => "funcid",
            "AGGREF" => "aggfnoid",
            "WINDOWFUNC" => "winfnoid",
            "OPEXPR" | "DISTINCTEXPR" | "NULLIFEXPR" | "SCALARARRAYOPEXPR" => "opfuncid",
            "SQLVALUEFUNCTION" => {
                err = Some(TviewError::SessionDependent {
                    what: "CURRENT_DATE, CURRENT_TIMESTAMP, LOCALTIME, CURRENT_USER or a similar SQL value function"
                        .into(),
                });
                return;
            }
            "NEXTVALEXPR" => {
                err = Some(TviewError::VolatileFunction {
                    function: "nextval (an identity or serial default)".into(),
                });
                return;
            }
            "RANGETBLENTRY" => {
                if !matches!(n.get("tablesample"), Value::Null) {
                    err = Some(unsupported("TABLESAMPLE", "Sampling is random; remove it."));
                }
                return;
            }
            _ => return,
        };
        let Some(oid) = n.uint(field) else { return };
        let Some(f) = catalog.functions.get(&oid) else { return };
        if f.volatility == 'v' {
            err = Some(TviewError::VolatileFunction {
                function: format!("{}()", f.name),
            });
        } else if f.volatility == 's' && f.schema != "pg_catalog" {
            err = Some(unsupported(
                &format!("the stable function {}.{}(), which may read tables pg_tviews cannot see,", f.schema, f.name),
                "Changes to tables a function reads are not captured. If the function reads no table, declare it IMMUTABLE (or inline its body in the definition); otherwise join its tables in the definition itself.",
            ));
        } else if f.schema == "pg_catalog"
            && (SESSION_FUNCTIONS.contains(&f.name.as_str()) || (f.name == "age" && f.nargs == 1))
        {
            err = Some(TviewError::SessionDependent {
                what: format!("{}()", f.name),
            });
        }
    });
    err.map_or(Ok(()), Err)
}

#[derive(Default)]
struct UnionFind {
    parent: HashMap<Col, Col>,
}

impl UnionFind {
    fn find(&mut self, c: Col) -> Col {
        let p = *self.parent.entry(c).or_insert(c);
        if p == c {
            return c;
        }
        let root = self.find(p);
        self.parent.insert(c, root);
        root
    }

    fn union(&mut self, a: Col, b: Col) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            // Deterministic: the smaller column becomes the root.
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.parent.insert(hi, lo);
        }
    }
}

struct Analyzer<'a> {
    catalog: &'a Catalog,
    views: HashMap<Oid, &'a Node>,
    scopes: Vec<Scope<'a>>,
    classes: UnionFind,
    /// The operator of the first equality that joined each pair of columns.
    edge_ops: HashMap<(Col, Col), (String, String)>,
    /// Base relation occurrences and their relation OIDs.
    base_rtes: BTreeMap<RteRef, Oid>,
    /// `scalar = ANY(array)` conditions: (scalar column, array column, operator).
    elem_edges: Vec<(Col, Col, (String, String))>,
    target: &'a Target<'a>,
}

/// Strips binary-compatible casts around an expression.
fn strip(mut n: &Node) -> &Node {
    while n.is("RELABELTYPE") {
        match n.node("arg") {
            Some(a) => n = a,
            None => break,
        }
    }
    n
}

fn scope_is_nonlocal(q: &Node) -> bool {
    !matches!(q.get("limitCount"), Value::Null)
        || !matches!(q.get("limitOffset"), Value::Null)
        || q.bool("hasWindowFuncs")
        || q.bool("hasDistinctOn")
        || !matches!(q.get("setOperations"), Value::Null)
        || !matches!(q.get("groupingSets"), Value::Null)
}

impl<'a> Analyzer<'a> {
    fn relation(&self, oid: Oid) -> Result<&'a Relation> {
        self.catalog.relations.get(&oid).ok_or_else(|| {
            TviewError::Internal(format!("relation {oid} missing from the catalog facts"))
        })
    }

    /// Registers a scope and, recursively, the scopes of its range table
    /// and sublinks. `depth` guards against runaway recursion.
    fn add_scope(&mut self, query: &'a Node, parent: Option<usize>, depth: usize) -> Result<usize> {
        if depth > 64 {
            return Err(unsupported(
                "definitions nested more than 64 levels",
                "Simplify the definition.",
            ));
        }
        if query.bool("hasRecursive") {
            return Err(unsupported(
                "WITH RECURSIVE",
                "Recursive queries cannot be maintained by key yet.",
            ));
        }
        let id = self.scopes.len();
        let rtable: Vec<&Node> = query
            .list("rtable")
            .iter()
            .filter_map(Value::as_node)
            .collect();
        self.scopes.push(Scope {
            query,
            parent,
            nonlocal: scope_is_nonlocal(query),
            rtable: rtable.clone(),
            rte_scopes: HashMap::new(),
        });
        for (i, rte) in rtable.iter().enumerate() {
            let rt = i + 1;
            match rte.int("rtekind") {
                Some(RTE_RELATION) => {
                    // Relations: OLD/NEW placeholders of a stored view have
                    // inFromCl = false and are never referenced; skip them.
                    let Some(oid) = rte.uint("relid") else {
                        continue;
                    };
                    if !rte.bool("inFromCl") && !self.is_referenced(query, rt) {
                        continue;
                    }
                    let rel = self.relation(oid)?;
                    if matches!(rel.schema.as_str(), "pg_catalog" | "information_schema")
                        && rel.kind != 'v'
                    {
                        return Err(TviewError::UnsupportedSource {
                            relation: rel.display_name(),
                            why: "it is a system catalog (its changes fire no triggers, so they cannot be captured)".into(),
                        });
                    }
                    match rel.kind {
                        'r' | 'p' => {
                            self.base_rtes.insert(RteRef { scope: id, rt }, oid);
                        }
                        'v' => {
                            let Some(vq) = self.views.get(&oid).copied() else {
                                return Err(TviewError::Internal(format!(
                                    "view {} was not expanded",
                                    rel.display_name()
                                )));
                            };
                            let child = self.add_scope(vq, Some(id), depth + 1)?;
                            self.scopes[id].rte_scopes.insert(rt, child);
                        }
                        'm' => {
                            return Err(TviewError::UnsupportedSource {
                                relation: rel.display_name(),
                                why: "it is a materialized view (REFRESH MATERIALIZED VIEW fires no triggers, so its changes cannot be captured)".into(),
                            });
                        }
                        'f' => {
                            return Err(TviewError::UnsupportedSource {
                                relation: rel.display_name(),
                                why: "it is a foreign table (its changes happen elsewhere)".into(),
                            });
                        }
                        other => {
                            return Err(TviewError::UnsupportedSource {
                                relation: rel.display_name(),
                                why: format!("relations of kind '{other}' cannot be captured"),
                            });
                        }
                    }
                }
                Some(RTE_SUBQUERY) => {
                    if let Some(sub) = rte.node("subquery") {
                        let child = self.add_scope(sub, Some(id), depth + 1)?;
                        self.scopes[id].rte_scopes.insert(rt, child);
                    }
                }
                Some(RTE_CTE) => {
                    // A CTE reference: find the CTE's query `ctelevelsup` levels up.
                    let name = rte.str("ctename").unwrap_or_default();
                    let up = rte.int("ctelevelsup").unwrap_or(0);
                    let mut s = Some(id);
                    for _ in 0..up {
                        s = s.and_then(|s| self.scopes[s].parent);
                    }
                    let cte_query = s.and_then(|s| {
                        self.scopes[s]
                            .query
                            .list("cteList")
                            .iter()
                            .filter_map(Value::as_node)
                            .find(|c| c.str("ctename") == Some(name))
                            .and_then(|c| c.node("ctequery"))
                    });
                    let Some(cq) = cte_query else {
                        return Err(TviewError::Internal(format!("CTE {name} not found")));
                    };
                    let child = self.add_scope(cq, Some(id), depth + 1)?;
                    self.scopes[id].rte_scopes.insert(rt, child);
                }
                // Joins, functions, VALUES, ...: no base relation of their own.
                _ => {}
            }
        }
        // Sublinks anywhere in this scope's own expressions.
        let mut sublinks = Vec::new();
        scope_nodes(query, &mut |n| {
            if n.is("SUBLINK")
                && let Some(sub) = n.node("subselect")
            {
                sublinks.push(sub);
            }
        });
        for sub in sublinks {
            self.add_scope(sub, Some(id), depth + 1)?;
        }
        Ok(id)
    }

    /// Whether any Var of this query refers to range table entry `rt`.
    fn is_referenced(&self, query: &Node, rt: usize) -> bool {
        let mut found = false;
        scope_nodes(query, &mut |n| {
            if (n.is("VAR") && n.int("varno") == Some(rt as i64) && n.int("varlevelsup") == Some(0))
                || (n.is("RANGETBLREF") && n.int("rtindex") == Some(rt as i64))
            {
                found = true;
            }
        });
        found
    }

    /// Resolves a Var of `scope` to a base column, or `None` when it is
    /// computed (an aggregate, an expression, a function's output...).
    fn resolve(&self, scope: usize, var: &Node, depth: usize) -> Option<Col> {
        if depth > 128 {
            return None;
        }
        let var = strip(var);
        if !var.is("VAR") {
            return None;
        }
        let mut s = scope;
        for _ in 0..var.int("varlevelsup")? {
            s = self.scopes[s].parent?;
        }
        let rt = usize::try_from(var.int("varno")?).ok()?;
        let att = var.int("varattno")?;
        let rte = *self.scopes[s].rtable.get(rt.checked_sub(1)?)?;
        if self.base_rtes.contains_key(&RteRef { scope: s, rt }) {
            return Some(Col { scope: s, rt, att });
        }
        match rte.int("rtekind")? {
            RTE_JOIN => {
                // A join's output column: look through its alias variable.
                let idx = usize::try_from(att.checked_sub(1)?).ok()?;
                let inner = rte.list("joinaliasvars").get(idx)?.as_node()?;
                self.resolve(s, inner, depth + 1)
            }
            RTE_RELATION | RTE_SUBQUERY | RTE_CTE => {
                let child = *self.scopes[s].rte_scopes.get(&rt)?;
                self.resolve_output(child, att, depth + 1)
            }
            _ => None,
        }
    }

    /// Resolves output column `att` of a child scope.
    fn resolve_output(&self, scope: usize, att: i64, depth: usize) -> Option<Col> {
        if self.scopes[scope].nonlocal {
            return None;
        }
        let te = self.scopes[scope]
            .query
            .list("targetList")
            .iter()
            .filter_map(Value::as_node)
            .find(|te| te.int("resno") == Some(att))?;
        self.resolve(scope, te.node("expr")?, depth)
    }

    fn collect_edges(&mut self) -> Result<()> {
        for s in 0..self.scopes.len() {
            let q = self.scopes[s].query;
            let mut conjuncts = Vec::new();
            if let Some(jt) = q.node("jointree") {
                join_conjuncts(jt, &mut conjuncts);
            }
            for c in conjuncts {
                self.add_equality(s, c);
            }
        }
        Ok(())
    }

    fn add_equality(&mut self, scope: usize, expr: &Node) {
        match expr.tag.as_str() {
            "OPEXPR" => {
                let Some(op) = expr
                    .uint("opno")
                    .and_then(|o| self.catalog.operators.get(&o))
                else {
                    return;
                };
                if !op.equality {
                    return;
                }
                let args: Vec<&Node> = expr
                    .list("args")
                    .iter()
                    .filter_map(Value::as_node)
                    .collect();
                let [l, r] = args[..] else { return };
                if let (Some(a), Some(b)) = (self.resolve(scope, l, 0), self.resolve(scope, r, 0)) {
                    let key = if a < b { (a, b) } else { (b, a) };
                    self.edge_ops
                        .entry(key)
                        .or_insert_with(|| (op.schema.clone(), op.name.clone()));
                    self.classes.union(a, b);
                }
            }
            // `x = ANY(arr)`: x equals one element of arr.
            "SCALARARRAYOPEXPR" if expr.bool("useOr") => {
                let Some(op) = expr
                    .uint("opno")
                    .and_then(|o| self.catalog.operators.get(&o))
                else {
                    return;
                };
                let args: Vec<&Node> = expr
                    .list("args")
                    .iter()
                    .filter_map(Value::as_node)
                    .collect();
                let [l, r] = args[..] else { return };
                if !op.equality {
                    return;
                }
                if let (Some(scalar), Some(array)) =
                    (self.resolve(scope, l, 0), self.resolve(scope, r, 0))
                {
                    // Register both so they have classes (possibly alone).
                    self.classes.find(scalar);
                    self.elem_edges
                        .push((scalar, array, (op.schema.clone(), op.name.clone())));
                }
            }
            // `x IN (SELECT y ...)` as a WHERE conjunct: the outer x equals
            // the inner y for every inner row that matters.
            "SUBLINK" if expr.int("subLinkType") == Some(2) => {
                let (Some(test), Some(sub)) = (expr.node("testexpr"), expr.node("subselect"))
                else {
                    return;
                };
                let Some(sub_scope) = self.scopes.iter().position(|s| std::ptr::eq(s.query, sub))
                else {
                    return;
                };
                if self.scopes[sub_scope].nonlocal || !test.is("OPEXPR") {
                    return;
                }
                let Some(op) = test
                    .uint("opno")
                    .and_then(|o| self.catalog.operators.get(&o))
                else {
                    return;
                };
                let args: Vec<&Node> = test
                    .list("args")
                    .iter()
                    .filter_map(Value::as_node)
                    .collect();
                let [outer, param] = args[..] else { return };
                let param = strip(param);
                if !op.equality || !param.is("PARAM") || param.int("paramkind") != Some(2) {
                    return;
                }
                let Some(resno) = param.int("paramid") else {
                    return;
                };
                let (Some(a), Some(b)) = (
                    self.resolve(scope, outer, 0),
                    self.resolve_output(sub_scope, resno, 0),
                ) else {
                    return;
                };
                let key = if a < b { (a, b) } else { (b, a) };
                self.edge_ops
                    .entry(key)
                    .or_insert_with(|| (op.schema.clone(), op.name.clone()));
                self.classes.union(a, b);
            }
            _ => {}
        }
    }

    fn col_name(&self, c: Col) -> Result<String> {
        let oid = self.base_rtes[&c.rte()];
        let rel = self.relation(oid)?;
        rel.column(c.att)
            .map(|col| col.name.clone())
            .ok_or_else(|| {
                TviewError::Internal(format!(
                    "column {} of {} not found",
                    c.att,
                    rel.display_name()
                ))
            })
    }

    fn col_type(&self, c: Col) -> Result<String> {
        let oid = self.base_rtes[&c.rte()];
        let rel = self.relation(oid)?;
        rel.column(c.att)
            .map(|col| col.type_name.clone())
            .ok_or_else(|| {
                TviewError::Internal(format!(
                    "column {} of {} not found",
                    c.att,
                    rel.display_name()
                ))
            })
    }

    fn finish(mut self) -> Result<Analysis> {
        let top = self.scopes[0].query;
        let wanted = self
            .target
            .key_column
            .map(str::to_string)
            .unwrap_or_else(|| self.target.conventional_key());
        let tlist: Vec<&Node> = top
            .list("targetList")
            .iter()
            .filter_map(Value::as_node)
            .filter(|te| !te.bool("resjunk"))
            .collect();
        let columns: Vec<String> = tlist
            .iter()
            .map(|te| te.str("resname").unwrap_or("?").to_string())
            .collect();
        let Some(key_te) = tlist
            .iter()
            .find(|te| te.str("resname") == Some(wanted.as_str()))
        else {
            return Err(TviewError::NoKeyColumn {
                tview: self.target.display(),
                wanted,
                available: columns,
            });
        };
        let aggregated = top.bool("hasAggs") || !top.list("groupClause").is_empty();
        let key_resno = key_te.int("resno").unwrap_or(0);
        let not_grouped = || TviewError::KeyNotGrouped {
            tview: self.target.display(),
            column: wanted.clone(),
        };
        let not_a_column = || TviewError::KeyNotAColumn {
            tview: self.target.display(),
            column: wanted.clone(),
        };
        if !key_is_grouped(top, key_resno) {
            return Err(not_grouped());
        }
        let key_expr = key_te.node("expr");
        // The key's column: one per branch of a UNION ALL.
        let mut anchors = Vec::new();
        if let Some(setop) = top.node("setOperations") {
            let mut leaves = Vec::new();
            setop_leaves(setop, &mut leaves);
            for rt in leaves {
                let child = *self.scopes[0]
                    .rte_scopes
                    .get(&rt)
                    .ok_or_else(not_a_column)?;
                if !key_is_grouped(self.scopes[child].query, key_resno) {
                    return Err(not_grouped());
                }
                let anchor = self
                    .resolve_output(child, key_resno, 0)
                    .filter(|c| c.att > 0)
                    .ok_or_else(not_a_column)?;
                anchors.push(anchor);
            }
        } else {
            let anchor = key_expr
                .and_then(|e| self.resolve(0, e, 0))
                .filter(|c| c.att > 0)
                .ok_or_else(not_a_column)?;
            anchors.push(anchor);
        }
        let anchor = anchors[0];
        let key_type_oid = key_expr
            .map(strip)
            .and_then(|e| e.uint("vartype"))
            .unwrap_or_default();
        let key_type = match self.catalog.types.get(&key_type_oid) {
            Some(t) => t.name.clone(),
            None => self.col_type(anchor)?,
        };
        let key_classes: BTreeSet<Col> = anchors.iter().map(|a| self.classes.find(*a)).collect();

        // Columns of each occurrence that belong to a class with more than one member.
        let mut members: BTreeMap<Col, Vec<Col>> = BTreeMap::new();
        let cols: Vec<Col> = self.classes.parent.keys().copied().collect();
        for c in cols {
            let root = self.classes.find(c);
            members.entry(root).or_default().push(c);
        }
        for m in members.values_mut() {
            m.sort();
        }
        let class_of: HashMap<Col, Col> = members
            .iter()
            .flat_map(|(root, ms)| ms.iter().map(move |m| (*m, *root)))
            .collect();
        let mut rte_cols: BTreeMap<RteRef, Vec<Col>> = BTreeMap::new();
        for c in class_of.keys() {
            rte_cols.entry(c.rte()).or_default().push(*c);
        }
        for v in rte_cols.values_mut() {
            v.sort();
        }

        // Paths per occurrence, grouped per relation.
        let mut per_relation: BTreeMap<Oid, RelationFacts> = BTreeMap::new();
        let occurrences: Vec<(RteRef, Oid)> =
            self.base_rtes.iter().map(|(r, o)| (*r, *o)).collect();
        for (rte, oid) in occurrences {
            let entry = per_relation.entry(oid).or_default();
            let rte_node = self.scopes[rte.scope].rtable[rte.rt - 1];
            let mut all_columns = false;
            for bit in rte_node.get("selectedCols").int_list() {
                let att = bit + ATTR_BITMAP_OFFSET;
                if att == 0 {
                    all_columns = true;
                } else if att > 0 {
                    entry.2.insert(att);
                } else {
                    entry.3 = true;
                }
            }
            if all_columns {
                let rel = self.relation(oid)?;
                for (i, c) in rel.columns.iter().enumerate() {
                    if !c.dropped {
                        entry.2.insert(i as i64 + 1);
                    }
                }
            }
            match self.path_from(rte, &key_classes, &class_of, &rte_cols)? {
                Some(p) => {
                    if !entry.0.contains(&p) {
                        entry.0.push(p);
                    }
                }
                None => {
                    if entry.1.is_none() {
                        let rel = self.relation(oid)?;
                        entry.1 = Some(format!(
                            "no equality links {} to the key {}",
                            rel.display_name(),
                            wanted
                        ));
                    }
                }
            }
        }
        let key_rel = self.base_rtes[&anchor.rte()];
        let key_relation_column = self.col_name(anchor)?;
        let mut sources = Vec::new();
        for (oid, (mut paths, full, read, system)) in per_relation {
            let rel = self.relation(oid)?;
            paths.sort();
            let mapping = match full {
                Some(reason) => Mapping::Full { reason },
                None => Mapping::Keyed { paths },
            };
            let columns_read = read
                .iter()
                .filter_map(|att| rel.column(*att).map(|c| c.name.clone()))
                .collect();
            sources.push(Source {
                relation: oid,
                schema: rel.schema.clone(),
                name: rel.name.clone(),
                columns_read,
                reads_system_columns: system,
                mapping,
            });
        }
        let nullable = anchors.iter().any(|a| self.may_be_null(*a));
        Ok(Analysis {
            key: KeyColumn {
                name: wanted,
                type_name: key_type,
                relation: key_rel,
                relation_column: key_relation_column,
                nullable,
            },
            columns,
            sources,
            aggregated,
        })
    }

    /// Whether the key column `anchor` can be NULL in the definition's
    /// result: from its scope up to the top, a nullable column or an outer
    /// join's nullable side makes it so, a `WHERE` condition that is false
    /// for NULL (`IS NOT NULL`, an equality) undoes it.
    fn may_be_null(&self, anchor: Col) -> bool {
        let Some(oid) = self.base_rtes.get(&anchor.rte()).copied() else {
            return true;
        };
        let mut nullable = self
            .relation(oid)
            .ok()
            .and_then(|r| r.column(anchor.att))
            .is_none_or(|c| !c.not_null);
        let (mut scope, mut rt) = (anchor.scope, anchor.rt);
        loop {
            let query = self.scopes[scope].query;
            if let Some(jt) = query.node("jointree") {
                if nullable_side(jt, rt as i64, false) == Some(true) {
                    nullable = true;
                }
                let mut where_ = Vec::new();
                if let Some(q) = jt.node("quals") {
                    and_args(q, &mut where_);
                }
                if where_.iter().any(|c| self.rejects_null(scope, c, anchor)) {
                    nullable = false;
                }
            }
            let Some(parent) = self.scopes[scope].parent else {
                break;
            };
            let Some(prt) = self.scopes[parent]
                .rte_scopes
                .iter()
                .find(|(_, child)| **child == scope)
                .map(|(rt, _)| *rt)
            else {
                // Reached through a sublink or a CTE: stay conservative.
                return true;
            };
            scope = parent;
            rt = prt;
        }
        nullable
    }

    /// Whether condition `c` (a WHERE conjunct of `scope`) is false or
    /// NULL when column `col` is NULL.
    fn rejects_null(&self, scope: usize, c: &Node, col: Col) -> bool {
        let is_col = |e: &Node| self.resolve(scope, e, 0) == Some(col);
        match c.tag.as_str() {
            // nulltesttype 1 is IS_NOT_NULL.
            "NULLTEST" => {
                c.int("nulltesttype") == Some(1)
                    && !c.bool("argisrow")
                    && c.node("arg").is_some_and(is_col)
            }
            "OPEXPR" => {
                c.uint("opno")
                    .and_then(|o| self.catalog.operators.get(&o))
                    .is_some_and(|op| op.equality)
                    && c.list("args").iter().filter_map(Value::as_node).any(is_col)
            }
            _ => false,
        }
    }

    /// The ways rows of occurrence `rte` lead to rows of other occurrences.
    fn links_from(
        &self,
        rte: RteRef,
        class_of: &HashMap<Col, Col>,
        rte_cols: &BTreeMap<RteRef, Vec<Col>>,
    ) -> Vec<Link> {
        let empty = Vec::new();
        let mut out = Vec::new();
        for c in rte_cols.get(&rte).unwrap_or(&empty) {
            for m in self.class_members(class_of, *c) {
                if m.rte() != rte {
                    out.push(Link {
                        from: *c,
                        from_unnest: false,
                        to: m,
                        to_overlap: false,
                        op: self.operator_between(*c, m),
                    });
                }
            }
        }
        for (scalar, array, op) in &self.elem_edges {
            let sclass = class_of.get(scalar).copied().unwrap_or(*scalar);
            // Our scalar equals an element of their array.
            if array.rte() != rte {
                for c in rte_cols.get(&rte).unwrap_or(&empty) {
                    if class_of.get(c).copied().unwrap_or(*c) == sclass {
                        out.push(Link {
                            from: *c,
                            from_unnest: false,
                            to: *array,
                            to_overlap: true,
                            op: op.clone(),
                        });
                    }
                }
            }
            // Our array's elements equal their scalar.
            if array.rte() == rte {
                for m in self.class_members(class_of, *scalar) {
                    if m.rte() != rte {
                        out.push(Link {
                            from: *array,
                            from_unnest: true,
                            to: m,
                            to_overlap: false,
                            op: op.clone(),
                        });
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }

    /// The key expression an occurrence can produce itself: a column in the
    /// key's class, or an array whose elements are keys.
    fn key_out(
        &self,
        rte: RteRef,
        key_classes: &BTreeSet<Col>,
        class_of: &HashMap<Col, Col>,
        rte_cols: &BTreeMap<RteRef, Vec<Col>>,
    ) -> Option<(Col, bool)> {
        let in_key_class = |c: &Col| key_classes.contains(&class_of.get(c).copied().unwrap_or(*c));
        if let Some(c) = rte_cols
            .get(&rte)
            .and_then(|cols| cols.iter().find(|c| in_key_class(c)))
        {
            return Some((*c, false));
        }
        self.elem_edges
            .iter()
            .find(|(scalar, array, _)| array.rte() == rte && in_key_class(scalar))
            .map(|(_, array, _)| (*array, true))
    }

    /// Breadth-first search from one occurrence to the key.
    fn path_from(
        &self,
        start: RteRef,
        key_classes: &BTreeSet<Col>,
        class_of: &HashMap<Col, Col>,
        rte_cols: &BTreeMap<RteRef, Vec<Col>>,
    ) -> Result<Option<KeyPath>> {
        if let Some((c, unnest)) = self.key_out(start, key_classes, class_of, rte_cols) {
            return Ok(Some(KeyPath {
                column: self.col_name(c)?,
                column_type: self.value_type(c, unnest)?,
                unnest,
                hops: Vec::new(),
            }));
        }
        // Each step: the occurrence entered, the link it was entered by,
        // and the previous step.
        let mut steps: Vec<(Link, Option<usize>)> = Vec::new();
        let mut seen = BTreeSet::from([start]);
        let mut queue = VecDeque::new();
        for l in self.links_from(start, class_of, rte_cols) {
            if seen.insert(l.to.rte()) {
                steps.push((l, None));
                queue.push_back(steps.len() - 1);
            }
        }
        while let Some(i) = queue.pop_front() {
            let rte = steps[i].0.to.rte();
            if let Some(out) = self.key_out(rte, key_classes, class_of, rte_cols) {
                return self.build_path(&steps, i, out).map(Some);
            }
            for l in self.links_from(rte, class_of, rte_cols) {
                if seen.insert(l.to.rte()) {
                    steps.push((l, Some(i)));
                    queue.push_back(steps.len() - 1);
                }
            }
        }
        Ok(None)
    }

    fn class_members(&self, class_of: &HashMap<Col, Col>, c: Col) -> Vec<Col> {
        let root = class_of.get(&c).copied().unwrap_or(c);
        let mut v: Vec<Col> = class_of
            .iter()
            .filter(|(_, r)| **r == root)
            .map(|(m, _)| *m)
            .collect();
        if v.is_empty() {
            v.push(c);
        }
        v.sort();
        v
    }

    fn operator_between(&self, a: Col, b: Col) -> (String, String) {
        let key = if a < b { (a, b) } else { (b, a) };
        if let Some(op) = self.edge_ops.get(&key) {
            return op.clone();
        }
        // Transitively equal: use any equality of the class.
        let mut ops: Vec<_> = self
            .edge_ops
            .iter()
            .filter(|((x, y), _)| *x == a || *y == a || *x == b || *y == b)
            .collect();
        ops.sort_by(|x, y| x.0.cmp(y.0));
        ops.first()
            .map(|(_, op)| (*op).clone())
            .unwrap_or_else(|| ("pg_catalog".into(), "=".into()))
    }

    /// The type of the values a column yields: its own, or its elements'.
    fn value_type(&self, c: Col, unnest: bool) -> Result<String> {
        let t = self.col_type(c)?;
        Ok(if unnest {
            t.strip_suffix("[]").unwrap_or(&t).to_string()
        } else {
            t
        })
    }

    fn build_path(
        &self,
        steps: &[(Link, Option<usize>)],
        last: usize,
        key_out: (Col, bool),
    ) -> Result<KeyPath> {
        let mut chain = vec![last];
        let mut cur = steps[last].1;
        while let Some(i) = cur {
            chain.push(i);
            cur = steps[i].1;
        }
        chain.reverse();
        let first = &steps[chain[0]].0;
        let mut hops = Vec::new();
        for (pos, &i) in chain.iter().enumerate() {
            let link = &steps[i].0;
            let (next, next_unnest) = match chain.get(pos + 1) {
                Some(&n) => (steps[n].0.from, steps[n].0.from_unnest),
                None => key_out,
            };
            let oid = self.base_rtes[&link.to.rte()];
            let rel = self.relation(oid)?;
            hops.push(Hop {
                relation: oid,
                schema: rel.schema.clone(),
                name: rel.name.clone(),
                join_column: self.col_name(link.to)?,
                operator: link.op.clone(),
                overlap: link.to_overlap,
                join_type: self.col_type(link.to)?,
                next_column: self.col_name(next)?,
                next_unnest,
            });
        }
        Ok(KeyPath {
            column: self.col_name(first.from)?,
            column_type: self.value_type(first.from, first.from_unnest)?,
            unnest: first.from_unnest,
            hops,
        })
    }
}

/// One way from rows of an occurrence to rows of another: `from` (or its
/// elements) equals `to` (or one of its elements, `to_overlap`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Link {
    from: Col,
    from_unnest: bool,
    to: Col,
    to_overlap: bool,
    op: (String, String),
}

/// Visits the nodes that belong to one query level: its expressions, but
/// not the queries of its subqueries, CTEs or sublinks (other scopes).
fn scope_nodes<'a>(query: &'a Node, f: &mut dyn FnMut(&'a Node)) {
    fn visit<'a>(v: &'a Value, f: &mut dyn FnMut(&'a Node)) {
        match v {
            Value::Node(n) => visit_node(n, f),
            Value::List(l) => l.iter().for_each(|x| visit(x, f)),
            _ => {}
        }
    }
    fn visit_node<'a>(n: &'a Node, f: &mut dyn FnMut(&'a Node)) {
        f(n);
        for (name, v) in &n.fields {
            let skip = match n.tag.as_str() {
                "SUBLINK" => name == "subselect",
                "RANGETBLENTRY" => name == "subquery",
                "QUERY" => true, // a nested query never belongs to this scope
                _ => false,
            };
            if !skip {
                visit(v, f);
            }
        }
    }
    for (name, v) in &query.fields {
        if name != "cteList" {
            visit(v, f);
        }
    }
}

/// Whether range table entry `rt` is on the nullable side of an outer join
/// in join tree `n` (`None`: not in it). Join types: 1 LEFT, 2 FULL, 3 RIGHT.
fn nullable_side(n: &Node, rt: i64, nullable: bool) -> Option<bool> {
    match n.tag.as_str() {
        "RANGETBLREF" => (n.int("rtindex") == Some(rt)).then_some(nullable),
        "FROMEXPR" => n
            .list("fromlist")
            .iter()
            .filter_map(Value::as_node)
            .find_map(|c| nullable_side(c, rt, nullable)),
        "JOINEXPR" => {
            let (left, right) = match n.int("jointype").unwrap_or(0) {
                1 => (false, true),
                2 => (true, true),
                3 => (true, false),
                _ => (false, false),
            };
            n.node("larg")
                .and_then(|l| nullable_side(l, rt, nullable || left))
                .or_else(|| {
                    n.node("rarg")
                        .and_then(|r| nullable_side(r, rt, nullable || right))
                })
        }
        _ => None,
    }
}

/// The top-level AND-ed conditions of a join tree (WHERE and every JOIN ON).
fn join_conjuncts<'a>(n: &'a Node, out: &mut Vec<&'a Node>) {
    match n.tag.as_str() {
        "FROMEXPR" => {
            for item in n.list("fromlist").iter().filter_map(Value::as_node) {
                join_conjuncts(item, out);
            }
            if let Some(q) = n.node("quals") {
                and_args(q, out);
            }
        }
        "JOINEXPR" => {
            if let Some(l) = n.node("larg") {
                join_conjuncts(l, out);
            }
            if let Some(r) = n.node("rarg") {
                join_conjuncts(r, out);
            }
            if let Some(q) = n.node("quals") {
                and_args(q, out);
            }
        }
        _ => {}
    }
}

fn and_args<'a>(n: &'a Node, out: &mut Vec<&'a Node>) {
    if n.is("BOOLEXPR") && n.str("boolop") == Some("and") {
        for a in n.list("args").iter().filter_map(Value::as_node) {
            and_args(a, out);
        }
    } else if n.is("LIST") {
        // An implicitly AND-ed list (as the planner stores quals).
        for a in n.list("items").iter().filter_map(Value::as_node) {
            and_args(a, out);
        }
    } else {
        out.push(n);
    }
}
