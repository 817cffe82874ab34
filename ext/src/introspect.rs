//! Reads a TVIEW's definition from the server for `core`: the backing
//! view's analysed query tree (`pg_rewrite.ev_action`), the trees of views
//! it reads, and catalog facts about every relation, function, operator
//! and type they mention.

use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use tviews_core::TviewError;
use tviews_core::catalog::{Catalog, Referenced};
use tviews_core::node::{self, Value};

use crate::spi;

const TREE_SQL: &str = "SELECT ev_action::pg_catalog.text FROM pg_catalog.pg_rewrite \
     WHERE ev_class = $1 AND rulename = '_RETURN'";

/// Catalog facts as one JSON document, deserialised straight into
/// [`Catalog`]. OIDs travel as bigint so JSON has numbers.
const CATALOG_SQL: &str = r#"
SELECT pg_catalog.json_build_object(
  'relations', coalesce((SELECT pg_catalog.json_object_agg(c.oid, pg_catalog.json_build_object(
        'oid', c.oid::pg_catalog.int8, 'schema', n.nspname, 'name', c.relname, 'kind', c.relkind,
        'columns', coalesce((SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
              'name', a.attname, 'type_oid', a.atttypid::pg_catalog.int8,
              'type_name', pg_catalog.format_type(a.atttypid, NULL),
              'not_null', a.attnotnull, 'dropped', a.attisdropped) ORDER BY a.attnum)
            FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0), '[]')))
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid = ANY ($1)), '{}'),
  'functions', coalesce((SELECT pg_catalog.json_object_agg(p.oid, pg_catalog.json_build_object(
        'schema', n.nspname, 'name', p.proname, 'volatility', p.provolatile, 'nargs', p.pronargs))
      FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
      WHERE p.oid = ANY ($2)), '{}'),
  'operators', coalesce((SELECT pg_catalog.json_object_agg(o.oid, pg_catalog.json_build_object(
        'schema', n.nspname, 'name', o.oprname,
        'equality', o.oprcanhash OR o.oprcanmerge OR EXISTS (SELECT FROM pg_catalog.pg_amop am
            WHERE am.amopopr = o.oid AND am.amopstrategy = 3 AND am.amopmethod = 403)))
      FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
      WHERE o.oid = ANY ($3)), '{}'),
  'types', coalesce((SELECT pg_catalog.json_object_agg(t.oid, pg_catalog.json_build_object(
        'name', pg_catalog.format_type(t.oid, NULL)))
      FROM pg_catalog.pg_type t WHERE t.oid = ANY ($4)), '{}'),
  'view_queries', '{}'::pg_catalog.json
)::pg_catalog.text
"#;

/// The backing view's tree and the catalog facts it needs.
pub fn definition(
    client: &mut SpiClient<'_>,
    view: pg_sys::Oid,
) -> Result<(Value, Catalog), TviewError> {
    let tree = read_tree(client, view)?;
    let mut refs = Referenced::collect(&tree);
    let mut catalog = Catalog::default();
    // Expand nested views until no new one appears (each round reads the
    // facts of what is known so far, finds views among the relations, and
    // adds their trees' references).
    loop {
        catalog = fetch_catalog(client, &refs)?.merge_views(catalog);
        let new_views: Vec<u32> = catalog
            .relations
            .values()
            .filter(|r| {
                r.kind == 'v'
                    && r.oid != view.to_u32()
                    && !catalog.view_queries.contains_key(&r.oid)
            })
            .map(|r| r.oid)
            .collect();
        if new_views.is_empty() {
            return Ok((tree, catalog));
        }
        for v in new_views {
            let text = tree_text(client, pg_sys::Oid::from(v))?;
            let t = node::parse(&text).map_err(|e| TviewError::NodeTree(e.to_string()))?;
            let more = Referenced::collect(&t);
            refs.relations.extend(more.relations);
            refs.functions.extend(more.functions);
            refs.operators.extend(more.operators);
            refs.types.extend(more.types);
            catalog.view_queries.insert(v, text);
        }
    }
}

trait MergeViews {
    fn merge_views(self, previous: Catalog) -> Catalog;
}

impl MergeViews for Catalog {
    /// Keeps the view trees already fetched across catalog rounds.
    fn merge_views(mut self, previous: Catalog) -> Catalog {
        self.view_queries = previous.view_queries;
        self
    }
}

fn tree_text(client: &mut SpiClient<'_>, view: pg_sys::Oid) -> Result<String, TviewError> {
    spi::one(client, TREE_SQL, &[spi::oid_arg(view)])
        .ok_or_else(|| TviewError::Internal(format!("no query tree for view {}", view.to_u32())))
}

fn read_tree(client: &mut SpiClient<'_>, view: pg_sys::Oid) -> Result<Value, TviewError> {
    let text = tree_text(client, view)?;
    node::parse(&text).map_err(|e| TviewError::NodeTree(e.to_string()))
}

fn oid_array(set: &std::collections::BTreeSet<u32>) -> pgrx::datum::DatumWithOid<'static> {
    let v: Vec<pg_sys::Oid> = set.iter().map(|o| pg_sys::Oid::from(*o)).collect();
    pgrx::datum::DatumWithOid::from(v)
}

fn fetch_catalog(client: &mut SpiClient<'_>, refs: &Referenced) -> Result<Catalog, TviewError> {
    let args = [
        oid_array(&refs.relations),
        oid_array(&refs.functions),
        oid_array(&refs.operators),
        oid_array(&refs.types),
    ];
    let json = spi::one(client, CATALOG_SQL, &args)
        .ok_or_else(|| TviewError::Internal("catalog query returned nothing".into()))?;
    serde_json::from_str(&json).map_err(|e| TviewError::Internal(format!("catalog facts: {e}")))
}
