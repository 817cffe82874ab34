//! docs/API_REFERENCE.md documents the whole SQL surface of the installed extension: this test
//! lists it from the catalogs of a scratch cluster (preloaded, so the settings exist and the
//! statistics are on) and fails, naming what is missing, when the reference does not have
//!
//! - a section (a heading naming it in backticks) for every public function, naming each
//!   argument, its return type and each column it returns, with that column's type on the
//!   column's line; a mention of every internal function (trigger and event-trigger functions,
//!   `*_raw` readers);
//! - a section for every view and for the catalog table, with each column and its type;
//! - a section for every `pg_tviews.*` setting, with its default and who may set it;
//! - every event trigger, every trigger name pg_tviews gives its triggers, every health check
//!   with its texts (each detail and hint the function can return, placeholders aside);
//! - every key of `pg_tviews_snapshot()`, nested ones as `parent.key` or `parent[].key`, and
//!   its current `schema_version`.
//!
//! The snapshot is taken while a writer waits for a value lock held by a prepared transaction,
//! so that every array of the document has an element to read keys from.
//!
//! A second test checks, on its own preloaded cluster, what the reference and
//! docs/MONITORING.md say the monitoring API does: who may read it (`pg_monitor`), the health
//! check's findings, the names and order of what it lists, and which writes are captured.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::Value;
use tokio_postgres::Client;
use tviews_tests::{Cluster, ClusterOptions};

const SCHEMA: &str = "
CREATE TABLE tb_user (pk_user bigint PRIMARY KEY, name text);
CREATE TABLE tb_post (pk_post bigint PRIMARY KEY, fk_user bigint REFERENCES tb_user, title text);
INSERT INTO tb_user VALUES (1, 'alice'), (2, 'bob');
INSERT INTO tb_post VALUES (1, 1, 'p1'), (2, 2, 'p2');
CREATE TABLE tv_post AS SELECT p.pk_post, p.fk_user, p.title, u.name FROM tb_post p JOIN tb_user u ON u.pk_user = p.fk_user;
CREATE TABLE tv_user WITH (tviews.key = 'pk_user') AS
  SELECT u.pk_user, (SELECT count(*) FROM tv_post tp WHERE tp.fk_user = u.pk_user) AS posts FROM tb_user u;
UPDATE tb_user SET name = 'Alice' WHERE pk_user = 1;
";

fn reference() -> Result<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/API_REFERENCE.md");
    std::fs::read_to_string(path).with_context(|| format!("reading {path}"))
}

/// The Markdown outside code blocks is parsed for headings; a section runs from a heading to
/// the next heading of the same or a higher level.
struct Doc<'a> {
    lines: Vec<&'a str>,
    /// (line index, level) of each heading outside code fences.
    headings: Vec<(usize, usize)>,
}

impl<'a> Doc<'a> {
    fn new(text: &'a str) -> Doc<'a> {
        let lines: Vec<&str> = text.lines().collect();
        let mut headings = Vec::new();
        let mut fenced = false;
        for (i, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                continue;
            }
            if fenced {
                continue;
            }
            let level = line.chars().take_while(|c| *c == '#').count();
            if level > 0 && line[level..].starts_with(' ') {
                headings.push((i, level));
            }
        }
        Doc { lines, headings }
    }

    /// The section whose heading names `name` as `` `name` `` or `` `name(...`` .
    fn section(&self, name: &str) -> Option<String> {
        let (pos, &(start, level)) = self.headings.iter().enumerate().find(|(_, (i, _))| {
            let h = self.lines[*i];
            h.contains(&format!("`{name}`")) || h.contains(&format!("`{name}("))
        })?;
        let end = self.headings[pos + 1..]
            .iter()
            .find(|(_, l)| *l <= level)
            .map_or(self.lines.len(), |(i, _)| *i);
        Some(self.lines[start..end].join("\n"))
    }
}

/// `` `name` `` or `` `name(...`` anywhere in `text`.
fn mentions(text: &str, name: &str) -> bool {
    text.contains(&format!("`{name}`")) || text.contains(&format!("`{name}("))
}

/// `word` in `text` with no identifier character on either side.
fn has_word(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

/// A line of `section` naming `` `column` `` also names its type.
fn column_with_type(section: &str, column: &str, ty: &str) -> bool {
    section
        .lines()
        .any(|l| l.contains(&format!("`{column}`")) && has_word(l, ty))
}

struct Function {
    name: String,
    returns: String,
    retset: bool,
    args: Vec<String>,
    /// (name, type) of each column of a `RETURNS TABLE` function.
    columns: Vec<(String, String)>,
}

impl Function {
    /// Trigger and event-trigger functions and the raw readers under the views.
    fn internal(&self) -> bool {
        self.name.ends_with("_raw") || matches!(self.returns.as_str(), "trigger" | "event_trigger")
    }
}

async fn functions(c: &Client) -> Result<Vec<Function>> {
    let rows = c
        .query(
            "SELECT CASE WHEN p.pronamespace = e.extnamespace THEN p.proname::text
                         ELSE n.nspname || '.' || p.proname END,
                    p.prorettype::regtype::text, p.proretset,
                    coalesce((SELECT array_agg(a.name ORDER BY a.i) FROM unnest(p.proargnames, p.proargmodes)
                              WITH ORDINALITY AS a(name, mode, i)
                              WHERE a.mode IS NULL OR a.mode IN ('i', 'b', 'v')), '{}')::text[],
                    coalesce((SELECT array_agg(a.name ORDER BY a.i) FROM unnest(p.proargnames, p.proargmodes)
                              WITH ORDINALITY AS a(name, mode, i) WHERE a.mode IN ('t', 'o')), '{}')::text[],
                    coalesce((SELECT array_agg(format_type(a.ty, NULL) ORDER BY a.i)
                              FROM unnest(p.proallargtypes, p.proargmodes) WITH ORDINALITY AS a(ty, mode, i)
                              WHERE a.mode IN ('t', 'o')), '{}')::text[]
             FROM pg_depend d
             JOIN pg_extension e ON e.oid = d.refobjid
             JOIN pg_proc p ON p.oid = d.objid
             JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE d.classid = 'pg_proc'::regclass AND d.refclassid = 'pg_extension'::regclass
               AND d.deptype = 'e' AND e.extname = 'pg_tviews'
             ORDER BY 1",
            &[],
        )
        .await
        .context("listing the extension's functions")?;
    Ok(rows
        .iter()
        .map(|r| {
            let names: Vec<String> = r.get(4);
            let types: Vec<String> = r.get(5);
            Function {
                name: r.get(0),
                returns: r.get(1),
                retset: r.get(2),
                args: r.get(3),
                columns: names.into_iter().zip(types).collect(),
            }
        })
        .collect())
}

/// Views and tables of the extension, with (column, type) in order.
async fn relations(c: &Client) -> Result<Vec<(String, Vec<(String, String)>)>> {
    let rows = c
        .query(
            "SELECT CASE WHEN r.relnamespace = e.extnamespace THEN r.relname::text
                         ELSE n.nspname || '.' || r.relname END,
                    array_agg(a.attname::text ORDER BY a.attnum),
                    array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum)
             FROM pg_depend d
             JOIN pg_extension e ON e.oid = d.refobjid
             JOIN pg_class r ON r.oid = d.objid
             JOIN pg_namespace n ON n.oid = r.relnamespace
             JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
             WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_extension'::regclass
               AND d.deptype = 'e' AND e.extname = 'pg_tviews' AND r.relkind IN ('v', 'r')
             GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .context("listing the extension's views and tables")?;
    Ok(rows
        .iter()
        .map(|r| {
            let names: Vec<String> = r.get(1);
            let types: Vec<String> = r.get(2);
            (r.get(0), names.into_iter().zip(types).collect())
        })
        .collect())
}

async fn strings(c: &Client, sql: &str) -> Result<Vec<String>> {
    Ok(c.query(sql, &[])
        .await
        .with_context(|| sql.to_string())?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Every key path of a snapshot: `key`, `object.key`, `array[].key`.
fn key_paths(prefix: &str, value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(path.clone());
                key_paths(&path, v, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                key_paths(&format!("{prefix}[]"), item, out);
            }
        }
        _ => {}
    }
}

/// The string literals of a SQL function body (`''` read as `'`), except those cast with `::`
/// (`'tviews.capture()'::regprocedure`).
fn sql_literals(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = body.char_indices().peekable();
    while let Some((_, ch)) = chars.next() {
        if ch != '\'' {
            continue;
        }
        let mut lit = String::new();
        let mut end = body.len();
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                    chars.next();
                    lit.push('\'');
                } else {
                    end = i + 1;
                    break;
                }
            } else {
                lit.push(c);
            }
        }
        if !body[end..].starts_with("::") {
            out.push(lit);
        }
    }
    out
}

/// The texts a reader must find: the pieces of each literal between `%s` placeholders, trimmed,
/// of 15 characters or more (shorter ones are severities, separators, relation kinds).
fn health_check_texts(body: &str) -> BTreeSet<String> {
    sql_literals(body)
        .iter()
        .flat_map(|l| {
            l.split("%s")
                .map(|p| p.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|p| p.chars().count() >= 15)
        .collect()
}

/// A snapshot taken while a writer waits for a value lock that a prepared transaction holds:
/// `prepared`, `queues` and `lock_waits` then all have an element.
async fn busy_snapshot(cluster: &Cluster, c: &Client) -> Result<Value> {
    let holder = cluster.connect("apiref").await?;
    holder
        .batch_execute(
            "BEGIN; UPDATE tb_user SET name = 'held' WHERE pk_user = 2; PREPARE TRANSACTION 'apiref'",
        )
        .await?;
    let waiter = cluster.connect("apiref").await?;
    let waiting = tokio::spawn(async move {
        waiter
            .batch_execute("INSERT INTO tb_post VALUES (3, 2, 'waits')")
            .await
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let snapshot = loop {
        let s: Value = c
            .query_one("SELECT pg_tviews_snapshot()", &[])
            .await?
            .get(0);
        let filled = |k: &str| s[k].as_array().is_some_and(|a| !a.is_empty());
        if ["prepared", "queues", "lock_waits"]
            .iter()
            .all(|k| filled(k))
        {
            break s;
        }
        ensure!(
            Instant::now() < deadline,
            "the waiting writer never showed in the snapshot: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    c.batch_execute("COMMIT PREPARED 'apiref'").await?;
    waiting
        .await
        .context("the waiting writer's task")?
        .context("the waiting writer")?;
    Ok(snapshot)
}

async fn missing_from_reference(cluster: &Cluster) -> Result<Vec<String>> {
    cluster.create_database_with_extension("apiref")?;
    let c = cluster.connect("apiref").await?;
    c.batch_execute(SCHEMA).await?;
    let text = reference()?;
    let doc = Doc::new(&text);
    let mut missing = Vec::new();

    let functions = functions(&c).await?;
    ensure!(
        functions.len() > 20,
        "only {} functions found",
        functions.len()
    );
    for f in &functions {
        if f.internal() {
            if !mentions(&text, &f.name) {
                missing.push(format!("internal function {}", f.name));
            }
            continue;
        }
        let Some(section) = doc.section(&f.name) else {
            missing.push(format!(
                "function {}: no section (a heading naming `{}`)",
                f.name, f.name
            ));
            continue;
        };
        for arg in &f.args {
            if !has_word(&section, arg) {
                missing.push(format!("function {}: argument {arg}", f.name));
            }
        }
        if !f.retset && !has_word(&section, &f.returns) {
            missing.push(format!("function {}: return type {}", f.name, f.returns));
        }
        for (column, ty) in &f.columns {
            if !column_with_type(&section, column, ty) {
                missing.push(format!("function {}: column `{column}` ({ty})", f.name));
            }
        }
    }

    let relations = relations(&c).await?;
    ensure!(
        relations.len() >= 8,
        "only {} views and tables found",
        relations.len()
    );
    for (name, columns) in &relations {
        let Some(section) = doc.section(name) else {
            missing.push(format!("{name}: no section (a heading naming `{name}`)"));
            continue;
        };
        for (column, ty) in columns {
            if !column_with_type(&section, column, ty) {
                missing.push(format!("{name}: column `{column}` ({ty})"));
            }
        }
    }

    let settings = c
        .query(
            "SELECT name, boot_val, context FROM pg_settings WHERE name LIKE 'pg_tviews.%' ORDER BY 1",
            &[],
        )
        .await?;
    ensure!(
        settings.len() >= 2,
        "pg_tviews settings: {}",
        settings.len()
    );
    for s in &settings {
        let (name, default, context): (String, String, String) = (s.get(0), s.get(1), s.get(2));
        match doc.section(&name) {
            None => missing.push(format!("setting {name}: no section")),
            Some(section) => {
                if !section.contains(&format!("`{default}`")) {
                    missing.push(format!("setting {name}: default `{default}`"));
                }
                if !has_word(&section, &context) {
                    missing.push(format!("setting {name}: context {context}"));
                }
            }
        }
    }

    let event_triggers = strings(
        &c,
        "SELECT t.evtname::text FROM pg_depend d JOIN pg_event_trigger t ON t.oid = d.objid
         WHERE d.classid = 'pg_event_trigger'::regclass AND d.deptype = 'e'
           AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_tviews') ORDER BY 1",
    )
    .await?;
    ensure!(
        event_triggers.len() >= 4,
        "event triggers: {event_triggers:?}"
    );
    let triggers = strings(
        &c,
        "SELECT DISTINCT tgname::text FROM pg_trigger
         WHERE tgfoid IN ('tviews.capture()'::regprocedure, 'tviews.guard()'::regprocedure) ORDER BY 1",
    )
    .await?;
    ensure!(triggers.len() >= 6, "triggers: {triggers:?}");
    for name in event_triggers.iter().chain(&triggers) {
        if !mentions(&text, name) {
            missing.push(format!("trigger {name}"));
        }
    }

    let checks = strings(&c, "SELECT check_name FROM pg_tviews_health_check()").await?;
    let health = doc.section("pg_tviews_health_check").unwrap_or_default();
    for check in &checks {
        if !health.contains(&format!("`{check}`")) {
            missing.push(format!(
                "health check `{check}` (in the pg_tviews_health_check section)"
            ));
        }
    }
    let body: String = c
        .query_one(
            "SELECT prosrc FROM pg_proc WHERE oid = 'pg_tviews_health_check(interval)'::regprocedure",
            &[],
        )
        .await?
        .get(0);
    let texts = health_check_texts(&body);
    ensure!(texts.len() > 20, "health check texts: {texts:?}");
    for text in &texts {
        if !health.contains(text.as_str()) {
            missing.push(format!(
                "health check text \"{text}\" (in the pg_tviews_health_check section)"
            ));
        }
    }

    let snapshot = busy_snapshot(cluster, &c).await?;
    let section = doc.section("pg_tviews_snapshot").unwrap_or_default();
    let mut paths = BTreeSet::new();
    key_paths("", &snapshot, &mut paths);
    for path in &paths {
        if !section.contains(&format!("`{path}`")) {
            missing.push(format!(
                "snapshot key `{path}` (in the pg_tviews_snapshot section)"
            ));
        }
    }
    let version = &snapshot["schema_version"];
    if !section.contains(&format!("\"schema_version\": {version}")) {
        missing.push(format!(
            "snapshot: an example with \"schema_version\": {version} (the current version)"
        ));
    }
    Ok(missing)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_object_of_the_sql_api_is_documented() {
    let cluster = Cluster::start(ClusterOptions {
        name: "apiref".into(),
        preload: true,
        ..ClusterOptions::default()
    })
    .unwrap_or_else(|e| panic!("could not start the cluster: {e:#}"));
    // Panics while the cluster lives, so a server error comes with the log's tail.
    let missing = missing_from_reference(&cluster)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    // The server worked: what is missing is the documentation's, no log needed.
    drop(cluster);
    assert!(
        missing.is_empty(),
        "docs/API_REFERENCE.md lacks {} item(s) of the installed SQL API:\n  {}",
        missing.len(),
        missing.join("\n  ")
    );
}

#[test]
fn the_health_check_scanner_reads_sql() {
    assert_eq!(
        sql_literals(
            "SELECT 'a''b', x FROM t WHERE f = 'tviews.capture()'::regprocedure AND y IN ('O', 'A')"
        ),
        ["a'b", "O", "A"]
    );
    let texts = health_check_texts(
        "format('%s prepared transaction(s) holding TVIEW work for more than %s: %s', n), 'ok', 'SQL objects %s, library %s'",
    );
    assert_eq!(
        texts.into_iter().collect::<Vec<_>>(),
        ["prepared transaction(s) holding TVIEW work for more than"]
    );
}

const MONITORED: &str = "
CREATE SCHEMA app;
CREATE TABLE tb_user (pk_user bigint PRIMARY KEY, name text, email text);
CREATE TABLE tb_post (pk_post bigint PRIMARY KEY, fk_user bigint REFERENCES tb_user, title text);
CREATE TABLE app.tb_tag (pk_tag int PRIMARY KEY, label text);
INSERT INTO tb_user SELECT i, 'user ' || i, 'u' || i || '@x' FROM generate_series(1, 3) i;
INSERT INTO tb_post SELECT i, 1 + i % 3, 'post ' || i FROM generate_series(1, 6) i;
INSERT INTO app.tb_tag VALUES (1, 'a'), (2, 'b');
CREATE TABLE tv_user AS SELECT u.pk_user, u.name FROM tb_user u;
CREATE TABLE app.tv_tag AS SELECT t.pk_tag, t.label FROM app.tb_tag t;
CREATE TABLE tv_post AS SELECT p.pk_post, p.title, u.name FROM tb_post p JOIN tb_user u ON u.pk_user = p.fk_user;
CREATE TABLE tv_ratio AS SELECT p.pk_post AS pk_ratio, 100 / length(p.title) AS ratio FROM tb_post p;
";

/// The views of the monitoring API (readable by pg_monitor).
const MONITORING_VIEWS: &[&str] = &[
    "pg_tviews_stats",
    "pg_tviews_source_stats",
    "pg_tviews_queue_realtime",
    "pg_tviews_cache_stats",
    "pg_tviews_performance_summary",
    "pg_tviews_lock_waits",
    "pg_tviews_prepared",
];

/// Its functions (executable by pg_monitor).
const MONITORING_FUNCTIONS: &[&str] = &[
    "pg_tviews_health_check",
    "pg_tviews_snapshot",
    "pg_tviews_stats_raw",
    "pg_tviews_source_stats_raw",
    "pg_tviews_queue_raw",
    "pg_tviews_ring_raw",
    "pg_tviews_cache_raw",
];

/// The SQLSTATE and message of a statement that must fail.
async fn failure(c: &Client, sql: &str) -> Result<(String, String)> {
    let err = c
        .batch_execute(sql)
        .await
        .err()
        .with_context(|| format!("succeeded: {sql}"))?;
    let db = err
        .as_db_error()
        .with_context(|| format!("{sql}: {err:?}"))?;
    Ok((db.code().code().to_string(), db.message().to_string()))
}

async fn one_f64(c: &Client, sql: &str) -> Result<f64> {
    Ok(c.query_one(sql, &[])
        .await
        .with_context(|| sql.to_string())?
        .get(0))
}

async fn one_i64(c: &Client, sql: &str) -> Result<i64> {
    Ok(c.query_one(sql, &[])
        .await
        .with_context(|| sql.to_string())?
        .get(0))
}

/// (severity, detail, hint) of one health check.
async fn health(c: &Client, check: &str) -> Result<(String, String, Option<String>)> {
    let r = c
        .query_one(
            "SELECT severity, detail, hint FROM pg_tviews_health_check() WHERE check_name = $1",
            &[&check],
        )
        .await
        .with_context(|| format!("health check {check}"))?;
    Ok((r.get(0), r.get(1), r.get(2)))
}

async fn monitoring(cluster: &Cluster) -> Result<()> {
    cluster.create_database_with_extension("apimon")?;
    let c = cluster.connect("apimon").await?;
    c.batch_execute(MONITORED).await?;

    // Who may watch: pg_monitor's members (and superusers); not PUBLIC.
    c.batch_execute("CREATE ROLE plain; CREATE ROLE watcher IN ROLE pg_monitor")
        .await?;
    let plain = cluster.connect("apimon").await?;
    plain.batch_execute("SET ROLE plain").await?;
    let watcher = cluster.connect("apimon").await?;
    watcher.batch_execute("SET ROLE watcher").await?;
    for view in MONITORING_VIEWS {
        let sql = format!("SELECT * FROM {view}");
        let (code, message) = failure(&plain, &sql).await?;
        ensure!(
            code == "42501" && message == format!("permission denied for view {view}"),
            "{sql} as a plain role: {code} {message}"
        );
        watcher
            .query(&sql, &[])
            .await
            .with_context(|| format!("{sql} as a member of pg_monitor"))?;
    }
    for function in MONITORING_FUNCTIONS {
        let sql = format!("SELECT * FROM {function}()");
        let (code, message) = failure(&plain, &sql).await?;
        ensure!(
            code == "42501" && message == format!("permission denied for function {function}"),
            "{sql} as a plain role: {code} {message}"
        );
        watcher
            .query(&sql, &[])
            .await
            .with_context(|| format!("{sql} as a member of pg_monitor"))?;
    }
    let checks = watcher
        .query("SELECT severity FROM pg_tviews_health_check()", &[])
        .await?;
    ensure!(
        checks.len() == 9 && checks.iter().all(|r| r.get::<_, String>(0) == "ok"),
        "the health check as a member of pg_monitor: {} rows",
        checks.len()
    );
    let (code, _) = failure(&watcher, "SELECT pg_tviews_stats_reset()").await?;
    ensure!(
        code == "42501",
        "pg_tviews_stats_reset as pg_monitor: {code}"
    );
    // What stays PUBLIC's.
    for sql in [
        "SELECT * FROM pg_tviews_sources()",
        "SELECT * FROM pg_tviews_session_stats()",
        "SELECT * FROM tviews.tview",
        "SELECT pg_tviews_explain('tv_user')",
    ] {
        plain
            .query(sql, &[])
            .await
            .with_context(|| format!("{sql} as a plain role"))?;
    }
    drop((plain, watcher));

    // Capture triggers that fire only in replica sessions do not capture.
    let (severity, detail, hint) = health(&c, "capture triggers").await?;
    ensure!(
        severity == "ok"
            && detail == "every source has its four capture triggers, enabled"
            && hint.is_none(),
        "capture triggers: {severity} {detail}"
    );
    c.batch_execute(
        "ALTER TABLE tb_user ENABLE REPLICA TRIGGER tviews_capture_upd;
         UPDATE tb_user SET name = 'unseen' WHERE pk_user = 1;",
    )
    .await?;
    ensure!(
        one_i64(&c, "SELECT pg_tviews_diff('tv_user')").await? == 2,
        "a replica-only capture trigger fired"
    );
    let (severity, detail, hint) = health(&c, "capture triggers").await?;
    ensure!(
        severity == "error"
            && detail == "sources whose capture triggers are missing or disabled: tb_user"
            && hint
                .as_deref()
                .is_some_and(|h| h.contains("SELECT tviews.reconcile_triggers()")),
        "capture triggers: {severity} {detail} {hint:?}"
    );
    c.batch_execute("ALTER TABLE tb_user ENABLE ALWAYS TRIGGER tviews_capture_upd")
        .await?;
    ensure!(health(&c, "capture triggers").await?.0 == "ok");
    c.batch_execute(
        "ALTER TABLE tb_user ENABLE TRIGGER tviews_capture_upd;
         SELECT pg_tviews_refresh('tv_user'), pg_tviews_refresh('tv_post');",
    )
    .await?;
    ensure!(health(&c, "capture triggers").await?.0 == "ok");

    // A failed refresh: the refresh errors check and its hint.
    c.batch_execute("SELECT pg_tviews_stats_reset()").await?;
    let (code, _) = failure(&c, "UPDATE tb_post SET title = '' WHERE pk_post = 1").await?;
    ensure!(code == "22012", "{code}");
    let (severity, detail, hint) = health(&c, "refresh errors").await?;
    ensure!(
        severity == "warning"
            && detail == "refreshes failed (their transactions rolled back): tv_ratio: 1"
            && hint.as_deref()
                == Some(
                    "The failing writers got the error with its SQLSTATE (duplicate or NULL keys, serialization failures, errors of the definition); the server log has it with log_line_prefix including %e."
                ),
        "refresh errors: {severity} {detail} {hint:?}"
    );
    c.batch_execute("DROP TABLE tv_ratio").await?;

    // Session source statistics name relations as every view does.
    let s = cluster.connect("apimon").await?;
    s.batch_execute(
        "INSERT INTO app.tb_tag VALUES (3, 'c');
         UPDATE tb_post SET title = 'renamed' WHERE pk_post = 2;",
    )
    .await?;
    let names = strings(
        &s,
        "SELECT source FROM pg_tviews_session_source_stats() ORDER BY source",
    )
    .await?;
    ensure!(
        names == ["app.tb_tag", "tb_post"],
        "session sources: {names:?}"
    );
    drop(s);

    // The snapshot's edges, by (from, to).
    let snapshot: Value = c
        .query_one("SELECT pg_tviews_snapshot()", &[])
        .await?
        .get(0);
    let edges: Vec<(String, String)> = snapshot["edges"]
        .as_array()
        .context("edges")?
        .iter()
        .map(|e| {
            (
                e["from"].as_str().unwrap_or_default().to_string(),
                e["to"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    ensure!(
        edges
            == pairs(&[
                ("app.tb_tag", "app.tv_tag"),
                ("tb_post", "tv_post"),
                ("tb_user", "tv_post"),
                ("tb_user", "tv_user"),
            ]),
        "snapshot edges: {edges:?}"
    );

    // refresh_ms: the commit's refresh time, charged to the sources it wrote.
    c.batch_execute(
        "SELECT pg_tviews_stats_reset();
         UPDATE tb_post SET title = 'retitled' WHERE pk_post = 3;",
    )
    .await?;
    let refresh_ms = |source: &'static str| {
        let c = &c;
        async move {
            one_f64(
                c,
                &format!("SELECT refresh_ms FROM pg_tviews_source_stats WHERE source = '{source}'"),
            )
            .await
        }
    };
    let time_ms = one_f64(
        &c,
        "SELECT time_ms FROM pg_tviews_stats WHERE tview = 'tv_post'",
    )
    .await?;
    let post_ms = refresh_ms("tb_post").await?;
    ensure!(
        time_ms > 0.0 && post_ms + 0.002 >= time_ms,
        "tb_post refresh_ms {post_ms}, tv_post time_ms {time_ms}"
    );
    ensure!(
        refresh_ms("app.tb_tag").await? == 0.0,
        "app.tb_tag was not written"
    );

    // An UPDATE of a column no TVIEW reads queues nothing and refreshes
    // nothing; its statement is still counted as a capture.
    let counters = "SELECT string_agg(tview || '=' || refreshes || '/' || keys || '/' || updated || '/' || skipped, ',' ORDER BY tview)
                    FROM pg_tviews_stats WHERE tview IN ('tv_user', 'tv_post')";
    c.batch_execute("SELECT pg_tviews_stats_reset()").await?;
    c.batch_execute("BEGIN; UPDATE tb_user SET email = 'new@x' WHERE pk_user = 1")
        .await?;
    let pending = strings(
        &c,
        "SELECT keys || '/' || start_values FROM pg_tviews_pending()",
    )
    .await?;
    ensure!(
        pending == ["0/0"],
        "pending after an unread column: {pending:?}"
    );
    c.batch_execute("COMMIT").await?;
    let counted = strings(&c, counters).await?;
    ensure!(
        counted == ["tv_post=0/0/0/0,tv_user=0/0/0/0"],
        "after an unread column: {counted:?}"
    );
    let captured = strings(
        &c,
        "SELECT captures || '/' || rows_captured FROM pg_tviews_source_stats WHERE source = 'tb_user'",
    )
    .await?;
    ensure!(captured == ["1/2"], "tb_user captures: {captured:?}");
    // With row-level security on the source every updated row is captured:
    // its TVIEWs recompute its rows and skip them.
    c.batch_execute(
        "ALTER TABLE tb_user ENABLE ROW LEVEL SECURITY;
         SELECT pg_tviews_stats_reset();
         UPDATE tb_user SET email = 'newer@x' WHERE pk_user = 1;
         ALTER TABLE tb_user DISABLE ROW LEVEL SECURITY;",
    )
    .await?;
    let counted = strings(&c, counters).await?;
    ensure!(
        counted == ["tv_post=1/2/0/2,tv_user=1/1/0/1"],
        "with row-level security: {counted:?}"
    );
    for tview in ["tv_user", "tv_post", "app.tv_tag"] {
        ensure!(
            one_i64(&c, &format!("SELECT pg_tviews_diff('{tview}')")).await? == 0,
            "{tview} differs from its definition"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn monitoring_behaves_as_documented() {
    let cluster = Cluster::start(ClusterOptions {
        name: "apimon".into(),
        preload: true,
        ..ClusterOptions::default()
    })
    .unwrap_or_else(|e| panic!("could not start the cluster: {e:#}"));
    // Panics while the cluster lives, so a server error comes with the log's tail.
    monitoring(&cluster)
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
}
