//! Names as the extension writes them: key paths (`tb_user.pk_user → tb_post.fk_user →
//! tv_post.pk_post`, relations in `public` without their schema) and index lookups
//! (`schema.relation.column`). Pure parsing, and the `CREATE INDEX` that serves a
//! lookup, quoted in Rust.

use postgres_protocol::escape::escape_identifier;
use serde::Serialize;

/// One `relation.column` element of a key path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// As displayed: `tb_post`, or `app.tb_post` outside `public`.
    pub relation: String,
    pub column: String,
    /// `column[]`: the elements of an array column.
    pub array: bool,
}

/// The elements of a key path, in order (the last is the TVIEW's key).
pub fn parse_path(path: &str) -> Vec<Step> {
    path.split(" → ")
        .filter_map(|elem| {
            let (relation, column) = elem.trim().rsplit_once('.')?;
            let (column, array) = match column.strip_suffix("[]") {
                Some(c) => (c, true),
                None => (column, false),
            };
            Some(Step {
                relation: relation.to_string(),
                column: column.to_string(),
                array,
            })
        })
        .collect()
}

/// A displayed relation name with its schema: `tb_post` → `public.tb_post`.
pub fn qualified(relation: &str) -> String {
    if relation.contains('.') {
        relation.to_string()
    } else {
        format!("public.{relation}")
    }
}

/// What the recompute of a key reads along a path, walking it back from the TVIEW: in
/// each relation of the path, the column the walk arrives by (the last element of that
/// relation), as `schema.relation.column`. For `tb_user.pk_user → tb_post.fk_user →
/// tv_post.pk_post`: `public.tb_post.fk_user`, then `public.tb_user.pk_user`.
pub fn recompute_lookups(path: &str) -> Vec<String> {
    let steps = parse_path(path);
    let Some((_, hops)) = steps.split_last() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, step) in hops.iter().enumerate() {
        let last_of_relation = hops
            .get(i + 1)
            .is_none_or(|next| next.relation != step.relation);
        if last_of_relation {
            out.push(format!("{}.{}", qualified(&step.relation), step.column));
        }
    }
    out.reverse();
    out
}

/// `schema.relation.column`, as `pg_tviews_statements` lists the lookups.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Lookup {
    pub schema: String,
    pub table: String,
    pub column: String,
}

impl Lookup {
    pub fn parse(text: &str) -> Option<Lookup> {
        let (schema, rest) = text.split_once('.')?;
        let (table, column) = rest.rsplit_once('.')?;
        Some(Lookup {
            schema: schema.to_string(),
            table: table.to_string(),
            column: column.to_string(),
        })
    }

    /// `schema.table`, unquoted, as in messages.
    pub fn relation(&self) -> String {
        format!("{}.{}", self.schema, self.table)
    }

    /// `"schema"."table"` where needed: for SQL and `to_regclass`.
    pub fn quoted_relation(&self) -> String {
        format!("{}.{}", ident(&self.schema), ident(&self.table))
    }

    pub fn quoted_column(&self) -> String {
        ident(&self.column)
    }

    /// The index that serves the lookup: btree, or GIN for an array column (the
    /// statements look arrays up with `&&`).
    pub fn create_index(&self, array: bool) -> String {
        let using = if array { "USING gin " } else { "" };
        format!(
            "CREATE INDEX ON {} {using}({});",
            self.quoted_relation(),
            self.quoted_column()
        )
    }
}

impl std::fmt::Display for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.schema, self.table, self.column)
    }
}

/// Words that cannot be column or table names unquoted (PostgreSQL's reserved
/// keywords; a non-reserved keyword such as `name` is fine bare).
const RESERVED: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "current_catalog",
    "current_date",
    "current_role",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "from",
    "grant",
    "group",
    "having",
    "in",
    "initially",
    "intersect",
    "into",
    "lateral",
    "leading",
    "limit",
    "localtime",
    "localtimestamp",
    "not",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "placing",
    "primary",
    "references",
    "returning",
    "select",
    "session_user",
    "some",
    "symmetric",
    "table",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "when",
    "where",
    "window",
    "with",
];

/// An identifier as a person would type it: bare when it can be, quoted otherwise.
pub fn ident(name: &str) -> String {
    let simple = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if simple && !RESERVED.contains(&name) {
        name.to_string()
    } else {
        escape_identifier(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_into_steps() {
        let p = parse_path(
            "tb_category.pk_category → tb_product.fk_category → tb_product.pk_product → tv_product.pk_product",
        );
        assert_eq!(p.len(), 4);
        assert_eq!(p[1].relation, "tb_product");
        assert_eq!(p[1].column, "fk_category");
        let p = parse_path("app.tb_tag.pk_tag → tb_post.tag_ids[] → tv_post.pk_post");
        assert_eq!(p[0].relation, "app.tb_tag");
        assert!(p[1].array && p[1].column == "tag_ids");
    }

    #[test]
    fn the_recompute_walks_the_path_back() {
        assert_eq!(
            recompute_lookups(
                "tb_category.pk_category → tb_product.fk_category → tb_product.pk_product → tv_product.pk_product"
            ),
            [
                "public.tb_product.pk_product",
                "public.tb_category.pk_category"
            ]
        );
        assert_eq!(
            recompute_lookups("tb_review.fk_product → tv_product.pk_product"),
            ["public.tb_review.fk_product"]
        );
        assert_eq!(
            recompute_lookups("tv_product.fk_category → tv_category.pk_category"),
            ["public.tv_product.fk_category"]
        );
        assert!(recompute_lookups("").is_empty());
    }

    #[test]
    fn lookups_and_their_index() {
        let l = Lookup::parse("public.tb_review.fk_product").unwrap();
        assert_eq!(l.relation(), "public.tb_review");
        assert_eq!(
            l.create_index(false),
            "CREATE INDEX ON public.tb_review (fk_product);"
        );
        let l = Lookup::parse("My Schema.order.tag ids").unwrap();
        assert_eq!(
            l.create_index(true),
            "CREATE INDEX ON \"My Schema\".\"order\" USING gin (\"tag ids\");"
        );
        assert_eq!(Lookup::parse("nodots"), None);
    }
}
