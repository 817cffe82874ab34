//! Catalog facts the server supplies about the objects a definition uses.
//!
//! `ext` reads them with one query per kind (relations, functions,
//! operators, types) after [`crate::node`] told it which OIDs appear in the
//! definition; tests build them by hand or load them from JSON fixtures.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub type Oid = u32;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub relations: BTreeMap<Oid, Relation>,
    pub functions: BTreeMap<Oid, Function>,
    pub operators: BTreeMap<Oid, Operator>,
    pub types: BTreeMap<Oid, Type>,
    /// Stored query trees (`pg_rewrite.ev_action`) of the views a definition
    /// reads, so they can be expanded like the server's rewriter does.
    pub view_queries: BTreeMap<Oid, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Relation {
    pub oid: Oid,
    pub schema: String,
    pub name: String,
    /// `pg_class.relkind`: `r` table, `p` partitioned table, `v` view,
    /// `m` materialized view, `f` foreign table, ...
    pub kind: char,
    /// Columns by attribute number (index 0 is attnum 1); dropped columns
    /// keep their slot with `dropped = true`.
    pub columns: Vec<Column>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    pub type_oid: Oid,
    /// `format_type(oid, NULL)` under the maintenance search_path: a type
    /// name usable in a cast, qualified when it is not in pg_catalog.
    pub type_name: String,
    #[serde(default)]
    pub not_null: bool,
    #[serde(default)]
    pub dropped: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Function {
    pub schema: String,
    pub name: String,
    /// `pg_proc.provolatile`: `i`, `s` or `v`.
    pub volatility: char,
    pub nargs: u16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operator {
    pub schema: String,
    pub name: String,
    /// A btree equality operator (strategy 3) or a hashable one: `a = b`
    /// with it means the two values are the same for joining purposes.
    pub equality: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Type {
    pub name: String,
}

impl Relation {
    pub fn column(&self, attnum: i64) -> Option<&Column> {
        let idx = usize::try_from(attnum.checked_sub(1)?).ok()?;
        self.columns.get(idx).filter(|c| !c.dropped)
    }

    pub fn attnum_of(&self, name: &str) -> Option<i64> {
        self.columns
            .iter()
            .position(|c| !c.dropped && c.name == name)
            .map(|i| i as i64 + 1)
    }

    pub fn qualified(&self) -> String {
        crate::sql::qualified(&self.schema, &self.name)
    }

    pub fn display_name(&self) -> String {
        if self.schema == "public" {
            self.name.clone()
        } else {
            format!("{}.{}", self.schema, self.name)
        }
    }
}

/// OIDs a definition references, to be resolved into a [`Catalog`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Referenced {
    pub relations: std::collections::BTreeSet<Oid>,
    pub functions: std::collections::BTreeSet<Oid>,
    pub operators: std::collections::BTreeSet<Oid>,
    pub types: std::collections::BTreeSet<Oid>,
}

impl Referenced {
    /// Collects every OID of interest in a node tree.
    pub fn collect(tree: &crate::node::Value) -> Referenced {
        let mut r = Referenced::default();
        tree.walk(&mut |n| {
            let oid = |field: &str, set: &mut std::collections::BTreeSet<Oid>| {
                if let Some(v) = n.uint(field).filter(|v| *v != 0) {
                    set.insert(v);
                }
            };
            match n.tag.as_str() {
                "RANGETBLENTRY" if n.int("rtekind") == Some(0) => oid("relid", &mut r.relations),
                "FUNCEXPR" => oid("funcid", &mut r.functions),
                "AGGREF" => oid("aggfnoid", &mut r.functions),
                "WINDOWFUNC" => oid("winfnoid", &mut r.functions),
                "OPEXPR" | "DISTINCTEXPR" | "NULLIFEXPR" | "SCALARARRAYOPEXPR" => {
                    oid("opno", &mut r.operators);
                    oid("opfuncid", &mut r.functions);
                }
                "VAR" => oid("vartype", &mut r.types),
                _ => {}
            }
        });
        r
    }
}
