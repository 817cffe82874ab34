//! The randomized differential oracle (DESIGN.md §1): random schemas of
//! related tables, random TVIEWs over them, random writes in random
//! transactions; after every commit each TVIEW must equal its definition.
//!
//! Everything is derived from a seed, so a run is reproducible; a failing
//! single-session run is shrunk to a minimal list of transactions that
//! still fails, and printed as a psql script.

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use tokio_postgres::Client;

use crate::support::{Db, assert_exact, assert_exact_retrying};
use crate::{Cluster, StopMode};

/// A generated table: `tb_<name> (id int PRIMARY KEY, v int, s text, fk_* int ...)`.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    /// (column, parent table index); a parent may be the table itself.
    pub fks: Vec<(String, usize)>,
    /// An `ids int[]` column holding ids of this table (no foreign key).
    pub array_of: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Schema {
    pub tables: Vec<Table>,
    /// `CREATE TABLE tv_... AS ...` statements, in creation order.
    pub tviews: Vec<String>,
    /// Run after the TVIEWs: a user's trigger on a TVIEW that writes a
    /// base table when the TVIEW's rows change (so a refresh writes sources
    /// of other TVIEWs itself).
    pub side_effects: Vec<String>,
}

/// One statement of a transaction.
#[derive(Debug, Clone)]
pub enum Stmt {
    Sql(String),
    /// `COPY table (cols) FROM STDIN` with tab-separated rows.
    Copy {
        table: String,
        columns: Vec<String>,
        rows: Vec<String>,
    },
}

#[derive(Debug, Clone)]
pub struct Txn {
    pub stmts: Vec<Stmt>,
    pub commit: bool,
    /// `SET LOCAL pg_tviews.refresh_mode = statement` first: the TVIEWs
    /// must then be exact inside the transaction after every statement.
    pub statement_mode: bool,
    /// End with `PREPARE TRANSACTION`, then `COMMIT PREPARED` (or
    /// `ROLLBACK PREPARED` when `commit` is false) from another session.
    pub two_phase: bool,
}

impl Schema {
    pub fn ddl(&self) -> String {
        let mut out = String::new();
        for t in &self.tables {
            let mut cols = vec![
                "id int PRIMARY KEY".to_string(),
                "v int".into(),
                "s text".into(),
            ];
            for (fk, parent) in &self.fks_of(t) {
                cols.push(format!(
                    "{fk} int REFERENCES tb_{parent} ON DELETE {} ON UPDATE CASCADE",
                    if fk.ends_with('n') {
                        "SET NULL"
                    } else {
                        "CASCADE"
                    }
                ));
            }
            if t.array_of.is_some() {
                cols.push("ids int[]".into());
            }
            let _ = writeln!(out, "CREATE TABLE tb_{} ({});", t.name, cols.join(", "));
        }
        out
    }

    fn fks_of(&self, t: &Table) -> Vec<(String, String)> {
        t.fks
            .iter()
            .map(|(c, p)| (c.clone(), self.tables[*p].name.clone()))
            .collect()
    }
}

/// Generates a schema of 2–5 tables and 2–5 TVIEWs.
pub fn gen_schema(rng: &mut StdRng) -> Schema {
    let n = rng.random_range(2..=5);
    let mut tables: Vec<Table> = Vec::new();
    for i in 0..n {
        let name = format!("t{i}");
        let mut fks = Vec::new();
        if i > 0 {
            let nfk = rng.random_range(1..=2.min(i));
            let mut parents: Vec<usize> = (0..i).collect();
            for k in 0..nfk {
                let idx = rng.random_range(0..parents.len());
                let p = parents.remove(idx);
                // Columns ending in 'n' are ON DELETE SET NULL, 'c' cascade.
                let suffix = if rng.random_bool(0.5) { "n" } else { "c" };
                fks.push((format!("fk{k}_{suffix}"), p));
            }
        }
        if rng.random_bool(0.25) {
            fks.push(("fkself_n".into(), i));
        }
        let array_of = rng.random_bool(0.3).then(|| rng.random_range(0..n));
        tables.push(Table {
            name,
            fks,
            array_of,
        });
    }
    let mut schema = Schema {
        tables,
        tviews: Vec::new(),
        side_effects: Vec::new(),
    };
    let ntv = rng.random_range(2..=5);
    let mut created: Vec<(String, usize)> = Vec::new(); // (tview name, key table)
    for i in 0..ntv {
        let name = format!("tv_r{i}");
        let def = match rng.random_range(0..13) {
            0..=3 => gen_join_tview(rng, &schema, &name),
            4..=5 => gen_aggregate_tview(rng, &schema, &name),
            12 => gen_nullable_key_tview(rng, &schema, &name),
            6 => gen_array_tview(rng, &schema, &name),
            7 => gen_lateral_tview(rng, &schema, &name),
            8 => gen_union_tview(rng, &schema, &name),
            _ => match created.choose(rng) {
                Some((prev, key_table)) => gen_cascade_tview(rng, &schema, &name, prev, *key_table),
                None => gen_join_tview(rng, &schema, &name),
            },
        };
        if let Some(key_table) = def.1 {
            created.push((name.clone(), key_table));
        }
        schema.tviews.push(def.0);
    }
    // Sometimes a chain of cascades three to five levels deep.
    if rng.random_bool(0.3) {
        let (def, k) = gen_join_tview(rng, &schema, "tv_chain0");
        schema.tviews.push(def);
        let mut prev = "tv_chain0".to_string();
        for level in 1..rng.random_range(3..=5) {
            let name = format!("tv_chain{level}");
            let (def, _) = gen_cascade_tview(rng, &schema, &name, &prev, k.unwrap_or(0));
            schema.tviews.push(def);
            prev = name;
        }
    }
    if rng.random_bool(0.3) {
        schema.side_effects = gen_side_effect(rng, &schema);
    }
    schema
}

/// A trigger on one of the TVIEWs that sets `s = 'side'` on the row of a
/// base table whose id is the TVIEW row's key, when it is not already: a
/// refresh of that TVIEW then writes a source of TVIEWs (perhaps flushed
/// before it), and the writes converge (the second time changes nothing).
fn gen_side_effect(rng: &mut StdRng, schema: &Schema) -> Vec<String> {
    let names: Vec<&str> = schema
        .tviews
        .iter()
        .filter_map(|d| d.strip_prefix("CREATE TABLE "))
        .filter_map(|d| d.split_whitespace().next())
        .collect();
    let (Some(tv), Some(table)) = (names.choose(rng), schema.tables.choose(rng)) else {
        return Vec::new();
    };
    let key = format!("pk_{}", tv.trim_start_matches("tv_"));
    vec![
        "CREATE FUNCTION oracle_side() RETURNS trigger LANGUAGE plpgsql AS $f$ \
         BEGIN EXECUTE format('UPDATE public.%I SET s = %L WHERE id::text = %L AND s IS DISTINCT FROM %L', \
         TG_ARGV[0], 'side', to_jsonb(NEW) ->> TG_ARGV[1], 'side'); RETURN NULL; END $f$"
            .to_string(),
        format!(
            "CREATE TRIGGER oracle_side AFTER INSERT OR UPDATE ON {tv} FOR EACH ROW \
             EXECUTE FUNCTION oracle_side('tb_{}', '{key}')",
            table.name
        ),
    ]
}

/// Arrays of ids: a row with the names of the rows its array points to,
/// or a row with the holders whose arrays contain it.
fn gen_array_tview(rng: &mut StdRng, schema: &Schema, name: &str) -> (String, Option<usize>) {
    let entity = name.trim_start_matches("tv_");
    let Some((c, p)) = schema
        .tables
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.array_of.map(|p| (i, p)))
        .collect::<Vec<_>>()
        .choose(rng)
        .copied()
    else {
        return gen_join_tview(rng, schema, name);
    };
    let (cn, pn) = (&schema.tables[c].name, &schema.tables[p].name);
    if rng.random_bool(0.5) {
        (
            format!(
                "CREATE TABLE {name} AS SELECT c.id AS pk_{entity}, c.ids, \
                 (SELECT array_agg(x.s ORDER BY x.id) FROM tb_{pn} x WHERE x.id = ANY (c.ids)) AS names \
                 FROM tb_{cn} c"
            ),
            Some(c),
        )
    } else {
        (
            format!(
                "CREATE TABLE {name} AS SELECT p.id AS pk_{entity}, \
                 (SELECT count(*) FROM tb_{cn} c WHERE p.id = ANY (c.ids)) AS n, \
                 ARRAY(SELECT c.id FROM tb_{cn} c WHERE p.id = ANY (c.ids) ORDER BY c.id) AS holders \
                 FROM tb_{pn} p"
            ),
            Some(p),
        )
    }
}

/// LEFT JOIN LATERAL: an aggregate of a child, or its top row.
fn gen_lateral_tview(rng: &mut StdRng, schema: &Schema, name: &str) -> (String, Option<usize>) {
    let entity = name.trim_start_matches("tv_");
    let mut pairs = Vec::new();
    for (ci, c) in schema.tables.iter().enumerate() {
        for (fk, p) in &c.fks {
            pairs.push((ci, fk.clone(), *p));
        }
    }
    let Some((child, fk, parent)) = pairs.choose(rng).cloned() else {
        return gen_join_tview(rng, schema, name);
    };
    let (c, p) = (&schema.tables[child].name, &schema.tables[parent].name);
    let lateral = if rng.random_bool(0.5) {
        format!("(SELECT count(*) AS n, max(c.v) AS top FROM tb_{c} c WHERE c.{fk} = k.id) l")
    } else {
        format!(
            "(SELECT c.v AS n, c.s AS top FROM tb_{c} c WHERE c.{fk} = k.id ORDER BY c.v DESC NULLS LAST, c.id LIMIT 1) l"
        )
    };
    (
        format!(
            "CREATE TABLE {name} AS SELECT k.id AS pk_{entity}, k.s, l.n, l.top FROM tb_{p} k LEFT JOIN LATERAL {lateral} ON true"
        ),
        Some(parent),
    )
}

/// UNION ALL of two tables (ids are unique across tables, so keys never collide).
fn gen_union_tview(rng: &mut StdRng, schema: &Schema, name: &str) -> (String, Option<usize>) {
    let entity = name.trim_start_matches("tv_");
    if schema.tables.len() < 2 {
        return gen_join_tview(rng, schema, name);
    }
    let a = rng.random_range(0..schema.tables.len());
    let b = (a + rng.random_range(1..schema.tables.len())) % schema.tables.len();
    let fa = gen_filter(rng, "a")
        .map(|f| format!(" WHERE {f}"))
        .unwrap_or_default();
    (
        format!(
            "CREATE TABLE {name} AS SELECT a.id AS pk_{entity}, 'a' AS src, a.s FROM tb_{} a{fa} \
             UNION ALL SELECT b.id, 'b', b.s FROM tb_{} b",
            schema.tables[a].name, schema.tables[b].name
        ),
        None,
    )
}

/// A filter on an alias, or nothing.
fn gen_filter(rng: &mut StdRng, alias: &str) -> Option<String> {
    match rng.random_range(0..6) {
        0 => Some(format!("{alias}.v % 3 <> 1")),
        1 => Some(format!("{alias}.s IS NOT NULL")),
        2 => Some(format!("coalesce({alias}.v, 0) < 7")),
        _ => None,
    }
}

/// Key table joined "up" to parents (N:1, so keys stay unique), inner or
/// left joins, a filter, plain and JSONB columns. Returns (DDL, key table).
fn gen_join_tview(rng: &mut StdRng, schema: &Schema, name: &str) -> (String, Option<usize>) {
    let k = rng.random_range(0..schema.tables.len());
    let entity = name.trim_start_matches("tv_");
    let mut aliases = vec![("a0".to_string(), k)];
    let mut joins = String::new();
    let mut filters = Vec::new();
    for _ in 0..rng.random_range(0..=3) {
        let (from_alias, from_table) = aliases.choose(rng).cloned().unwrap_or(("a0".into(), k));
        let Some((fk, parent)) = schema.tables[from_table].fks.choose(rng).cloned() else {
            continue;
        };
        let alias = format!("a{}", aliases.len());
        let kind = if rng.random_bool(0.5) {
            "JOIN"
        } else {
            "LEFT JOIN"
        };
        let _ = write!(
            joins,
            " {kind} tb_{} {alias} ON {alias}.id = {from_alias}.{fk}",
            schema.tables[parent].name
        );
        if kind == "JOIN"
            && let Some(f) = gen_filter(rng, &alias)
        {
            filters.push(f);
        }
        aliases.push((alias, parent));
    }
    if let Some(f) = gen_filter(rng, "a0") {
        filters.push(f);
    }
    let mut cols = vec![format!("a0.id AS pk_{entity}"), "a0.v".into()];
    for (alias, _) in aliases.iter().skip(1) {
        match rng.random_range(0..3) {
            0 => cols.push(format!("{alias}.v AS {alias}_v")),
            1 => cols.push(format!("{alias}.s AS {alias}_s")),
            _ => cols.push(format!(
                "jsonb_build_object('id', {alias}.id, 's', {alias}.s) AS {alias}_obj"
            )),
        }
    }
    cols.push(format!(
        "jsonb_build_object('id', a0.id, 's', a0.s, 'n', {}) AS data",
        aliases.len()
    ));
    let wh = if filters.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", filters.join(" AND "))
    };
    (
        format!(
            "CREATE TABLE {name} AS SELECT {} FROM tb_{} a0{joins}{wh}",
            cols.join(", "),
            schema.tables[k].name
        ),
        Some(k),
    )
}

/// A parent keyed by its id with aggregates over a child table (GROUP BY
/// with a LEFT JOIN, or correlated subqueries), or the plain join shape
/// when no table has a child.
fn gen_aggregate_tview(rng: &mut StdRng, schema: &Schema, name: &str) -> (String, Option<usize>) {
    let entity = name.trim_start_matches("tv_");
    let mut pairs = Vec::new();
    for (ci, c) in schema.tables.iter().enumerate() {
        for (fk, p) in &c.fks {
            pairs.push((ci, fk.clone(), *p));
        }
    }
    let Some((child, fk, parent)) = pairs.choose(rng).cloned() else {
        return gen_join_tview(rng, schema, name);
    };
    let (c, p) = (&schema.tables[child].name, &schema.tables[parent].name);
    let def = if rng.random_bool(0.5) {
        let filter = gen_filter(rng, "c")
            .map(|f| format!(" FILTER (WHERE {f})"))
            .unwrap_or_default();
        let having = if rng.random_bool(0.2) {
            " HAVING count(c.id) <> 1"
        } else {
            ""
        };
        // The rest of the aggregates, a random subset each time.
        let all = [
            "count(DISTINCT c.v) AS distinct_v",
            "round(avg(c.v), 6) AS avg_v",
            "min(c.s) AS min_s",
            "bool_and(c.v > 3) AS all_big",
            "bool_or(c.s IS NULL) AS any_null",
            "array_agg(c.id ORDER BY c.id) FILTER (WHERE c.id IS NOT NULL) AS ids",
            "jsonb_object_agg(c.id::text, c.v ORDER BY c.id) FILTER (WHERE c.id IS NOT NULL) AS by_id",
            "array_agg(DISTINCT c.s) AS distinct_s",
        ];
        let mut chosen: Vec<&str> = all
            .iter()
            .copied()
            .filter(|_| rng.random_bool(0.5))
            .collect();
        if chosen.is_empty() {
            chosen.push(all[0]);
        }
        let extra = chosen.join(", ");
        format!(
            "CREATE TABLE {name} AS SELECT p.id AS pk_{entity}, p.s, count(c.id) AS n, sum(c.v){filter} AS total, \
             max(c.s) AS top, string_agg(c.s, ',' ORDER BY c.id) AS list, \
             coalesce(jsonb_agg(jsonb_build_object('id', c.id, 'v', c.v) ORDER BY c.id) FILTER (WHERE c.id IS NOT NULL), '[]') AS items, \
             {extra} \
             FROM tb_{p} p LEFT JOIN tb_{c} c ON c.{fk} = p.id GROUP BY p.id, p.s{having}"
        )
    } else {
        let exists = if rng.random_bool(0.4) {
            format!(
                " WHERE {}EXISTS (SELECT 1 FROM tb_{c} e WHERE e.{fk} = p.id AND e.v > 2)",
                if rng.random_bool(0.5) { "NOT " } else { "" }
            )
        } else {
            String::new()
        };
        format!(
            "CREATE TABLE {name} AS SELECT p.id AS pk_{entity}, p.v, \
             (SELECT count(*) FROM tb_{c} c WHERE c.{fk} = p.id) AS n, \
             (SELECT coalesce(jsonb_agg(jsonb_build_object('id', c.id, 's', c.s) ORDER BY c.id), '[]') FROM tb_{c} c WHERE c.{fk} = p.id) AS items \
             FROM tb_{p} p{exists}"
        )
    };
    (def, Some(parent))
}

/// Children grouped by their parent, keyed by the parent's id taken from
/// the nullable side of a LEFT JOIN: a child with no parent makes a NULL
/// key, which the TVIEW refuses (23502 at creation, at commit after a
/// write) — or, half the time, filters out with `IS NOT NULL`.
fn gen_nullable_key_tview(
    rng: &mut StdRng,
    schema: &Schema,
    name: &str,
) -> (String, Option<usize>) {
    let entity = name.trim_start_matches("tv_");
    let pairs: Vec<(usize, String, usize)> = schema
        .tables
        .iter()
        .enumerate()
        .flat_map(|(ci, c)| c.fks.iter().map(move |(fk, p)| (ci, fk.clone(), *p)))
        .collect();
    let Some((child, fk, parent)) = pairs.choose(rng).cloned() else {
        return gen_join_tview(rng, schema, name);
    };
    let (c, p) = (&schema.tables[child].name, &schema.tables[parent].name);
    let filter = if rng.random_bool(0.5) {
        " WHERE p.id IS NOT NULL"
    } else {
        ""
    };
    (
        format!(
            "CREATE TABLE {name} AS SELECT p.id AS pk_{entity}, count(*) AS n, max(c.v) AS top \
             FROM tb_{c} c LEFT JOIN tb_{p} p ON p.id = c.{fk}{filter} GROUP BY p.id"
        ),
        Some(parent),
    )
}

/// A TVIEW reading another TVIEW (a cascade), joined back to its key table.
fn gen_cascade_tview(
    rng: &mut StdRng,
    schema: &Schema,
    name: &str,
    prev: &str,
    key_table: usize,
) -> (String, Option<usize>) {
    let entity = name.trim_start_matches("tv_");
    let prev_key = format!("pk_{}", prev.trim_start_matches("tv_"));
    let kind = if rng.random_bool(0.5) {
        "JOIN"
    } else {
        "LEFT JOIN"
    };
    (
        format!(
            "CREATE TABLE {name} AS SELECT k.id AS pk_{entity}, k.s, to_jsonb(x) - '{prev_key}' AS upstream \
             FROM tb_{} k {kind} {prev} x ON x.{prev_key} = k.id",
            schema.tables[key_table].name
        ),
        Some(key_table),
    )
}

/// Generates one transaction of 1–5 statements.
pub fn gen_txn(rng: &mut StdRng, schema: &Schema, next_id: &mut i64) -> Txn {
    let mut stmts = Vec::new();
    let n = rng.random_range(1..=5);
    let mut savepoint = false;
    for i in 0..n {
        if i > 0 && !savepoint && rng.random_bool(0.15) {
            stmts.push(Stmt::Sql("SAVEPOINT sp".into()));
            savepoint = true;
        }
        stmts.push(gen_stmt(rng, schema, next_id));
        if savepoint && rng.random_bool(0.2) {
            stmts.push(Stmt::Sql("ROLLBACK TO SAVEPOINT sp".into()));
            savepoint = false;
        }
    }
    Txn {
        stmts,
        commit: !rng.random_bool(0.1),
        statement_mode: rng.random_bool(0.2),
        two_phase: rng.random_bool(0.08),
    }
}

fn parent_ref(rng: &mut StdRng, schema: &Schema, parent: usize) -> String {
    if rng.random_bool(0.15) {
        "NULL".into()
    } else {
        format!(
            "(SELECT id FROM tb_{} WHERE id >= {} ORDER BY id LIMIT 1)",
            schema.tables[parent].name,
            rng.random_range(0..40)
        )
    }
}

/// An `int[]` of 0–3 ids of table `p` (or NULL).
fn array_value(rng: &mut StdRng, schema: &Schema, p: usize) -> String {
    if rng.random_bool(0.1) {
        return "NULL".into();
    }
    let n = rng.random_range(0..=3);
    let elems: Vec<String> = (0..n)
        .map(|_| {
            format!(
                "(SELECT id FROM tb_{} WHERE id >= {} ORDER BY id LIMIT 1)",
                schema.tables[p].name,
                rng.random_range(0..40)
            )
        })
        .collect();
    format!("ARRAY[{}]::int[]", elems.join(", "))
}

fn gen_stmt(rng: &mut StdRng, schema: &Schema, next_id: &mut i64) -> Stmt {
    let ti = rng.random_range(0..schema.tables.len());
    let t = &schema.tables[ti];
    let tb = format!("tb_{}", t.name);
    let s_val = |rng: &mut StdRng| -> String {
        if rng.random_bool(0.1) {
            "NULL".into()
        } else {
            format!("'s{}'", rng.random_range(0..6))
        }
    };
    match rng.random_range(0..100) {
        0..=29 => {
            let rows = rng.random_range(1..=4);
            let mut values = Vec::new();
            for _ in 0..rows {
                *next_id += 1;
                let mut vals = vec![
                    next_id.to_string(),
                    rng.random_range(0..10).to_string(),
                    s_val(rng),
                ];
                for (_, p) in &t.fks {
                    vals.push(parent_ref(rng, schema, *p));
                }
                if let Some(p) = t.array_of {
                    vals.push(array_value(rng, schema, p));
                }
                values.push(format!("({})", vals.join(", ")));
            }
            let cols: Vec<String> = ["id", "v", "s"]
                .iter()
                .map(|c| c.to_string())
                .chain(t.fks.iter().map(|(c, _)| c.clone()))
                .chain(t.array_of.map(|_| "ids".to_string()))
                .collect();
            Stmt::Sql(format!(
                "INSERT INTO {tb} ({}) VALUES {}",
                cols.join(", "),
                values.join(", ")
            ))
        }
        30..=49 => {
            let set = match rng.random_range(0..if t.array_of.is_some() { 5 } else { 3 }) {
                3 => match t.array_of {
                    Some(p) => format!(
                        "ids = array_append(ids, (SELECT id FROM tb_{} WHERE id >= {} ORDER BY id LIMIT 1))",
                        schema.tables[p].name,
                        rng.random_range(0..40)
                    ),
                    None => "v = v".into(),
                },
                4 => match t.array_of {
                    Some(p) => format!("ids = {}", array_value(rng, schema, p)),
                    None => "v = v".into(),
                },
                0 => format!("v = coalesce(v, 0) + {}", rng.random_range(1..4)),
                1 => format!("s = {}", s_val(rng)),
                _ => format!("v = {}, s = {}", rng.random_range(0..10), s_val(rng)),
            };
            let wh = if rng.random_bool(0.7) {
                format!(
                    "id = (SELECT id FROM {tb} WHERE id >= {} ORDER BY id LIMIT 1)",
                    rng.random_range(0..40)
                )
            } else {
                format!(
                    "id % {} = {}",
                    rng.random_range(2..5),
                    rng.random_range(0..2)
                )
            };
            Stmt::Sql(format!("UPDATE {tb} SET {set} WHERE {wh}"))
        }
        50..=64 => match t.fks.choose(rng) {
            Some((fk, p)) => Stmt::Sql(format!(
                "UPDATE {tb} SET {fk} = {} WHERE id = (SELECT id FROM {tb} WHERE id >= {} ORDER BY id LIMIT 1)",
                parent_ref(rng, schema, *p),
                rng.random_range(0..40)
            )),
            None => Stmt::Sql(format!("UPDATE {tb} SET v = v WHERE id % 2 = 0")),
        },
        65..=77 => Stmt::Sql(format!(
            "DELETE FROM {tb} WHERE id = (SELECT id FROM {tb} WHERE id >= {} ORDER BY id LIMIT 1)",
            rng.random_range(0..40)
        )),
        78..=82 => {
            *next_id += 1;
            Stmt::Sql(format!(
                "UPDATE {tb} SET id = {} WHERE id = (SELECT id FROM {tb} WHERE id >= {} ORDER BY id LIMIT 1)",
                *next_id,
                rng.random_range(0..40)
            ))
        }
        83..=89 => Stmt::Sql(format!(
            "INSERT INTO {tb} (id, v, s) SELECT id, coalesce(v, 0) + 1, {} FROM {tb} WHERE id % 3 = {} \
             ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v, s = EXCLUDED.s",
            s_val(rng),
            rng.random_range(0..3)
        )),
        90..=96 => {
            let mut rows = Vec::new();
            for _ in 0..rng.random_range(1..=3) {
                *next_id += 1;
                let s = if rng.random_bool(0.1) {
                    "\\N".to_string()
                } else {
                    format!("c{}", rng.random_range(0..4))
                };
                rows.push(format!("{}\t{}\t{s}", next_id, rng.random_range(0..10)));
            }
            Stmt::Copy {
                table: tb,
                columns: vec!["id".into(), "v".into(), "s".into()],
                rows,
            }
        }
        97 => Stmt::Sql(format!("TRUNCATE {tb} CASCADE")),
        _ => Stmt::Sql(format!(
            "DELETE FROM {tb} WHERE v = {}",
            rng.random_range(0..10)
        )),
    }
}

impl Stmt {
    pub fn to_sql(&self) -> String {
        match self {
            Stmt::Sql(s) => format!("{s};"),
            Stmt::Copy {
                table,
                columns,
                rows,
            } => {
                format!(
                    "COPY {table} ({}) FROM STDIN;\n{}\n\\.",
                    columns.join(", "),
                    rows.join("\n")
                )
            }
        }
    }

    pub async fn execute(&self, client: &Client) -> Result<(), tokio_postgres::Error> {
        match self {
            Stmt::Sql(s) => client.batch_execute(s).await,
            Stmt::Copy {
                table,
                columns,
                rows,
            } => {
                use futures_util::SinkExt;
                let sink = client
                    .copy_in(&format!("COPY {table} ({}) FROM STDIN", columns.join(", ")))
                    .await?;
                let mut sink = Box::pin(sink);
                let mut data = rows.join("\n");
                data.push('\n');
                sink.send(bytes::Bytes::from(data)).await?;
                sink.as_mut().finish().await.map(|_| ())
            }
        }
    }
}

impl Txn {
    pub fn to_sql(&self) -> String {
        let mut out = String::from("BEGIN;\n");
        if self.statement_mode {
            out.push_str("SET LOCAL pg_tviews.refresh_mode = statement;\n");
        }
        for s in &self.stmts {
            out.push_str(&s.to_sql());
            out.push('\n');
        }
        out.push_str(match (self.two_phase, self.commit) {
            (true, true) => "PREPARE TRANSACTION 'oracle';\nCOMMIT PREPARED 'oracle';\n",
            (true, false) => "PREPARE TRANSACTION 'oracle';\nROLLBACK PREPARED 'oracle';\n",
            (false, true) => "COMMIT;\n",
            (false, false) => "ROLLBACK;\n",
        });
        out
    }
}

/// A transaction id for a prepared transaction, unique in the cluster.
fn next_gid() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    format!(
        "oracle_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Outcome of running one transaction.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    RolledBack,
    /// The transaction failed (a constraint, a serialization failure...)
    /// and was rolled back; the SQLSTATE.
    Failed(String),
    /// The connection was lost mid-transaction (the server rolled it back).
    Broken,
}

pub async fn run_txn(client: &Client, txn: &Txn) -> Result<Outcome> {
    run_txn_with(client, txn, None, false).await
}

/// Runs a transaction. `finisher` commits or rolls back a prepared
/// transaction (the same session when `None`); `check_in_txn` checks, in
/// statement mode, that every TVIEW is exact inside the transaction after
/// each statement (read-your-writes).
pub async fn run_txn_with(
    client: &Client,
    txn: &Txn,
    finisher: Option<&Client>,
    check_in_txn: bool,
) -> Result<Outcome> {
    if let Some(outcome) = run_body(client, txn, check_in_txn).await? {
        return Ok(outcome);
    }
    if !txn.commit && !txn.two_phase {
        client.batch_execute("ROLLBACK").await?;
        return Ok(Outcome::RolledBack);
    }
    let end = if txn.two_phase {
        let gid = match prepare(client).await? {
            Ok(gid) => gid,
            Err(outcome) => return Ok(outcome),
        };
        let how = if txn.commit { "COMMIT" } else { "ROLLBACK" };
        finisher
            .unwrap_or(client)
            .batch_execute(&format!("{how} PREPARED '{gid}'"))
            .await
    } else {
        client.batch_execute("COMMIT").await
    };
    ended(txn, end)
}

/// The outcome of the statement that ended a transaction.
fn ended(txn: &Txn, end: Result<(), tokio_postgres::Error>) -> Result<Outcome> {
    match end {
        Ok(()) if txn.commit => Ok(Outcome::Committed),
        Ok(()) => Ok(Outcome::RolledBack),
        Err(e) => match e.as_db_error() {
            Some(d) => Ok(Outcome::Failed(d.code().code().to_string())),
            None => Err(e).context("COMMIT failed without a SQLSTATE"),
        },
    }
}

/// `PREPARE TRANSACTION` under a fresh gid: the gid, or the outcome when
/// PREPARE failed (the flush runs there).
async fn prepare(client: &Client) -> Result<Result<String, Outcome>> {
    let gid = next_gid();
    match client
        .batch_execute(&format!("PREPARE TRANSACTION '{gid}'"))
        .await
    {
        Ok(()) => Ok(Ok(gid)),
        Err(e) => match e.as_db_error() {
            Some(d) => Ok(Err(Outcome::Failed(d.code().code().to_string()))),
            None => Err(e).context("PREPARE TRANSACTION failed without a SQLSTATE"),
        },
    }
}

/// BEGIN and the statements of `txn`; `Some(outcome)` when the transaction
/// already ended (a statement failed), `None` when it is open and ready to
/// end.
async fn run_body(client: &Client, txn: &Txn, check_in_txn: bool) -> Result<Option<Outcome>> {
    client.batch_execute("BEGIN").await?;
    if txn.statement_mode {
        client
            .batch_execute("SET LOCAL pg_tviews.refresh_mode = statement")
            .await?;
    }
    for (i, s) in txn.stmts.iter().enumerate() {
        let result = s.execute(client).await;
        if let Err(e) = result {
            let code = e.as_db_error().map(|d| d.code().code().to_string());
            // After a failed COPY, tokio-postgres's connection can be out of
            // step with the server (the next command then reads "unexpected
            // message from server"): give the connection up; closing it
            // rolls the transaction back, which is the server's abort.
            if matches!(s, Stmt::Copy { .. }) {
                return Ok(Some(Outcome::Broken));
            }
            client.batch_execute("ROLLBACK").await?;
            return match code {
                Some(c) => Ok(Some(Outcome::Failed(c))),
                None => Err(e).context("statement failed without a SQLSTATE"),
            };
        }
        if txn.statement_mode && check_in_txn {
            // A check that fails for a serialization or deadlock reason
            // is the transaction's failure, not a mismatch.
            match assert_exact(client).await {
                Ok(()) => {}
                Err(e) => {
                    let code = e
                        .chain()
                        .find_map(|c| c.downcast_ref::<tokio_postgres::Error>())
                        .and_then(|e| e.as_db_error())
                        .map(|d| d.code().code().to_string());
                    if let Some(code) = code {
                        client.batch_execute("ROLLBACK").await?;
                        return Ok(Some(Outcome::Failed(code)));
                    }
                    return Err(e.context(format!(
                        "refresh_mode = statement: TVIEWs not exact inside the transaction after statement {}",
                        i + 1
                    )));
                }
            }
        }
    }
    Ok(None)
}

/// Settings of one oracle run.
#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    pub txns: usize,
    pub sessions: usize,
}

/// Counts of what a run did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub committed: usize,
    pub rolled_back: usize,
    pub failed: std::collections::BTreeMap<String, usize>,
    pub checks: usize,
    /// TVIEWs created, and definitions the engine refused (by SQLSTATE).
    pub tviews: usize,
    pub refused: std::collections::BTreeMap<String, usize>,
}

impl Report {
    /// Counts one transaction's outcome; true when its connection was lost
    /// (the caller connects again: the server rolled the transaction back).
    pub fn record(&mut self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Committed => self.committed += 1,
            Outcome::RolledBack => self.rolled_back += 1,
            Outcome::Failed(code) => *self.failed.entry(code).or_default() += 1,
            Outcome::Broken => {
                *self.failed.entry("connection lost".into()).or_default() += 1;
                return true;
            }
        }
        false
    }

    /// Adds another run's counts to these.
    pub fn add(&mut self, r: Report) {
        self.committed += r.committed;
        self.rolled_back += r.rolled_back;
        self.checks += r.checks;
        self.tviews += r.tviews;
        for (k, v) in r.refused {
            *self.refused.entry(k).or_default() += v;
        }
        for (k, v) in r.failed {
            *self.failed.entry(k).or_default() += v;
        }
    }
}

/// Sets up a database with the schema and its TVIEWs. TVIEWs that the
/// engine refuses are skipped (they are counted, not failures): the
/// oracle judges what is accepted.
pub async fn setup(
    client: &Client,
    schema: &Schema,
    rng: &mut StdRng,
    report: &mut Report,
) -> Result<Vec<String>> {
    client
        .batch_execute(&schema.ddl())
        .await
        .context("schema")?;
    // Some initial rows.
    let mut next_id = 0;
    for _ in 0..rng.random_range(5..15) {
        let t = Txn {
            stmts: (0..4)
                .map(|_| gen_stmt(rng, schema, &mut next_id))
                .collect(),
            commit: true,
            statement_mode: false,
            two_phase: false,
        };
        for s in &t.stmts {
            let _ = s.execute(client).await;
        }
    }
    let mut accepted = Vec::new();
    for tv in &schema.tviews {
        match client.batch_execute(tv).await {
            Ok(()) => {
                report.tviews += 1;
                accepted.push(tv.clone())
            }
            Err(e) => {
                let code = e
                    .as_db_error()
                    .map(|d| d.code().code().to_string())
                    .unwrap_or_default();
                *report.refused.entry(code.clone()).or_default() += 1;
                // Refused definitions are fine; anything else is a bug.
                if !matches!(
                    code.as_str(),
                    "0A000" | "23505" | "23502" | "42P16" | "42703" | "42P01"
                ) {
                    bail!("creating a TVIEW failed unexpectedly ({code}): {e:?}\n{tv}");
                }
            }
        }
    }
    for (i, sql) in schema.side_effects.iter().enumerate() {
        match client.batch_execute(sql).await {
            Ok(()) => accepted.push(sql.clone()),
            // The TVIEW it is on was refused.
            Err(e)
                if i > 0 && e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
            }
            Err(e) => bail!("a side-effect trigger failed: {e:?}\n{sql}"),
        }
    }
    Ok(accepted)
}

/// One single-session run: every transaction in order, exactness checked
/// after each commit. On a mismatch, the failure is shrunk and reported.
pub async fn run_single(prefix: &str, seed: u64, txns: usize) -> Result<Report> {
    let mut rng = StdRng::seed_from_u64(seed);
    let schema = gen_schema(&mut rng);
    let mut db = Db::fresh(prefix).await?;
    let mut report = Report::default();
    let accepted = setup(&db.client, &schema, &mut rng, &mut report).await?;
    let mut next_id = 10_000;
    let mut log: Vec<Txn> = Vec::new();
    for _ in 0..txns {
        let txn = gen_txn(&mut rng, &schema, &mut next_id);
        let result = run_txn_with(&db.client, &txn, None, true).await;
        log.push(txn);
        let outcome = match result {
            Ok(o) => o,
            Err(e) => {
                let repro = shrink(prefix, seed, &schema, &accepted, &log).await;
                bail!(
                    "seed {seed}: transaction {} failed: {e:#}\n\n-- minimal reproduction ({}):\n{}",
                    log.len(),
                    repro
                        .as_ref()
                        .map(|(n, _)| format!("{n} transactions"))
                        .unwrap_or_else(|e| format!("shrinking failed: {e:#}")),
                    repro
                        .map(|(_, s)| s)
                        .unwrap_or_else(|_| script(seed, &schema, &accepted, &log))
                );
            }
        };
        // A COPY that failed (in statement mode, the refresh at its end can
        // fail it) leaves tokio-postgres out of step: a new connection.
        if report.record(outcome) {
            db.client = db.session().await?;
        }
        if let Err(e) = assert_exact(&db.client).await {
            let repro = shrink(prefix, seed, &schema, &accepted, &log).await;
            bail!(
                "seed {seed}: TVIEW mismatch after transaction {}: {e:#}\n\n-- minimal reproduction ({}):\n{}",
                log.len(),
                repro
                    .as_ref()
                    .map(|(n, _)| format!("{n} transactions"))
                    .unwrap_or_else(|e| format!("shrinking failed: {e:#}")),
                repro.map(|(_, s)| s).unwrap_or_default()
            );
        }
        report.checks += 1;
    }
    Ok(report)
}

/// Replays subsets of the log on fresh databases, dropping transactions
/// while the mismatch persists; returns the count and a psql script.
async fn shrink(
    prefix: &str,
    seed: u64,
    schema: &Schema,
    tviews: &[String],
    log: &[Txn],
) -> Result<(usize, String)> {
    let fails = |txns: Vec<Txn>| async move {
        let db = Db::fresh(&format!("{prefix}_shrink")).await?;
        let mut rng = StdRng::seed_from_u64(seed);
        let _ = gen_schema(&mut rng); // same RNG position as the run
        db.client.batch_execute(&schema.ddl()).await?;
        let init = initial_rows(&mut rng, schema);
        for s in &init {
            let _ = s.execute(&db.client).await;
        }
        for tv in tviews {
            db.client.batch_execute(tv).await?;
        }
        for t in &txns {
            // A mismatch inside a transaction (statement mode) counts too.
            if run_txn_with(&db.client, t, None, true).await.is_err()
                || assert_exact(&db.client).await.is_err()
            {
                return Ok::<bool, anyhow::Error>(true);
            }
        }
        Ok(false)
    };
    let mut current: Vec<Txn> = log.to_vec();
    // Drop chunks, then single transactions, as long as it still fails.
    let mut chunk = current.len() / 2;
    while chunk >= 1 {
        let mut i = 0;
        while i < current.len() {
            let mut candidate = current.clone();
            let end = (i + chunk).min(candidate.len());
            candidate.drain(i..end);
            if fails(candidate.clone()).await? {
                current = candidate;
            } else {
                i += chunk;
            }
        }
        chunk /= 2;
    }
    Ok((current.len(), script(seed, schema, tviews, &current)))
}

/// A psql script replaying `txns` of `seed` on a fresh database.
fn script(seed: u64, schema: &Schema, tviews: &[String], txns: &[Txn]) -> String {
    let mut script = String::new();
    script.push_str("CREATE EXTENSION pg_tviews;\n");
    script.push_str(&schema.ddl());
    let mut rng = StdRng::seed_from_u64(seed);
    let _ = gen_schema(&mut rng);
    for s in initial_rows(&mut rng, schema) {
        script.push_str(&s.to_sql());
        script.push('\n');
    }
    for tv in tviews {
        let _ = writeln!(script, "{tv};");
    }
    for t in txns {
        script.push_str(&t.to_sql());
    }
    script.push_str("SELECT relid, pg_tviews_diff(relid::text) FROM tviews.tview;\n");
    script
}

/// The initial rows `setup` inserts, regenerated from the same RNG state.
fn initial_rows(rng: &mut StdRng, schema: &Schema) -> Vec<Stmt> {
    let mut next_id = 0;
    let mut out = Vec::new();
    for _ in 0..rng.random_range(5..15) {
        for _ in 0..4 {
            out.push(gen_stmt(rng, schema, &mut next_id));
        }
    }
    out
}

/// Prepared transactions across server restarts: one session runs the
/// transactions of `seed` on `cluster` (a cluster of the caller's, which
/// this restarts); about `restarts` of them are made two-phase, prepared,
/// and then the server restarts — fast and immediate (a crash) in turn —
/// with the transaction still prepared, and a new session commits or rolls
/// it back. Every TVIEW must be exact after the restart (the prepared
/// changes are not visible yet) and after COMMIT / ROLLBACK PREPARED, as
/// after every other transaction.
pub async fn run_across_restarts(
    cluster: &mut Cluster,
    seed: u64,
    txns: usize,
    restarts: usize,
) -> Result<Report> {
    let mut rng = StdRng::seed_from_u64(seed);
    let schema = gen_schema(&mut rng);
    let name = format!("oracle_restarts_{seed}");
    cluster.create_database_with_extension(&name)?;
    let mut client = cluster.connect(&name).await?;
    let mut report = Report::default();
    setup(&client, &schema, &mut rng, &mut report).await?;
    // A restart is due every `every` transactions; one whose transaction
    // fails before it is prepared (a constraint, a NULL key) is tried again
    // with the next transaction, and the last `every` transactions are the
    // slack for that.
    let every = (txns / (restarts + 1)).max(1);
    let mut next_id = 10_000;
    let mut done = 0;
    for i in 0..txns {
        let mut txn = gen_txn(&mut rng, &schema, &mut next_id);
        let restart_here = done < restarts && i + 1 >= (done + 1) * every;
        let outcome = if restart_here {
            txn.two_phase = true;
            match run_body(&client, &txn, false).await? {
                Some(outcome) => outcome,
                None => match prepare(&client).await? {
                    Err(outcome) => outcome,
                    Ok(gid) => {
                        drop(client);
                        let mode = if done % 2 == 0 {
                            StopMode::Fast
                        } else {
                            StopMode::Immediate
                        };
                        cluster
                            .restart(mode)
                            .with_context(|| format!("seed {seed}: restart {}", done + 1))?;
                        done += 1;
                        client = cluster.connect(&name).await?;
                        // The prepared transaction keeps its locks: one that
                        // truncated a table blocks every reader of it until
                        // COMMIT PREPARED, so the check waits a while only.
                        client.batch_execute("SET lock_timeout = '2s'").await?;
                        match assert_exact(&client).await {
                            Ok(()) => report.checks += 1,
                            Err(e) if lock_timeout(&e) => {}
                            Err(e) => {
                                return Err(e.context(format!(
                                    "seed {seed}: after restart {done} ({mode:?}) with transaction {} prepared",
                                    i + 1
                                )));
                            }
                        }
                        client.batch_execute("RESET lock_timeout").await?;
                        let how = if txn.commit { "COMMIT" } else { "ROLLBACK" };
                        let end = client
                            .batch_execute(&format!("{how} PREPARED '{gid}'"))
                            .await;
                        ended(&txn, end)?
                    }
                },
            }
        } else {
            run_txn_with(&client, &txn, None, true).await?
        };
        if report.record(outcome) {
            client = cluster.connect(&name).await?;
        }
        assert_exact(&client)
            .await
            .with_context(|| format!("seed {seed}: TVIEW mismatch after transaction {}", i + 1))?;
        report.checks += 1;
    }
    if done < restarts {
        bail!("seed {seed}: only {done} of {restarts} restarts happened in {txns} transactions");
    }
    Ok(report)
}

/// Whether `e` is a lock timeout (SQLSTATE 55P03).
fn lock_timeout(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<tokio_postgres::Error>()
            .and_then(|e| e.as_db_error())
            .is_some_and(|d| d.code().code() == "55P03")
    })
}

/// A concurrent run: `sessions` clients each running their share of the
/// transactions at the same time; a separate session checks exactness
/// after every commit (it sees committed data only).
pub async fn run_concurrent(
    prefix: &str,
    seed: u64,
    txns: usize,
    sessions: usize,
) -> Result<Report> {
    let mut rng = StdRng::seed_from_u64(seed);
    let schema = gen_schema(&mut rng);
    let db = Db::fresh(prefix).await?;
    let mut total = Report::default();
    setup(&db.client, &schema, &mut rng, &mut total).await?;
    let mut handles = Vec::new();
    for s in 0..sessions {
        let mut client = db.session().await?;
        let checker = db.session().await?;
        let cluster = db.cluster;
        let dbname = db.name.clone();
        let schema = schema.clone();
        let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(s as u64 + 1));
        let per = txns / sessions;
        handles.push(tokio::spawn(async move {
            let mut report = Report::default();
            let mut next_id = 100_000 * (s as i64 + 1);
            for i in 0..per {
                let txn = gen_txn(&mut rng, &schema, &mut next_id);
                let outcome = run_txn_with(&client, &txn, Some(&checker), true).await?;
                if report.record(outcome) {
                    client = cluster.connect(&dbname).await?;
                }
                assert_exact_retrying(&checker).await.with_context(|| {
                    format!(
                        "seed {seed}, session {s}, after transaction {i}:\n{}",
                        txn.to_sql()
                    )
                })?;
                report.checks += 1;
            }
            Ok::<Report, anyhow::Error>(report)
        }));
    }
    for h in handles {
        total.add(h.await.context("session task")??);
    }
    assert_exact_retrying(&db.client)
        .await
        .with_context(|| format!("seed {seed}: after all sessions"))?;
    Ok(total)
}
