//! The errors of docs/ERROR_REFERENCE.md that no other test provokes: each
//! test makes pg_tviews (or PostgreSQL, in the situations the reference
//! documents) raise them, checks the SQLSTATE, the message and the hint
//! users get, and that the failed statement left nothing behind.
//! `tests/tests/error_reference.rs` checks that every error of the reference
//! names a test that produces it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use tokio_postgres::Client;
use tviews_tests::support::{Db, run, sqlstate};

/// Two sources, a TVIEW over both, and sources of the kinds a TVIEW cannot
/// read.
const SCHEMA: &str = "
CREATE TABLE tb_user (pk_user bigint PRIMARY KEY, name text, email text);
CREATE TABLE tb_post (pk_post bigint PRIMARY KEY, fk_user bigint REFERENCES tb_user, title text, score int NOT NULL DEFAULT 1);
INSERT INTO tb_user SELECT i, 'user ' || i, 'u' || i || '@x' FROM generate_series(1, 5) i;
INSERT INTO tb_post SELECT i, 1 + i % 5, 'post ' || i, i FROM generate_series(1, 20) i;
CREATE TABLE tv_post AS
SELECT p.pk_post, p.fk_user, p.title, u.name
FROM tb_post p JOIN tb_user u ON u.pk_user = p.fk_user;
";

async fn setup(prefix: &str) -> Result<Db> {
    let db = Db::fresh(prefix).await?;
    db.client.batch_execute(SCHEMA).await?;
    Ok(db)
}

/// What the server said about a failed statement.
#[derive(Debug)]
struct Failure {
    code: String,
    message: String,
    detail: String,
    hint: String,
}

/// Runs `sql`, which must fail with a server error.
async fn failure(c: &Client, sql: &str) -> Result<Failure> {
    let err = c
        .batch_execute(sql)
        .await
        .err()
        .with_context(|| format!("succeeded: {sql}"))?;
    let db = err
        .as_db_error()
        .with_context(|| format!("{sql}: not a server error: {err:?}"))?;
    Ok(Failure {
        code: sqlstate(&err).unwrap_or_default(),
        message: db.message().to_string(),
        detail: db.detail().unwrap_or_default().to_string(),
        hint: db.hint().unwrap_or_default().to_string(),
    })
}

/// Runs `sql`, which must fail with `code`, a message containing `message`
/// and a hint containing `hint` (`None`: PostgreSQL's own error, no hint
/// required).
async fn expect_error(
    c: &Client,
    sql: &str,
    code: &str,
    message: &str,
    hint: Option<&str>,
) -> Result<Failure> {
    let f = failure(c, sql).await?;
    ensure!(
        f.code == code && f.message.contains(message),
        "{sql}\n  expected {code} \"...{message}...\"\n  got {f:?}"
    );
    if let Some(hint) = hint {
        ensure!(
            f.hint.contains(hint),
            "{sql}\n  expected a hint containing \"{hint}\"\n  got {f:?}"
        );
    }
    Ok(f)
}

async fn one_text(c: &Client, sql: &str) -> Result<String> {
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

/// Everything a CREATE or DROP of a TVIEW leaves in the database: catalog
/// rows, backing views, our triggers, tables named tv_*.
async fn footprint(c: &Client) -> Result<String> {
    one_text(
        c,
        "SELECT concat_ws(' | ',
            (SELECT string_agg(relid::text, ',' ORDER BY relid::text) FROM tviews.tview),
            (SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class
              WHERE relnamespace = 'tviews'::regnamespace AND relkind = 'v'),
            (SELECT string_agg(tgrelid::regclass::text || ':' || tgname, ',' ORDER BY tgrelid::regclass::text, tgname)
               FROM pg_trigger WHERE tgname LIKE 'tviews\\_%'),
            (SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class
              WHERE relname LIKE 'tv\\_%' AND relkind IN ('r', 'p')))",
    )
    .await
}

/// A definition nested `levels` subqueries deep.
fn nested_definition(levels: usize) -> String {
    let mut q = String::from("SELECT p.pk_post AS pk_deep FROM tb_post p");
    for i in 0..levels {
        q = format!("SELECT s{i}.pk_deep FROM ({q}) s{i}");
    }
    format!("CREATE TABLE tv_deep AS {q}")
}

/// Every definition pg_tviews refuses at CREATE, beyond those of
/// `engine.rs::rejections_leave_nothing_behind`: the SQLSTATE, the message
/// naming the problem, the hint, and nothing left behind.
#[tokio::test(flavor = "multi_thread")]
async fn definitions_refused() {
    run(|| async {
        let db = setup("err_refused").await?;
        let c = &db.client;
        c.batch_execute(
            "CREATE SEQUENCE seq_e;
             CREATE MATERIALIZED VIEW mv_user AS SELECT * FROM tb_user;
             CREATE EXTENSION file_fdw;
             CREATE SERVER err_files FOREIGN DATA WRAPPER file_fdw;
             CREATE FOREIGN TABLE ft_user (id bigint) SERVER err_files OPTIONS (filename '/dev/null');",
        )
        .await?;
        let before = footprint(c).await?;
        let deep = nested_definition(66);
        let cases: Vec<(&str, &str, &str, &str)> = vec![
            (
                "CREATE TABLE tv_g AS SELECT max(p.pk_post) AS pk_g FROM tb_post p GROUP BY p.fk_user",
                "42P16",
                "key column \"pk_g\" of TVIEW tv_g is not a GROUP BY column",
                "Add pk_g to GROUP BY",
            ),
            (
                "CREATE TABLE tv_seq AS SELECT p.pk_post AS pk_seq, nextval('seq_e') AS n FROM tb_post p",
                "0A000",
                "TVIEW definition uses the volatile function nextval()",
                "Compute the value when the source row is written",
            ),
            (
                "CREATE TABLE tv_day AS SELECT p.pk_post AS pk_day, CURRENT_DATE AS d FROM tb_post p",
                "0A000",
                "TVIEW definition depends on the time or the session: CURRENT_DATE",
                "Store the time or the user in a column",
            ),
            (
                "CREATE TABLE tv_who AS SELECT p.pk_post AS pk_who, current_user AS u FROM tb_post p",
                "0A000",
                "TVIEW definition depends on the time or the session",
                "Store the time or the user in a column",
            ),
            (
                "CREATE TABLE tv_set AS SELECT p.pk_post AS pk_set, current_setting('work_mem') AS s FROM tb_post p",
                "0A000",
                "TVIEW definition depends on the time or the session: current_setting()",
                "Store the time or the user in a column",
            ),
            (
                "CREATE TABLE tv_don AS SELECT DISTINCT ON (p.fk_user) p.pk_post AS pk_don FROM tb_post p ORDER BY p.fk_user",
                "0A000",
                "DISTINCT ON is not supported in a TVIEW definition",
                "Use GROUP BY on the key",
            ),
            (
                "CREATE TABLE tv_srf AS SELECT p.pk_post AS pk_srf, generate_series(1, 2) AS n FROM tb_post p",
                "0A000",
                "a set-returning function in the select list is not supported",
                "Each key must appear once",
            ),
            (
                "CREATE TABLE tv_rec AS WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3)
                 SELECT p.pk_post AS pk_rec, r.n FROM tb_post p JOIN r ON r.n = p.score",
                "0A000",
                "WITH RECURSIVE is not supported",
                "Recursive queries cannot be maintained",
            ),
            (
                "CREATE TABLE tv_lock AS SELECT p.pk_post AS pk_lock FROM tb_post p FOR UPDATE",
                "0A000",
                "FOR UPDATE/SHARE is not supported",
                "Remove the locking clause",
            ),
            (
                "CREATE TABLE tv_gs AS SELECT p.fk_user AS pk_gs, count(*) FROM tb_post p GROUP BY GROUPING SETS ((p.fk_user), ())",
                "0A000",
                "GROUPING SETS, ROLLUP or CUBE is not supported",
                "Create one TVIEW per grouping level",
            ),
            (
                "CREATE TABLE tv_gs AS SELECT p.fk_user AS pk_gs, count(*) FROM tb_post p GROUP BY ROLLUP (p.fk_user)",
                "0A000",
                "GROUPING SETS, ROLLUP or CUBE is not supported",
                "Create one TVIEW per grouping level",
            ),
            (
                "CREATE TABLE tv_int AS SELECT p.pk_post AS pk_int FROM tb_post p INTERSECT SELECT p.pk_post FROM tb_post p",
                "0A000",
                "UNION (without ALL), INTERSECT or EXCEPT is not supported",
                "Use UNION ALL",
            ),
            (
                "CREATE TABLE tv_exc AS SELECT p.pk_post AS pk_exc FROM tb_post p EXCEPT SELECT p.pk_post FROM tb_post p WHERE p.score > 10",
                "0A000",
                "UNION (without ALL), INTERSECT or EXCEPT is not supported",
                "Use UNION ALL",
            ),
            (
                "CREATE TABLE tv_smp AS SELECT p.pk_post AS pk_smp FROM tb_post p TABLESAMPLE SYSTEM (100)",
                "0A000",
                "TABLESAMPLE is not supported",
                "Sampling is random",
            ),
            (
                deep.as_str(),
                "0A000",
                "definitions nested more than 64 levels is not supported",
                "Simplify the definition",
            ),
            (
                // A CTE read only by a CTE nothing reads (an unused CTE
                // alone is accepted: unused_ctes_are_accepted).
                "CREATE TABLE tv_cte AS WITH a AS (SELECT u.pk_user FROM tb_user u), b AS (SELECT * FROM a)
                 SELECT p.pk_post AS pk_cte FROM tb_post p",
                "0A000",
                "reading tb_user where this definition does is not supported",
                "rewrite that part as a join or a correlated subquery",
            ),
            (
                "CREATE TABLE tv_mv AS SELECT m.pk_user AS pk_mv FROM mv_user m",
                "0A000",
                "TVIEW cannot read mv_user: it is a materialized view",
                "A TVIEW can read ordinary and partitioned tables",
            ),
            (
                "CREATE TABLE tv_ft WITH (tviews.key = 'id') AS SELECT f.id FROM ft_user f",
                "0A000",
                "TVIEW cannot read ft_user: it is a foreign table",
                "A TVIEW can read ordinary and partitioned tables",
            ),
            (
                "CREATE TABLE tv_sq AS SELECT s.last_value AS pk_sq FROM seq_e s",
                "0A000",
                "TVIEW cannot read seq_e: relations of kind 'S' cannot be captured",
                "A TVIEW can read ordinary and partitioned tables",
            ),
            (
                "CREATE TABLE tv_cls WITH (tviews.key = 'oid') AS SELECT c.oid, c.relname FROM pg_class c",
                "0A000",
                "TVIEW cannot read pg_catalog.pg_class: it is a system catalog (its changes fire no triggers, so they cannot be captured)",
                "A TVIEW can read ordinary and partitioned tables",
            ),
        ];
        for (sql, code, message, hint) in cases {
            expect_error(c, sql, code, message, Some(hint)).await?;
            ensure!(
                footprint(c).await? == before,
                "{sql}: left something behind: {}",
                footprint(c).await?
            );
        }
        db.assert_exact().await
    })
    .await
}

/// A definition PostgreSQL itself refuses while pg_tviews builds the
/// TVIEW's backing view: a data-modifying WITH.
#[tokio::test(flavor = "multi_thread")]
async fn definitions_postgresql_refuses() {
    run(|| async {
        let db = setup("err_pg_refused").await?;
        let c = &db.client;
        let before = footprint(c).await?;
        // CREATE VIEW refuses it; the UPDATE the statement ran first is
        // rolled back with it.
        expect_error(
            c,
            "CREATE TABLE tv_dml AS WITH d AS (UPDATE tb_user SET name = 'changed' RETURNING pk_user)
             SELECT d.pk_user AS pk_dml FROM d",
            "0A000",
            "views must not contain data-modifying statements in WITH",
            None,
        )
        .await?;
        ensure!(
            one_i64(c, "SELECT count(*) FROM tb_user WHERE name = 'changed'").await? == 0,
            "the refused statement's UPDATE survived"
        );
        ensure!(
            footprint(c).await? == before,
            "left behind: {}",
            footprint(c).await?
        );
        db.assert_exact().await
    })
    .await
}

/// A temporary table as a source: the backing view would be temporary;
/// pg_tviews says so, with PostgreSQL's refusal as the detail.
#[tokio::test(flavor = "multi_thread")]
async fn temporary_sources_are_refused() {
    run(|| async {
        let db = setup("err_temp_source").await?;
        let c = &db.client;
        c.batch_execute("CREATE TEMP TABLE tmp_user (id bigint PRIMARY KEY); INSERT INTO tmp_user VALUES (1)")
            .await?;
        let before = footprint(c).await?;
        for sql in [
            "CREATE TABLE tv_tmp WITH (tviews.key = 'id') AS SELECT t.id FROM tmp_user t",
            "CREATE TABLE tv_tmp AS SELECT p.pk_post AS pk_tmp FROM tb_post p JOIN tmp_user t ON t.id = p.fk_user",
            "SELECT pg_tviews_create('tv_tmp', 'SELECT t.id FROM tmp_user t', 'id')",
        ] {
            let f = expect_error(
                c,
                sql,
                "0A000",
                "TVIEW tv_tmp cannot read temporary tables",
                Some("A temporary table is visible to one session only: read permanent tables."),
            )
            .await?;
            // Its first line: through pg_tviews_create, a server started
            // with RUST_BACKTRACE set appends a Rust backtrace (reported).
            ensure!(
                f.detail.lines().next()
                    == Some("cannot create temporary relation in non-temporary schema"),
                "{sql}: detail {f:?}"
            );
            ensure!(
                footprint(c).await? == before,
                "{sql}: left behind: {}",
                footprint(c).await?
            );
        }
        db.assert_exact().await
    })
    .await
}

/// A CTE nothing reads is never run: what it reads is not a source, and
/// the TVIEW is created and maintained from the rest.
#[tokio::test(flavor = "multi_thread")]
async fn unused_ctes_are_accepted() {
    run(|| async {
        let db = setup("err_unused_cte").await?;
        let c = &db.client;
        c.batch_execute(
            "CREATE TABLE tv_x AS WITH unused AS (SELECT * FROM tb_user) SELECT p.pk_post AS pk_x, p.title FROM tb_post p",
        )
        .await?;
        ensure!(
            one_text(
                c,
                "SELECT string_agg(tviews.display_name(source), ',') FROM pg_tviews_sources()
                 WHERE tview = 'tv_x'::regclass"
            )
            .await?
                == "tb_post",
            "tv_x reads only tb_post"
        );
        c.batch_execute(
            "INSERT INTO tb_post VALUES (100, 1, 'new');
             UPDATE tb_post SET title = 'edited' WHERE pk_post = 3;
             DELETE FROM tb_post WHERE pk_post = 4;
             UPDATE tb_user SET name = 'renamed' WHERE pk_user = 1;",
        )
        .await?;
        ensure!(
            one_i64(c, "SELECT count(*) FROM tv_x").await? == 20
                && one_text(c, "SELECT title FROM tv_x WHERE pk_x = 3").await? == "edited"
                && one_text(c, "SELECT title FROM tv_x WHERE pk_x = 100").await? == "new",
            "tv_x was not maintained"
        );
        db.assert_exact().await
    })
    .await
}

/// CREATE TABLE tv_x AS under REPEATABLE READ or SERIALIZABLE.
#[tokio::test(flavor = "multi_thread")]
async fn create_under_repeatable_read_is_refused() {
    run(|| async {
        let db = setup("err_rr_create").await?;
        let c = &db.client;
        let before = footprint(c).await?;
        for level in ["REPEATABLE READ", "SERIALIZABLE"] {
            expect_error(
                c,
                &format!(
                    "BEGIN ISOLATION LEVEL {level};
                     CREATE TABLE tv_rr AS SELECT p.pk_post AS pk_rr, p.title FROM tb_post p"
                ),
                "0A000",
                "TVIEW \"tv_rr\" cannot be created under REPEATABLE READ or SERIALIZABLE",
                Some("Create TVIEWs in a READ COMMITTED transaction"),
            )
            .await?;
            c.batch_execute("ROLLBACK").await?;
        }
        ensure!(footprint(c).await? == before, "left behind");
        // The same statement in READ COMMITTED works.
        c.batch_execute("CREATE TABLE tv_rr AS SELECT p.pk_post AS pk_rr, p.title FROM tb_post p")
            .await?;
        db.assert_exact().await
    })
    .await
}

/// CREATE TABLE tv_x AS EXECUTE: refused, nothing created; a plain table
/// may still be made from a prepared statement.
#[tokio::test(flavor = "multi_thread")]
async fn create_as_execute_is_refused() {
    run(|| async {
        let db = setup("err_execute").await?;
        let c = &db.client;
        let before = footprint(c).await?;
        c.batch_execute("PREPARE q_exec AS SELECT p.pk_post AS pk_exec FROM tb_post p")
            .await?;
        expect_error(
            c,
            "CREATE TABLE tv_exec AS EXECUTE q_exec",
            "0A000",
            "CREATE TABLE ... AS EXECUTE cannot create a TVIEW",
            Some("Write the SELECT itself in the CREATE TABLE ... AS statement."),
        )
        .await?;
        ensure!(footprint(c).await? == before, "left behind");
        c.batch_execute("CREATE TABLE plain_exec AS EXECUTE q_exec")
            .await?;
        ensure!(one_i64(c, "SELECT count(*) FROM plain_exec").await? == 20);
        db.assert_exact().await
    })
    .await
}

/// pg_tviews_create and pg_tviews_create_or_replace refuse a name without
/// the tv_ prefix (they only make TVIEWs) and a NULL name or definition.
#[tokio::test(flavor = "multi_thread")]
async fn create_functions_check_their_arguments() {
    run(|| async {
        let db = setup("err_create_fn").await?;
        let c = &db.client;
        c.batch_execute("CREATE SCHEMA app").await?;
        let before = footprint(c).await?;
        for f in ["pg_tviews_create", "pg_tviews_create_or_replace"] {
            for (args, name, hint) in [
                ("'x_post', 'SELECT p.pk_post AS pk_x FROM tb_post p'", "x_post", "Name it tv_x_post."),
                ("'app.x_post', 'SELECT p.pk_post AS pk_x FROM tb_post p'", "app.x_post", "Name it tv_x_post."),
                ("'x_post', 'SELECT p.pk_post FROM tb_post p', 'pk_post'", "x_post", "Name it tv_x_post."),
            ] {
                let f = expect_error(
                    c,
                    &format!("SELECT {f}({args})"),
                    "42602",
                    &format!("a TVIEW's name starts with tv_: \"{name}\""),
                    Some(hint),
                )
                .await?;
                ensure!(
                    f.detail.contains("the functions follow the same rule"),
                    "{f:?}"
                );
            }
            for (args, what) in [
                ("NULL, 'SELECT p.pk_post FROM tb_post p'", "name"),
                ("NULL, NULL", "name"),
                ("'tv_post2', NULL", "definition"),
                ("'tv_post2', NULL, 'pk_post'", "definition"),
            ] {
                expect_error(
                    c,
                    &format!("SELECT {f}({args})"),
                    "22004",
                    &format!("the {what} of a TVIEW cannot be NULL"),
                    Some("Pass the TVIEW's name and its SELECT; only key_column may be NULL."),
                )
                .await?;
            }
        }
        ensure!(
            footprint(c).await? == before,
            "left behind: {}",
            footprint(c).await?
        );
        ensure!(
            one_i64(
                c,
                "SELECT count(*) FROM pg_class WHERE relname IN ('x_post', 'tv_post2')"
            )
            .await?
                == 0,
            "a table was created"
        );
        // A NULL key column takes the conventional one.
        c.batch_execute(
            "SELECT pg_tviews_create('tv_post2', 'SELECT p.pk_post AS pk_post2 FROM tb_post p', NULL)",
        )
        .await?;
        db.assert_exact().await
    })
    .await
}

/// The function API refuses names that are not TVIEWs.
#[tokio::test(flavor = "multi_thread")]
async fn functions_refuse_what_is_not_a_tview() {
    run(|| async {
        let db = setup("err_api").await?;
        let c = &db.client;
        let before = footprint(c).await?;
        for call in [
            "SELECT pg_tviews_drop('tb_user')",
            "SELECT pg_tviews_refresh('tb_user')",
            "SELECT pg_tviews_diff('tb_user')",
            "SELECT * FROM pg_tviews_verify('tb_user')",
            "SELECT pg_tviews_explain('tb_user')",
            "SELECT * FROM pg_tviews_statements('tb_user')",
        ] {
            expect_error(
                c,
                call,
                "42809",
                "\"tb_user\" is not a TVIEW",
                Some("TVIEWs are listed in tviews.tview"),
            )
            .await?;
            expect_error(
                c,
                &call.replace("tb_user", "tv_nothing"),
                "42P01",
                "relation \"tv_nothing\" does not exist",
                None,
            )
            .await?;
        }
        expect_error(
            c,
            "SELECT pg_tviews_create_or_replace('tb_user', 'SELECT u.pk_user, u.name FROM tb_user u')",
            "42809",
            "\"tb_user\" exists and is not a TVIEW",
            Some("Drop or rename the existing table first"),
        )
        .await?;
        ensure!(footprint(c).await? == before, "left behind");
        ensure!(
            one_i64(c, "SELECT count(*) FROM tb_user").await? == 5,
            "tb_user changed"
        );
        db.assert_exact().await
    })
    .await
}

/// pg_tviews_refresh is the owner's, as REFRESH MATERIALIZED VIEW: a role
/// that may read the TVIEW but does not own it gets 42501 and rebuilds
/// nothing; a member of the owner role may.
#[tokio::test(flavor = "multi_thread")]
async fn refresh_needs_ownership() {
    run(|| async {
        let db = setup("err_refresh_owner").await?;
        let c = &db.client;
        let (owner, member, reader) = (
            format!("{}_owner", db.name),
            format!("{}_member", db.name),
            format!("{}_reader", db.name),
        );
        c.batch_execute(&format!(
            "CREATE ROLE {owner}; CREATE ROLE {member} IN ROLE {owner}; CREATE ROLE {reader};
             GRANT SELECT ON tb_post, tb_user TO {owner};
             ALTER TABLE tv_post OWNER TO {owner};
             GRANT SELECT ON tv_post TO {reader};"
        ))
        .await?;
        let other = db.session().await?;
        let rebuilds = "SELECT coalesce(sum(full_rebuilds), 0)::bigint FROM pg_tviews_session_stats()";
        other.batch_execute(&format!("SET ROLE {reader}")).await?;
        ensure!(one_i64(&other, "SELECT count(*) FROM tv_post").await? == 20);
        expect_error(
            &other,
            "SELECT pg_tviews_refresh('tv_post')",
            "42501",
            "must be owner of TVIEW tv_post",
            Some("Ask its owner (or a superuser) to rebuild it."),
        )
        .await?;
        ensure!(
            one_i64(&other, rebuilds).await? == 0,
            "the refused refresh rebuilt something"
        );
        other
            .batch_execute(&format!("RESET ROLE; SET ROLE {member}"))
            .await?;
        ensure!(one_i64(&other, "SELECT pg_tviews_refresh('tv_post')").await? == 20);
        ensure!(one_i64(&other, rebuilds).await? == 1, "no rebuild counted");
        other.batch_execute("RESET ROLE").await?;
        drop(other);
        db.assert_exact().await?;
        c.batch_execute(&format!(
            "DROP TABLE tv_post; DROP OWNED BY {owner}, {member}, {reader}; DROP ROLE {member}, {reader}, {owner}"
        ))
        .await?;
        Ok(())
    })
    .await
}

/// A `tviews_guard` trigger made by hand (or by a broken restore) does not
/// make a table a TVIEW: a missing backing view, a view whose columns
/// differ, a second view for an existing TVIEW.
#[tokio::test(flavor = "multi_thread")]
async fn guard_triggers_that_do_not_describe_a_tview() {
    run(|| async {
        let db = setup("err_guard").await?;
        let c = &db.client;
        c.batch_execute(
            "CREATE TABLE tv_fake (pk_fake bigint PRIMARY KEY);
             CREATE VIEW public.v_outside AS SELECT p.pk_post AS pk_fake FROM tb_post p;
             CREATE VIEW tviews.v_wider AS SELECT p.pk_post AS pk_fake, p.title FROM tb_post p;",
        )
        .await?;
        let before = footprint(c).await?;
        let guard = |view: &str| {
            format!(
                "CREATE TRIGGER tviews_guard BEFORE INSERT OR UPDATE OR DELETE ON tv_fake
                 FOR EACH STATEMENT EXECUTE FUNCTION tviews.guard('pg_tviews:1', '{view}', 'pk_fake')"
            )
        };
        expect_error(
            c,
            &guard("tviews.tv_nothing"),
            "42P01",
            "the backing view tviews.tv_nothing of TVIEW tv_fake is missing",
            Some("Dump and restore schema tviews together with the TVIEWs' schemas"),
        )
        .await?;
        // A view outside schema tviews is not a backing view either.
        expect_error(
            c,
            &guard("public.v_outside"),
            "42P01",
            "the backing view public.v_outside of TVIEW tv_fake is missing",
            Some("Dump and restore schema tviews"),
        )
        .await?;
        expect_error(
            c,
            &guard("tviews.v_wider"),
            "42804",
            "table tv_fake does not have the columns of its TVIEW definition",
            Some("Restore the TVIEW's table and its backing view from the same dump"),
        )
        .await?;
        // An existing TVIEW's guard trigger replaced by one naming another view.
        let args = "SELECT encode(tgargs, 'escape') FROM pg_trigger WHERE tgrelid = 'tv_post'::regclass AND tgname = 'tviews_guard'";
        let args_before = one_text(c, args).await?;
        expect_error(
            c,
            "CREATE OR REPLACE TRIGGER tviews_guard BEFORE INSERT OR UPDATE OR DELETE ON tv_post
             FOR EACH STATEMENT EXECUTE FUNCTION tviews.guard('pg_tviews:1', 'tviews.v_wider', 'pk_post')",
            "42710",
            "TVIEW tv_post already has a backing view",
            Some("Do not create pg_tviews triggers by hand"),
        )
        .await?;
        ensure!(
            one_text(c, args).await? == args_before,
            "tv_post's guard trigger changed"
        );
        ensure!(
            footprint(c).await? == before,
            "left behind: {}",
            footprint(c).await?
        );
        c.batch_execute("UPDATE tb_user SET name = 'still maintained' WHERE pk_user = 1")
            .await?;
        db.assert_exact().await
    })
    .await
}

/// A definition that may return a NULL key (here the key comes from the
/// nullable side of a LEFT JOIN) is checked after each keyed refresh: a
/// change that makes it return one fails the writer's commit with 23502,
/// and the TVIEW stays exact. With `WHERE ... IS NOT NULL` on the key the
/// check is not needed, and not run.
#[tokio::test(flavor = "multi_thread")]
async fn null_key_at_refresh() {
    run(|| async {
        let db = setup("err_null_key").await?;
        let c = &db.client;
        c.batch_execute(
            "CREATE TABLE tv_uk WITH (tviews.key = 'pk_user') AS
               SELECT u.pk_user, p.title FROM tb_post p LEFT JOIN tb_user u ON u.pk_user = p.fk_user
               WHERE p.title LIKE 'solo%';
             CREATE TABLE tv_uk_set WITH (tviews.key = 'pk_user') AS
               SELECT u.pk_user, p.title FROM tb_post p LEFT JOIN tb_user u ON u.pk_user = p.fk_user
               WHERE p.title LIKE 'solo%' AND u.pk_user IS NOT NULL;
             INSERT INTO tb_post VALUES (2000, 1, 'solo 1');",
        )
        .await?;
        let posts = "SELECT count(*) FROM tb_post";
        let n_posts = one_i64(c, posts).await?;
        let tview = "SELECT string_agg(pk_user || ':' || title, ',' ORDER BY pk_user) FROM tv_uk";
        let rows = one_text(c, tview).await?;
        ensure!(rows == "1:solo 1", "tv_uk: {rows}");
        let null_key = |sql: &'static str| async move {
            let f = expect_error(
                c,
                sql,
                "23502",
                "TVIEW tv_uk: its definition returned a NULL key",
                Some(
                    "Filter out rows where \"pk_user\" is NULL in the definition (WHERE ... IS NOT NULL), or keep the change from making it NULL.",
                ),
            )
            .await?;
            ensure!(
                f.detail
                    == "After this transaction's changes the definition returns a row whose key column \"pk_user\" is NULL; a TVIEW cannot hold it.",
                "{sql}: {f:?}"
            );
            anyhow::Ok(())
        };
        // A solo post loses its user: key 1 is refreshed, and the check
        // finds the row whose key became NULL.
        null_key("UPDATE tb_post SET fk_user = NULL WHERE pk_post = 2000").await?;
        // The helper's repro, with a keyed refresh of tv_uk in the same
        // transaction (another solo post).
        null_key("INSERT INTO tb_post VALUES (3000, NULL, 'solo'), (3001, 2, 'solo 2')").await?;
        null_key(
            "BEGIN; INSERT INTO tb_post VALUES (3000, NULL, 'solo'); INSERT INTO tb_post VALUES (3001, 2, 'solo 2'); COMMIT",
        )
        .await?;
        c.batch_execute("ROLLBACK").await?;
        ensure!(one_i64(c, posts).await? == n_posts, "a write survived");
        ensure!(one_text(c, tview).await? == rows, "tv_uk changed");
        db.assert_exact().await?;

        // The same writes without tv_uk: tv_uk_set filters NULL keys out,
        // stays exact, and runs no NULL-key check (one statement per keyed
        // refresh where tv_uk runs two: the apply and the check).
        c.batch_execute(
            "SELECT pg_tviews_session_stats_reset();
             UPDATE tb_post SET title = 'solo one' WHERE pk_post = 2000;",
        )
        .await?;
        let statements = "SELECT string_agg(tview || '=' || refreshes || '/' || keys || '/' || statements, ',' ORDER BY tview)
                          FROM pg_tviews_session_stats() WHERE tview LIKE 'tv_uk%'";
        let counted = one_text(c, statements).await?;
        ensure!(
            counted == "tv_uk=1/1/2,tv_uk_set=1/1/1",
            "refreshes/keys/statements: {counted}"
        );
        c.batch_execute("DROP TABLE tv_uk").await?;
        c.batch_execute(
            "UPDATE tb_post SET fk_user = NULL WHERE pk_post = 2000;
             INSERT INTO tb_post VALUES (3000, NULL, 'solo'), (3001, 2, 'solo 2');",
        )
        .await?;
        ensure!(
            one_text(
                c,
                "SELECT string_agg(pk_user || ':' || title, ',' ORDER BY pk_user) FROM tv_uk_set"
            )
            .await?
                == "2:solo 2",
            "tv_uk_set"
        );
        db.assert_exact().await?;

        // A write whose only key is NULL from the start (a new solo post
        // without a user, alone in its transaction) queues no key: the
        // check still runs, since a source of a TVIEW whose key may be NULL
        // was written.
        c.batch_execute(
            "DELETE FROM tb_post WHERE pk_post >= 2000;
             CREATE TABLE tv_uk WITH (tviews.key = 'pk_user') AS
               SELECT u.pk_user, p.title FROM tb_post p LEFT JOIN tb_user u ON u.pk_user = p.fk_user
               WHERE p.title LIKE 'solo%';",
        )
        .await?;
        null_key("INSERT INTO tb_post VALUES (3000, NULL, 'solo')").await?;
        ensure!(
            one_i64(c, "SELECT count(*) FROM tb_post WHERE pk_post = 3000").await? == 0,
            "the write was not rolled back"
        );
        db.assert_exact().await?;
        // A full rebuild meets a NULL key too (here: one written with the
        // repair switch on, as a direct change of the source would).
        c.batch_execute(
            "ALTER TABLE tb_post DISABLE TRIGGER tviews_capture_ins;
             INSERT INTO tb_post VALUES (3000, NULL, 'solo');
             ALTER TABLE tb_post ENABLE TRIGGER tviews_capture_ins;",
        )
        .await?;
        expect_error(
            c,
            "SELECT pg_tviews_refresh('tv_uk')",
            "23502",
            "TVIEW tv_uk: its definition returned a NULL key",
            Some("Filter out rows where \"pk_user\" is NULL in the definition."),
        )
        .await?;
        c.batch_execute("DELETE FROM tb_post WHERE pk_post = 3000")
            .await?;
        db.assert_exact().await
    })
    .await
}

/// A deferred trigger on a TVIEW that writes its source again at every
/// refresh: the commit gives up after 1000 rounds (54000, with a hint) and
/// rolls back.
#[tokio::test(flavor = "multi_thread")]
async fn deferred_triggers_that_never_settle() {
    run(|| async {
        let db = Db::fresh("err_settle").await?;
        let c = &db.client;
        c.batch_execute(
            "CREATE TABLE tb_counter (pk_counter int PRIMARY KEY, n int);
             INSERT INTO tb_counter VALUES (1, 0);
             CREATE TABLE tv_counter AS SELECT c.pk_counter, c.n FROM tb_counter c;
             CREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN UPDATE tb_counter SET n = n + 1; RETURN NULL; END $$;
             CREATE CONSTRAINT TRIGGER bump AFTER INSERT OR UPDATE ON tv_counter
               DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION bump();",
        )
        .await?;
        let f = expect_error(
            c,
            "UPDATE tb_counter SET n = 5",
            "54000",
            "pg_tviews: refresh did not settle after 1000 rounds",
            Some(
                "A deferred trigger writes a source of a TVIEW each time the TVIEW is refreshed, so the refresh never ends: make the trigger write only when something changed (compare OLD and NEW), or not deferred.",
            ),
        )
        .await?;
        ensure!(
            f.detail
                == "Deferred triggers kept changing the sources of TVIEWs while they were refreshed.",
            "{f:?}"
        );
        ensure!(
            one_i64(c, "SELECT n::bigint FROM tb_counter").await? == 0,
            "the writer's transaction was not rolled back"
        );
        db.assert_exact().await
    })
    .await
}

/// A definition that no longer passes the analysis (here: a function it
/// calls was made VOLATILE after the TVIEW was created): writes to its
/// sources fail naming it, the other TVIEWs are maintained as usual, the
/// functions that read its plans raise the same error, and undoing the
/// change (seen by every session, without reconnecting) or dropping the
/// TVIEW ends it.
#[tokio::test(flavor = "multi_thread")]
async fn a_definition_that_stops_analysing_fails_writes() {
    run(|| async {
        let db = setup("err_reanalyse").await?;
        let c = &db.client;
        c.batch_execute(
            "CREATE FUNCTION f_up(text) RETURNS text IMMUTABLE LANGUAGE sql AS 'SELECT upper($1)';
             CREATE TABLE tb_tag (pk_tag int PRIMARY KEY, label text);
             INSERT INTO tb_tag VALUES (1, 'a');
             CREATE TABLE tv_tag AS SELECT t.pk_tag, f_up(t.label) AS label FROM tb_tag t;",
        )
        .await?;
        // Another session, whose plans are loaded before the change.
        let other = db.session().await?;
        other
            .batch_execute("UPDATE tb_tag SET label = 'a'; UPDATE tb_user SET name = 'loaded' WHERE pk_user = 1")
            .await?;
        c.batch_execute("ALTER FUNCTION f_up(text) VOLATILE").await?;
        let message = "TVIEW tv_tag cannot be maintained any more: TVIEW definition uses the volatile function f_up()";
        let hint = "Its definition stopped passing pg_tviews' checks after it was created (for example, a function it calls was made VOLATILE). Undo that change, or replace the TVIEW with pg_tviews_create_or_replace('tv_tag', ...), or DROP TABLE tv_tag.";
        for (client, sql) in [
            (c, "UPDATE tb_tag SET label = 'b'"),
            (&other, "UPDATE tb_tag SET label = 'b'"),
            (c, "INSERT INTO tb_tag VALUES (2, 'c')"),
            (c, "DELETE FROM tb_tag"),
            (c, "SELECT pg_tviews_diff('tv_tag')"),
            (c, "SELECT * FROM pg_tviews_verify('tv_tag')"),
            (c, "SELECT pg_tviews_explain('tv_tag')"),
            (c, "SELECT * FROM pg_tviews_statements('tv_tag')"),
        ] {
            let f = expect_error(client, sql, "0A000", message, Some(hint)).await?;
            ensure!(
                f.message == message
                    && f.detail
                        == "A volatile function can return a different value each time it is called, so no refresh could keep the TVIEW equal to its definition.",
                "{sql}: {f:?}"
            );
        }
        ensure!(
            one_text(c, "SELECT string_agg(label, ',') FROM tb_tag").await? == "a",
            "a write to tb_tag survived"
        );
        // Sources only other TVIEWs read: written and refreshed as usual.
        other
            .batch_execute(
                "UPDATE tb_user SET name = 'still maintained' WHERE pk_user = 2;
                 INSERT INTO tb_post VALUES (100, 2, 'new post');",
            )
            .await?;
        ensure!(
            one_i64(c, "SELECT pg_tviews_diff('tv_post')").await? == 0
                && one_i64(
                    c,
                    "SELECT count(*) FROM tv_post WHERE name = 'still maintained'"
                )
                .await?
                    == 5,
            "tv_post was not maintained"
        );
        // Nor can it be rebuilt.
        expect_error(
            c,
            "SELECT pg_tviews_refresh('tv_tag')",
            "0A000",
            "TVIEW tv_tag cannot be maintained any more",
            None,
        )
        .await?;
        // Undone: both sessions write again, without reconnecting.
        c.batch_execute("ALTER FUNCTION f_up(text) IMMUTABLE").await?;
        other.batch_execute("UPDATE tb_tag SET label = 'b'").await?;
        c.batch_execute("INSERT INTO tb_tag VALUES (2, 'c')").await?;
        ensure!(
            one_text(c, "SELECT string_agg(label, ',' ORDER BY pk_tag) FROM tv_tag").await?
                == "B,C"
        );
        db.assert_exact().await?;
        // Broken again: the TVIEWs can be dropped (DROP TABLE, or
        // pg_tviews_drop), and their source is then a plain table.
        c.batch_execute(
            "CREATE TABLE tv_tag2 AS SELECT t.pk_tag AS pk_tag2, f_up(t.label) AS label FROM tb_tag t;
             ALTER FUNCTION f_up(text) STABLE;",
        )
        .await?;
        expect_error(
            &other,
            "UPDATE tb_tag SET label = 'd'",
            "0A000",
            "cannot be maintained any more: the stable function public.f_up()",
            Some("Its definition stopped passing pg_tviews' checks after it was created"),
        )
        .await?;
        c.batch_execute("DROP TABLE tv_tag").await?;
        expect_error(
            &other,
            "UPDATE tb_tag SET label = 'd'",
            "0A000",
            "TVIEW tv_tag2 cannot be maintained any more: the stable function public.f_up()",
            Some("Its definition stopped passing pg_tviews' checks after it was created"),
        )
        .await?;
        c.batch_execute("SELECT pg_tviews_drop('tv_tag2')").await?;
        other.batch_execute("UPDATE tb_tag SET label = 'd'").await?;
        ensure!(
            one_i64(
                c,
                "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'tb_tag'::regclass"
            )
            .await?
                == 0,
            "capture triggers left on tb_tag"
        );
        db.assert_exact().await
    })
    .await
}

/// An error of the definition's own expressions at refresh time fails the
/// writer's statement (here, at commit) with PostgreSQL's SQLSTATE and
/// message; the detail names the TVIEW.
#[tokio::test(flavor = "multi_thread")]
async fn expression_errors_fail_the_writer() {
    run(|| async {
        let db = setup("err_expr").await?;
        let c = &db.client;
        c.batch_execute(
            "CREATE TABLE tv_ratio AS SELECT p.pk_post AS pk_ratio, 100 / p.score AS ratio FROM tb_post p;
             CREATE TABLE tv_doc AS SELECT p.pk_post AS pk_doc, p.title::jsonb AS doc FROM tb_post p WHERE p.title LIKE '{%';",
        )
        .await?;
        let f = expect_error(
            c,
            "BEGIN; UPDATE tb_post SET score = 0 WHERE pk_post = 3; COMMIT",
            "22012",
            "division by zero",
            None,
        )
        .await?;
        ensure!(
            f.message == "division by zero" && f.detail == "Raised while refreshing TVIEW tv_ratio.",
            "{f:?}"
        );
        c.batch_execute("ROLLBACK").await?;
        ensure!(
            one_i64(c, "SELECT score::bigint FROM tb_post WHERE pk_post = 3").await? == 3,
            "the writer's transaction was not rolled back"
        );
        // An error with a detail of its own keeps it, and names the TVIEW
        // after it.
        let f = expect_error(
            c,
            "INSERT INTO tb_post VALUES (100, 1, '{x')",
            "22P02",
            "invalid input syntax for type json",
            None,
        )
        .await?;
        ensure!(
            f.detail == "Token \"x\" is invalid.\n(while refreshing TVIEW tv_doc)",
            "{f:?}"
        );
        db.assert_exact().await
    })
    .await
}

/// pg_tviews' trigger and event trigger functions called by hand.
#[tokio::test(flavor = "multi_thread")]
async fn trigger_functions_called_by_hand() {
    run(|| async {
        let db = setup("err_trigger_fn").await?;
        let c = &db.client;
        expect_error(
            c,
            "SELECT tviews.capture()",
            "39P01",
            "tviews.capture() was not called as a trigger",
            Some("do not call it directly"),
        )
        .await?;
        c.batch_execute(
            "CREATE TRIGGER by_hand BEFORE INSERT ON tb_user FOR EACH ROW EXECUTE FUNCTION tviews.capture()",
        )
        .await?;
        expect_error(
            c,
            "INSERT INTO tb_user VALUES (100, 'by hand')",
            "39P01",
            "tviews.capture() must fire AFTER ... FOR EACH STATEMENT",
            None,
        )
        .await?;
        c.batch_execute("DROP TRIGGER by_hand ON tb_user").await?;
        for f in [
            "on_ddl_command_start",
            "on_ddl_command_end",
            "on_sql_drop",
            "on_ddl_watch",
        ] {
            expect_error(
                c,
                &format!("SELECT tviews.{f}()"),
                "39P01",
                "pg_tviews: not called as an event trigger",
                None,
            )
            .await?;
        }
        expect_error(
            c,
            "SELECT tviews.guard()",
            "39P01",
            "tviews.guard() was not called as a trigger",
            Some("It is installed by pg_tviews on every TVIEW; do not call it directly."),
        )
        .await?;
        ensure!(
            one_i64(c, "SELECT count(*) FROM tb_user").await? == 5,
            "tb_user changed"
        );
        db.assert_exact().await
    })
    .await
}

/// Functions only superusers may run.
#[tokio::test(flavor = "multi_thread")]
async fn superuser_functions_refuse_other_roles() {
    run(|| async {
        let db = setup("err_superuser").await?;
        let c = &db.client;
        let role = format!("{}_plain", db.name);
        c.batch_execute(&format!("CREATE ROLE {role}")).await?;
        let other = db.session().await?;
        other.batch_execute(&format!("SET ROLE {role}")).await?;
        expect_error(
            &other,
            "SELECT pg_tviews_stats_reset()",
            "42501",
            "permission denied for function pg_tviews_stats_reset",
            None,
        )
        .await?;
        expect_error(
            &other,
            "SELECT tviews.reconcile_triggers()",
            "42501",
            "permission denied for function reconcile_triggers",
            None,
        )
        .await?;
        other.batch_execute("RESET ROLE").await?;
        drop(other);
        c.batch_execute(&format!("DROP ROLE {role}")).await?;
        Ok(())
    })
    .await
}

/// Waits until the backend `pid` waits for a heavyweight lock.
async fn wait_for_lock_wait(c: &Client, pid: i32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let waiting: bool = c
            .query_one(
                "SELECT coalesce(bool_or(wait_event_type = 'Lock'), false) FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .await?
            .get(0);
        if waiting {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("backend {pid} never waited for a lock");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// In `refresh_mode = statement` value locks are taken statement by
/// statement: two transactions that write posts of each other's user
/// deadlock on them (not on any row), and PostgreSQL aborts one with 40P01.
#[tokio::test(flavor = "multi_thread")]
async fn statement_mode_deadlock() {
    run(|| async {
        let db = setup("err_deadlock").await?;
        let a = Arc::new(db.session().await?);
        let b = db.session().await?;
        let start = "BEGIN; SET LOCAL pg_tviews.refresh_mode = statement; SET LOCAL deadlock_timeout = '200ms';";
        a.batch_execute(&format!("{start} INSERT INTO tb_post VALUES (101, 1, 'a1')"))
            .await?;
        b.batch_execute(&format!("{start} INSERT INTO tb_post VALUES (102, 2, 'b2')"))
            .await?;
        let a_pid: i32 = a.query_one("SELECT pg_backend_pid()", &[]).await?.get(0);
        // A writes a post of user 2, whose value B holds: A waits.
        let a2 = Arc::clone(&a);
        let a_insert = tokio::spawn(async move {
            a2.batch_execute("INSERT INTO tb_post VALUES (103, 2, 'a2')")
                .await
        });
        wait_for_lock_wait(&db.client, a_pid).await?;
        // B writes a post of user 1, whose value A holds: a cycle.
        let b_result = b
            .batch_execute("INSERT INTO tb_post VALUES (104, 1, 'b1')")
            .await;
        let a_result = tokio::time::timeout(Duration::from_secs(60), a_insert)
            .await
            .context("A's INSERT still waits")??;
        let failed: Vec<&tokio_postgres::Error> = [&a_result, &b_result]
            .into_iter()
            .filter_map(|r| r.as_ref().err())
            .collect();
        ensure!(
            failed.len() == 1,
            "expected one deadlock victim: A {a_result:?}, B {b_result:?}"
        );
        let err = failed[0];
        ensure!(
            sqlstate(err).as_deref() == Some("40P01")
                && err
                    .as_db_error()
                    .is_some_and(|d| d.message().contains("deadlock detected")),
            "{err:?}"
        );
        // The victim rolls back; the other commits.
        for (client, result) in [(&*a, &a_result), (&b, &b_result)] {
            let end = if result.is_err() { "ROLLBACK" } else { "COMMIT" };
            client.batch_execute(end).await?;
        }
        ensure!(
            one_i64(
                &db.client,
                "SELECT count(*) FROM tb_post WHERE pk_post BETWEEN 101 AND 104"
            )
            .await?
                == 2,
            "exactly the survivor's two posts"
        );
        db.assert_exact().await
    })
    .await
}
