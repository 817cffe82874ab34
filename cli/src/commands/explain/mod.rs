//! `tviews explain TVIEW`: how a TVIEW is maintained. One report value — the graph
//! around the TVIEW (what it reads, what reads it, cascade depth), each source with the
//! columns that matter and the key path a change takes, the refresh statements, and
//! with `--analyze` their plans and index advice — rendered as a text tree, JSON or
//! dot (STYLE.md 3). `--for DML` is the other question: which keys would this
//! statement refresh ([`dml`]).
//!
//! * [`paths`]: key paths and lookups as the extension writes them;
//! * [`plan`]: plans in, advice out (pure); [`analyze`]: running the statements;
//! * [`render`]: the three renderers; [`dml`]: `--for`.

pub mod analyze;
pub mod dml;
pub mod paths;
pub mod plan;
pub mod render;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use super::graph::{self, Related};
use super::probe::Api;
use crate::conn::ConnTarget;
use crate::failure::{Failure, Outcome};
use crate::output::{Format, Style};

pub const AFTER_HELP: &str = "\
Examples:
  tviews explain tv_product                   sources, key paths, cascade, statements
  tviews explain tv_product --analyze         plans on sample keys, with index advice
  tviews explain --for \"UPDATE tb_review SET rating = 5 WHERE pk_review = 1\"
  tviews explain tv_product --format dot | dot -Tsvg > tv_product.svg

--analyze and --for run statements in a transaction that is always rolled back. --for
also runs the refresh there (not with --no-refresh), to show what cascades; like any
refresh it counts in pg_tviews_stats and takes the value locks of the keys it writes.";

#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct ExplainArgs {
    /// The TVIEW (with --for: only its keys are shown, and it may be left out)
    #[arg(value_name = "TVIEW", required_unless_present = "dml")]
    pub tview: Option<String>,

    /// Also show the statements' plans (generic, and EXPLAIN ANALYZE on sample keys,
    /// rolled back), with warnings about missing indexes
    #[arg(long, conflicts_with = "dml")]
    pub analyze: bool,

    /// With --analyze: how many keys (and start values) to run each statement on
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub sample: u32,

    /// Run DML in a transaction that is rolled back; show the keys it would refresh,
    /// per TVIEW, and through which path
    #[arg(long = "for", value_name = "DML")]
    pub dml: Option<String>,

    /// With --for: only list the keys the statement queues; do not run the refresh
    /// (so no cascade is shown)
    #[arg(long, requires = "dml")]
    pub no_refresh: bool,

    #[command(flatten)]
    pub target: ConnTarget,
}

impl ExplainArgs {
    pub fn check(&self, format: Format) -> Result<(), String> {
        if self.dml.is_some() && format == Format::Dot {
            return Err("--format dot is not available with --for (use table or json)".into());
        }
        Ok(())
    }
}

/// Everything `explain` shows about one TVIEW.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExplainReport {
    pub tview: String,
    pub key: String,
    pub key_type: String,
    /// Longest chain of TVIEWs below it (0: it reads tables only).
    pub depth: i32,
    pub sources: Vec<Source>,
    /// The TVIEWs it reads, and those they read (each subtree shown once).
    pub reads: Vec<Related>,
    /// The TVIEWs that read it, and those that read them: its cascade.
    pub read_by: Vec<Related>,
    pub statements: Vec<Statement>,
    /// `--analyze`.
    pub analysis: Option<analyze::Analysis>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub relation: String,
    /// The source is itself a TVIEW (a cascade).
    pub tview: bool,
    /// The columns the definition reads: a change to another column refreshes nothing.
    pub columns_read: Vec<String>,
    /// How a changed row maps to keys, e.g.
    /// `tb_category.pk_category → tb_product.fk_category → tb_product.pk_product → tv_product.pk_product`.
    pub paths: Vec<String>,
    /// Why any change rebuilds the whole TVIEW, when it does.
    pub full_rebuild: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Statement {
    /// `apply_keys`, `apply_all`, `derive`, `forward` or `reverse`.
    pub kind: String,
    /// For path statements: the source (`schema.relation`) and its path.
    pub source: Option<String>,
    pub path: Option<String>,
    /// What `$1` is: `keys`, `start values`, or nothing.
    pub parameter: Option<String>,
    /// `schema.relation.column` the statement should reach through an index, the first
    /// being where it starts.
    pub lookups: Vec<String>,
    pub sql: String,
}

impl Statement {
    /// What the statement is for, in a few words.
    pub fn purpose(&self) -> String {
        let src = self
            .source
            .as_deref()
            .map(plan::display)
            .unwrap_or_default();
        match self.kind.as_str() {
            "apply_keys" => "recompute and write the rows of the queued keys".into(),
            "apply_all" => "full rebuild: recompute and write every row".into(),
            "derive" => format!("keys from the changed values of {src}"),
            "forward" => format!("value locks along the path from {src}"),
            "reverse" => format!("value locks from the keys back to {src}"),
            other => other.to_string(),
        }
    }
}

/// What `pg_tviews_explain(..., 'json')` returns, the parts used here.
#[derive(Deserialize)]
struct ExtExplain {
    tview: String,
    key: String,
    key_type: String,
    depth: i32,
    sources: Vec<Source>,
}

/// The TVIEW's storage table and key, to read sample keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TviewTable {
    pub name: String,
    pub schema: String,
    pub relname: String,
    pub key_column: String,
}

impl TviewTable {
    pub fn quoted(&self) -> String {
        format!(
            "{}.{}",
            paths::ident(&self.schema),
            paths::ident(&self.relname)
        )
    }
}

/// Every TVIEW's table and key, by displayed name.
pub async fn tview_tables(
    client: &Client,
) -> Result<std::collections::BTreeMap<String, TviewTable>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT tviews.display_name(t.relid::oid), n.nspname::text, c.relname::text, \
                    t.key_column::text \
             FROM tviews.tview t JOIN pg_class c ON c.oid = t.relid \
             JOIN pg_namespace n ON n.oid = c.relnamespace",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let t = TviewTable {
                name: r.try_get(0)?,
                schema: r.try_get(1)?,
                relname: r.try_get(2)?,
                key_column: r.try_get(3)?,
            };
            Ok((t.name.clone(), t))
        })
        .collect()
}

pub async fn gather(client: &Client, api: &Api, tview: &str) -> Result<ExplainReport, Failure> {
    let json: String = client
        .query_one(
            &format!("SELECT {}($1, 'json')", api.object("pg_tviews_explain")),
            &[&tview],
        )
        .await?
        .try_get(0)?;
    let ext: ExtExplain = serde_json::from_str(&json)
        .context("pg_tviews_explain() returned JSON this version of tviews does not read")?;
    let dag = graph::load(client, api).await?;
    let rows = client
        .query(
            &format!(
                "SELECT kind::text, source::text, path::text, sql::text, lookups::text[] \
                 FROM {}($1)",
                api.object("pg_tviews_statements")
            ),
            &[&tview],
        )
        .await?;
    let mut statements = rows
        .iter()
        .map(|r| {
            let kind: String = r.try_get(0)?;
            Ok(Statement {
                parameter: parameter(&kind),
                kind,
                source: r.try_get(1)?,
                path: r.try_get(2)?,
                sql: r.try_get(3)?,
                lookups: r.try_get(4)?,
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()?;
    complete_recompute_lookups(&mut statements, &ext.sources);
    Ok(ExplainReport {
        reads: dag.upstream(&ext.tview),
        read_by: dag.downstream(&ext.tview),
        tview: ext.tview,
        key: ext.key,
        key_type: ext.key_type,
        depth: ext.depth,
        sources: ext.sources,
        statements,
        analysis: None,
    })
}

fn parameter(kind: &str) -> Option<String> {
    match kind {
        "apply_keys" | "reverse" => Some("keys".into()),
        "derive" | "forward" => Some("start values".into()),
        _ => None,
    }
}

/// The recompute of keys (`apply_keys`) reads every keyed source through its path
/// walked back from the key; `pg_tviews_statements` lists the lookups of join paths
/// only, so a source whose column maps straight to the key (a correlated subquery, a
/// LEFT JOIN on the key) is added here from its path.
pub fn complete_recompute_lookups(statements: &mut [Statement], sources: &[Source]) {
    let Some(apply) = statements.iter_mut().find(|s| s.kind == "apply_keys") else {
        return;
    };
    for p in sources.iter().flat_map(|s| &s.paths) {
        for lookup in paths::recompute_lookups(p) {
            if !apply.lookups.contains(&lookup) {
                apply.lookups.push(lookup);
            }
        }
    }
}

pub async fn run(client: &Client, args: &ExplainArgs, style: Style) -> Result<Outcome, Failure> {
    let api = Api::require(client).await?;
    if let Some(statement) = &args.dml {
        let report = dml::gather(
            client,
            &api,
            statement,
            args.tview.as_deref(),
            !args.no_refresh,
        )
        .await?;
        return Ok(dml::outcome(&report, style)?);
    }
    let Some(tview) = args.tview.as_deref() else {
        return Err(Failure::Other(anyhow::anyhow!("name the TVIEW to explain")));
    };
    let mut report = gather(client, &api, tview).await?;
    if args.analyze {
        report.analysis = Some(analyze::gather(client, &report, args.sample).await?);
    }
    Ok(Outcome::ok(render::render(&report, style)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_sources_join_the_recompute_lookups() {
        let mut statements = vec![Statement {
            kind: "apply_keys".into(),
            source: None,
            path: None,
            parameter: parameter("apply_keys"),
            lookups: vec![
                "public.tb_product.pk_product".into(),
                "public.tb_category.pk_category".into(),
            ],
            sql: String::new(),
        }];
        let source = |rel: &str, path: &str| Source {
            relation: rel.into(),
            tview: false,
            columns_read: vec![],
            paths: vec![path.into()],
            full_rebuild: None,
        };
        complete_recompute_lookups(
            &mut statements,
            &[
                source(
                    "tb_product",
                    "tb_product.pk_product → tv_product.pk_product",
                ),
                source("tb_review", "tb_review.fk_product → tv_product.pk_product"),
            ],
        );
        assert_eq!(
            statements[0].lookups,
            [
                "public.tb_product.pk_product",
                "public.tb_category.pk_category",
                "public.tb_review.fk_product"
            ]
        );
    }
}
