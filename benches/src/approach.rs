//! The ways of keeping the read model current that the benchmark compares. Each lives in its
//! own database, created from the same template (identical data).

use serde::{Deserialize, Serialize};

pub const SCHEMA_SQL: &str = include_str!("../sql/schema.sql");
pub const DEFINITIONS_SQL: &str = include_str!("../sql/definitions.sql");
const TVIEWS_SQL: &str = include_str!("../sql/tviews.sql");
const TRIGGERS_ROW_SQL: &str = include_str!("../sql/triggers_row.sql");
const TRIGGERS_STMT_SQL: &str = include_str!("../sql/triggers_stmt.sql");
const MATVIEW_SQL: &str = include_str!("../sql/matview.sql");
const PG_IVM_SQL: &str = include_str!("../sql/pg_ivm.sql");
const CTAS_SQL: &str = include_str!("../sql/ctas.sql");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Approach {
    /// Plain DML on the sources, no read model: the floor.
    Plain,
    Tviews,
    TriggersRow,
    TriggersStmt,
    Matview,
    MatviewConcurrently,
    PgIvm,
    /// Plain DML in the second cluster, which preloads pg_tviews: the control of the statistics
    /// comparison (the same writes where pg_tviews does no work).
    PlainPreloaded,
    /// pg_tviews in the second cluster, with the library in `shared_preload_libraries`
    /// (shared-memory statistics on): compared with [`Approach::Tviews`] when the main cluster
    /// does not preload it.
    TviewsPreloaded,
}

/// A read-model document table (or view) and the definition it must equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelTable {
    pub table: &'static str,
    pub definition: &'static str,
    /// Its columns, in the definition's order.
    pub columns: &'static str,
}

/// The three documents of the read model, by level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Doc {
    Review,
    Product,
    Category,
}

impl Doc {
    pub const ALL: [Doc; 3] = [Doc::Review, Doc::Product, Doc::Category];

    pub fn name(self) -> &'static str {
        match self {
            Doc::Review => "review",
            Doc::Product => "product",
            Doc::Category => "category",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Doc::Review => "pk_review",
            Doc::Product => "pk_product",
            Doc::Category => "pk_category",
        }
    }

    fn columns(self) -> &'static str {
        match self {
            Doc::Review => "pk_review, fk_product, data",
            Doc::Product => "pk_product, fk_category, data",
            Doc::Category => "pk_category, data",
        }
    }
}

impl Approach {
    pub const ALL: [Approach; 9] = [
        Approach::Plain,
        Approach::Tviews,
        Approach::TriggersRow,
        Approach::TriggersStmt,
        Approach::Matview,
        Approach::MatviewConcurrently,
        Approach::PgIvm,
        Approach::PlainPreloaded,
        Approach::TviewsPreloaded,
    ];

    /// The approaches of the statistics comparison, which live in the second (preloading)
    /// cluster.
    pub const PRELOADED: [Approach; 2] = [Approach::PlainPreloaded, Approach::TviewsPreloaded];

    /// Whether this approach lives in the second cluster, the one with pg_tviews in
    /// `shared_preload_libraries`.
    pub fn is_preloaded_twin(self) -> bool {
        Approach::PRELOADED.contains(&self)
    }

    /// The approach it measures: a preloaded twin's is its counterpart in the main cluster.
    pub fn base(self) -> Approach {
        match self {
            Approach::PlainPreloaded => Approach::Plain,
            Approach::TviewsPreloaded => Approach::Tviews,
            other => other,
        }
    }

    /// The preloaded twin of plain DML and pg_tviews.
    pub fn preloaded_twin(self) -> Option<Approach> {
        match self {
            Approach::Plain => Some(Approach::PlainPreloaded),
            Approach::Tviews => Some(Approach::TviewsPreloaded),
            _ => None,
        }
    }

    pub fn id(self) -> &'static str {
        match self {
            Approach::Plain => "plain",
            Approach::Tviews => "tviews",
            Approach::TriggersRow => "triggers_row",
            Approach::TriggersStmt => "triggers_stmt",
            Approach::Matview => "matview",
            Approach::MatviewConcurrently => "matview_concurrently",
            Approach::PgIvm => "pg_ivm",
            Approach::PlainPreloaded => "plain_preloaded",
            Approach::TviewsPreloaded => "tviews_preloaded",
        }
    }

    pub fn from_id(id: &str) -> Option<Approach> {
        Approach::ALL.into_iter().find(|a| a.id() == id)
    }

    pub fn label(self) -> &'static str {
        match self {
            Approach::Plain => "plain DML",
            Approach::Tviews => "pg_tviews",
            Approach::TriggersRow => "triggers (row)",
            Approach::TriggersStmt => "triggers (statement)",
            Approach::Matview => "REFRESH MATVIEW",
            Approach::MatviewConcurrently => "REFRESH CONCURRENTLY",
            Approach::PgIvm => "pg_ivm",
            Approach::PlainPreloaded => "plain DML, preloaded",
            Approach::TviewsPreloaded => "pg_tviews, preloaded",
        }
    }

    pub fn database(self) -> String {
        format!("bench_{}", self.id())
    }

    pub fn is_matview(self) -> bool {
        matches!(self, Approach::Matview | Approach::MatviewConcurrently)
    }

    pub fn is_trigger(self) -> bool {
        matches!(self, Approach::TriggersRow | Approach::TriggersStmt)
    }

    /// The script that builds this approach's read model from the loaded sources (also what
    /// "initial creation" times). `Plain` has no read model; its creation baseline is
    /// `CREATE TABLE AS` of the definitions.
    pub fn setup_sql(self) -> &'static str {
        match self {
            Approach::Plain | Approach::PlainPreloaded => "",
            Approach::Tviews | Approach::TviewsPreloaded => TVIEWS_SQL,
            Approach::TriggersRow => TRIGGERS_ROW_SQL,
            Approach::TriggersStmt => TRIGGERS_STMT_SQL,
            Approach::Matview | Approach::MatviewConcurrently => MATVIEW_SQL,
            Approach::PgIvm => PG_IVM_SQL,
        }
    }

    /// The creation script timed against `CREATE TABLE AS`.
    pub fn creation_sql(self) -> &'static str {
        match self {
            Approach::Plain | Approach::PlainPreloaded => CTAS_SQL,
            other => other.setup_sql(),
        }
    }

    /// Drops what [`Approach::creation_sql`] created.
    pub fn teardown_sql(self) -> &'static str {
        match self {
            Approach::Plain | Approach::PlainPreloaded => {
                "DROP TABLE ctas_category, ctas_product, ctas_review"
            }
            Approach::Tviews | Approach::TviewsPreloaded => {
                "DROP TABLE tv_category, tv_product, tv_review"
            }
            Approach::TriggersRow | Approach::TriggersStmt => {
                "DO $$ DECLARE f regprocedure; BEGIN \
                   FOR f IN SELECT p.oid::regprocedure FROM pg_proc p \
                            WHERE p.proname LIKE 'hw\\_%' AND p.pronamespace = 'public'::regnamespace \
                   LOOP EXECUTE 'DROP FUNCTION ' || f || ' CASCADE'; END LOOP; END $$; \
                 DROP TABLE hw_category, hw_product, hw_review"
            }
            Approach::Matview | Approach::MatviewConcurrently => {
                "DROP MATERIALIZED VIEW mv_category, mv_product, mv_review"
            }
            Approach::PgIvm => {
                "DROP VIEW ivm_category, ivm_product; \
                 DROP TABLE ivm_review, ivm_product_base, ivm_review_stats; \
                 DROP FUNCTION ivm_review_doc, ivm_product_doc"
            }
        }
    }

    /// Where this approach keeps document `doc` (None for plain DML).
    pub fn model(self, doc: Doc) -> Option<ModelTable> {
        let prefix = match self {
            Approach::Plain | Approach::PlainPreloaded => return None,
            Approach::Tviews | Approach::TviewsPreloaded => "tv_",
            Approach::TriggersRow | Approach::TriggersStmt => "hw_",
            Approach::Matview | Approach::MatviewConcurrently => "mv_",
            Approach::PgIvm => "ivm_",
        };
        let table = match (prefix, doc) {
            ("tv_", Doc::Review) => "tv_review",
            ("tv_", Doc::Product) => "tv_product",
            ("tv_", Doc::Category) => "tv_category",
            ("hw_", Doc::Review) => "hw_review",
            ("hw_", Doc::Product) => "hw_product",
            ("hw_", Doc::Category) => "hw_category",
            ("mv_", Doc::Review) => "mv_review",
            ("mv_", Doc::Product) => "mv_product",
            ("mv_", Doc::Category) => "mv_category",
            (_, Doc::Review) => "ivm_review",
            (_, Doc::Product) => "ivm_product",
            (_, Doc::Category) => "ivm_category",
        };
        Some(ModelTable {
            table,
            definition: match doc {
                Doc::Review => "def_review",
                Doc::Product => "def_product",
                Doc::Category => "def_category",
            },
            columns: doc.columns(),
        })
    }

    /// What a read of document `doc` selects from: the stored documents, or the definition
    /// itself for plain DML (computing it on every read).
    pub fn read_source(self, doc: Doc) -> &'static str {
        match self.model(doc) {
            Some(m) => m.table,
            None => match doc {
                Doc::Review => "def_review",
                Doc::Product => "def_product",
                Doc::Category => "def_category",
            },
        }
    }

    /// The statements that bring the materialized views affected by a change to `docs` up to
    /// date (mv_category last: it reads mv_product). Empty for other approaches.
    pub fn refresh_sql(self, docs: &[Doc]) -> String {
        let concurrently = match self {
            Approach::Matview => "",
            Approach::MatviewConcurrently => "CONCURRENTLY ",
            _ => return String::new(),
        };
        Doc::ALL
            .iter()
            .filter(|d| docs.contains(d))
            .map(|d| format!("REFRESH MATERIALIZED VIEW {concurrently}mv_{};", d.name()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Rebuilds the read model from the sources after a failed check, so that later
    /// measurements start from an exact state again (the failed run stays void).
    pub fn repair_sql(self) -> &'static str {
        match self {
            Approach::Plain | Approach::PlainPreloaded => "",
            Approach::Tviews | Approach::TviewsPreloaded => {
                "SELECT pg_tviews_refresh('tv_review'); SELECT pg_tviews_refresh('tv_product'); \
                 SELECT pg_tviews_refresh('tv_category')"
            }
            Approach::TriggersRow | Approach::TriggersStmt => {
                "BEGIN; \
                 DELETE FROM hw_review; INSERT INTO hw_review SELECT * FROM def_review; \
                 DELETE FROM hw_product; INSERT INTO hw_product SELECT * FROM def_product; \
                 DELETE FROM hw_category; INSERT INTO hw_category SELECT * FROM def_category; \
                 COMMIT"
            }
            Approach::Matview | Approach::MatviewConcurrently => {
                "REFRESH MATERIALIZED VIEW mv_review; REFRESH MATERIALIZED VIEW mv_product; \
                 REFRESH MATERIALIZED VIEW mv_category"
            }
            Approach::PgIvm => {
                "SELECT pgivm.refresh_immv('ivm_review', true); \
                 SELECT pgivm.refresh_immv('ivm_product_base', true); \
                 SELECT pgivm.refresh_immv('ivm_review_stats', true)"
            }
        }
    }
}

/// Counts the rows in which `model` and its definition differ, both ways, comparing each row's
/// text (`EXCEPT ALL` on `ROW(...)::text`).
pub fn diff_sql(model: &ModelTable) -> String {
    let (t, d, c) = (model.table, model.definition, model.columns);
    format!(
        "SELECT count(*) FROM ((SELECT ROW({c})::text FROM {t} EXCEPT ALL SELECT ROW({c})::text FROM {d}) \
         UNION ALL (SELECT ROW({c})::text FROM {d} EXCEPT ALL SELECT ROW({c})::text FROM {t})) x"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for a in Approach::ALL {
            assert_eq!(Approach::from_id(a.id()), Some(a));
        }
    }

    #[test]
    fn refresh_follows_the_cascade_order() {
        assert_eq!(
            Approach::MatviewConcurrently.refresh_sql(&[Doc::Category, Doc::Product]),
            "REFRESH MATERIALIZED VIEW CONCURRENTLY mv_product; REFRESH MATERIALIZED VIEW CONCURRENTLY mv_category;"
        );
        assert_eq!(Approach::Tviews.refresh_sql(&Doc::ALL), "");
    }

    #[test]
    fn diff_compares_both_ways() {
        let m = Approach::TriggersRow.model(Doc::Category).unwrap();
        assert_eq!(
            diff_sql(&m),
            "SELECT count(*) FROM ((SELECT ROW(pk_category, data)::text FROM hw_category EXCEPT ALL \
             SELECT ROW(pk_category, data)::text FROM def_category) UNION ALL (SELECT ROW(pk_category, data)::text \
             FROM def_category EXCEPT ALL SELECT ROW(pk_category, data)::text FROM hw_category)) x"
        );
        assert_eq!(Approach::Plain.model(Doc::Review), None);
        assert_eq!(Approach::Plain.read_source(Doc::Product), "def_product");
    }

    /// The benchmark's read model is the demo's: the TVIEW definitions of demo/schema.sql
    /// appear verbatim in the benchmark's tviews.sql, and the source tables are the same.
    #[test]
    fn definitions_match_the_demo() {
        let demo = include_str!("../../demo/schema.sql");
        let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let statements = |sql: &str| -> Vec<String> {
            let code: Vec<&str> = sql.lines().filter(|l| !l.starts_with("--")).collect();
            code.join("\n")
                .split(';')
                .map(norm)
                .filter(|s| !s.is_empty())
                .collect()
        };
        let demo_n = norm(demo);
        let tviews: Vec<String> = statements(TVIEWS_SQL)
            .into_iter()
            .filter(|s| s.starts_with("CREATE TABLE tv_"))
            .collect();
        assert_eq!(tviews.len(), 3);
        for stmt in tviews.iter().chain(&statements(SCHEMA_SQL)) {
            assert!(
                demo_n.contains(stmt.as_str()),
                "not in demo/schema.sql: {stmt}"
            );
        }
        // The plain views are the same definitions.
        let defs = norm(DEFINITIONS_SQL);
        for stmt in &tviews {
            let as_view = stmt
                .replacen("CREATE TABLE tv_", "CREATE VIEW def_", 1)
                .replace("FROM tv_product", "FROM def_product");
            assert!(defs.contains(&as_view), "not in definitions.sql: {as_view}");
        }
    }
}
