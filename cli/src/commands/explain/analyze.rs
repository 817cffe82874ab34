//! `explain --analyze`: prepares each refresh statement with `plan_cache_mode =
//! force_generic_plan`, shows its generic plan, runs it with `EXPLAIN (ANALYZE,
//! BUFFERS)` on a sample of keys (or start values), all in one transaction that is
//! rolled back (each statement behind its own savepoint: `apply_keys` writes), and
//! checks every lookup column against `pg_index`.

use std::collections::BTreeMap;

use postgres_protocol::escape::escape_literal;
use serde::Serialize;
use tokio_postgres::Client;

use super::paths::{Lookup, ident};
use super::plan::{self, LookupFacts, StatementPlan, Warning};
use super::{ExplainReport, tview_tables};
use crate::failure::{Failure, ServerError};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Analysis {
    /// The TVIEW keys `apply_keys` and `reverse` ran on.
    pub sample_keys: Vec<String>,
    /// `apply_keys` could be run: it writes the TVIEW, which only a refresh or a
    /// superuser with `pg_tviews.allow_direct_writes` may do.
    pub direct_writes: bool,
    pub statements: Vec<StatementPlan>,
    /// The catalog's facts about each lookup column, by `schema.relation.column`.
    pub lookups: BTreeMap<String, LookupFacts>,
    pub warnings: Vec<Warning>,
}

/// `{"a","b"}`: a text[] literal's contents, each element quoted.
pub fn array_literal(values: &[String]) -> String {
    let elems: Vec<String> = values
        .iter()
        .map(|v| format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{{{}}}", elems.join(","))
}

/// `('{...}'::text[])`: the argument list of `EXECUTE`. EXPLAIN EXECUTE takes no bind
/// parameters, so the sample is a literal, quoted here in Rust.
fn execute_args(values: &[String]) -> String {
    format!("({}::text[])", escape_literal(&array_literal(values)))
}

async fn lookup_facts(
    client: &Client,
    lookup: &Lookup,
) -> Result<LookupFacts, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT a.attnum IS NOT NULL, coalesce(ty.typcategory = 'A', false), \
                    ARRAY(SELECT ic.relname::text FROM pg_index i \
                          JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam \
                          WHERE i.indrelid = c.oid AND i.indkey[0] = a.attnum \
                            AND i.indpred IS NULL AND i.indisvalid ORDER BY 1), \
                    ARRAY(SELECT am.amname::text FROM pg_index i \
                          JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam \
                          WHERE i.indrelid = c.oid AND i.indkey[0] = a.attnum \
                            AND i.indpred IS NULL AND i.indisvalid ORDER BY ic.relname), \
                    coalesce(c.reltuples, -1)::float8 \
             FROM (SELECT to_regclass($1) AS oid) r \
             LEFT JOIN pg_class c ON c.oid = r.oid \
             LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $2 AND NOT a.attisdropped \
             LEFT JOIN pg_type ty ON ty.oid = a.atttypid",
            &[&lookup.quoted_relation(), &lookup.column],
        )
        .await?;
    let names: Vec<String> = row.try_get(2)?;
    let ams: Vec<String> = row.try_get(3)?;
    Ok(LookupFacts {
        found: row.try_get(0)?,
        array: row.try_get(1)?,
        indexes: names.into_iter().zip(ams).collect(),
        rows_estimate: row.try_get(4)?,
    })
}

/// Up to `n` distinct values of a lookup column (the elements, for an array), read
/// without sorting the table.
async fn sample_values(
    client: &Client,
    lookup: &Lookup,
    array: bool,
    n: usize,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let col = lookup.quoted_column();
    let value = if array {
        format!("unnest({col})")
    } else {
        col.clone()
    };
    let rows = client
        .query(
            &format!(
                "SELECT ({value})::text FROM {} WHERE {col} IS NOT NULL LIMIT {}",
                lookup.quoted_relation(),
                n * 20
            ),
            &[],
        )
        .await?;
    let mut out: Vec<String> = Vec::new();
    for r in rows {
        if let Some(v) = r.try_get::<_, Option<String>>(0)?
            && !out.contains(&v)
        {
            out.push(v);
            if out.len() == n {
                break;
            }
        }
    }
    Ok(out)
}

pub async fn gather(
    client: &Client,
    report: &ExplainReport,
    sample: u32,
) -> Result<Analysis, Failure> {
    let n = sample as usize;
    let tables = tview_tables(client).await?;
    let sample_keys = match tables.get(&report.tview) {
        Some(t) => {
            let key = ident(&t.key_column);
            client
                .query(
                    &format!(
                        "SELECT {key}::text FROM {} ORDER BY {key} LIMIT {n}",
                        t.quoted()
                    ),
                    &[],
                )
                .await?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<Vec<String>, _>>()?
        }
        None => Vec::new(),
    };
    let mut facts = BTreeMap::new();
    for text in report.statements.iter().flat_map(|s| &s.lookups) {
        if facts.contains_key(text) {
            continue;
        }
        if let Some(l) = Lookup::parse(text) {
            facts.insert(text.clone(), lookup_facts(client, &l).await?);
        }
    }
    let mut starts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in &report.statements {
        if let ("derive" | "forward", Some(first)) = (s.kind.as_str(), s.lookups.first())
            && !starts.contains_key(first)
            && let Some(l) = Lookup::parse(first)
        {
            let array = facts.get(first).is_some_and(|f| f.array);
            starts.insert(first.clone(), sample_values(client, &l, array, n).await?);
        }
    }

    client
        .batch_execute("BEGIN; SET LOCAL plan_cache_mode = force_generic_plan")
        .await?;
    // apply_keys writes the TVIEW, which its guard refuses outside a refresh unless a
    // superuser says otherwise; for anyone else its generic plan is what there is.
    client.batch_execute("SAVEPOINT tviews_writes").await?;
    let direct_writes = match client
        .batch_execute("SET LOCAL pg_tviews.allow_direct_writes = on")
        .await
    {
        Ok(()) => true,
        Err(e) if e.as_db_error().is_some() => {
            client
                .batch_execute("ROLLBACK TO SAVEPOINT tviews_writes")
                .await?;
            false
        }
        Err(e) => return Err(e.into()),
    };
    let mut plans = Vec::new();
    let mut failure = None;
    for (i, s) in report.statements.iter().enumerate() {
        let parameters = match s.kind.as_str() {
            "apply_all" => Vec::new(),
            "derive" | "forward" => s
                .lookups
                .first()
                .and_then(|l| starts.get(l))
                .cloned()
                .unwrap_or_default(),
            _ => sample_keys.clone(),
        };
        let mut p = StatementPlan {
            kind: s.kind.clone(),
            source: s.source.clone(),
            path: s.path.clone(),
            lookups: s.lookups.clone(),
            parameters,
            generic_plan: None,
            analyzed_plan: None,
            not_analyzed: None,
            error: None,
        };
        let run = s.kind != "apply_keys" || direct_writes;
        match explain_one(client, i, s.sql.as_str(), run, &mut p).await {
            Ok(()) => {}
            Err(e) => match e.as_db_error() {
                Some(db) => p.error = Some(ServerError::from(db)),
                None => {
                    failure = Some(e);
                    break;
                }
            },
        }
        plans.push(p);
    }
    if let Some(e) = failure {
        return Err(e.into());
    }
    client.batch_execute("ROLLBACK").await?;
    let warnings = plan::warnings(&plans, &facts);
    Ok(Analysis {
        sample_keys,
        direct_writes,
        statements: plans,
        lookups: facts,
        warnings,
    })
}

/// One statement behind its own savepoint, rolled back whatever happens.
async fn explain_one(
    client: &Client,
    i: usize,
    sql: &str,
    run: bool,
    p: &mut StatementPlan,
) -> Result<(), tokio_postgres::Error> {
    let name = format!("tviews_explain_{i}");
    let takes_keys = p.kind != "apply_all";
    client.batch_execute("SAVEPOINT tviews_explain").await?;
    let result = async {
        let types = if takes_keys { "(text[])" } else { "" };
        client
            .batch_execute(&format!("PREPARE {name}{types} AS {sql}"))
            .await?;
        let args = if takes_keys {
            execute_args(&p.parameters)
        } else {
            String::new()
        };
        let row = client
            .query_one(
                &format!("EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE {name}{args}"),
                &[],
            )
            .await?;
        p.generic_plan = Some(row.try_get(0)?);
        if !takes_keys {
            p.not_analyzed = Some("it rewrites every row: its generic plan only".into());
        } else if !run {
            p.not_analyzed = Some(
                "it writes the TVIEW, which needs a superuser (pg_tviews.allow_direct_writes)"
                    .into(),
            );
        } else if p.parameters.is_empty() {
            p.not_analyzed = Some("no sample values to run it on".into());
        } else {
            let row = client
                .query_one(
                    &format!(
                        "EXPLAIN (ANALYZE, BUFFERS, VERBOSE, FORMAT JSON) EXECUTE {name}{args}"
                    ),
                    &[],
                )
                .await?;
            p.analyzed_plan = Some(row.try_get(0)?);
        }
        Ok::<(), tokio_postgres::Error>(())
    }
    .await;
    client
        .batch_execute("ROLLBACK TO SAVEPOINT tviews_explain")
        .await?;
    // Prepared statements outlive a rollback; this one is not needed any more.
    let _ = client.batch_execute(&format!("DEALLOCATE {name}")).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_literals_are_quoted() {
        assert_eq!(array_literal(&["1".into(), "2".into()]), "{\"1\",\"2\"}");
        assert_eq!(execute_args(&["it's".into()]), "('{\"it''s\"}'::text[])");
        // A backslash makes it an E'' literal, the backslashes doubled.
        assert_eq!(
            execute_args(&["a\\b".into()]),
            "( E'{\"a\\\\\\\\b\"}'::text[])"
        );
        assert_eq!(execute_args(&[]), "('{}'::text[])");
    }
}
