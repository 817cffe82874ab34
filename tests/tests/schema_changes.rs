//! Schema changes of sources and TVIEWs (issue 8, docs/OPERATIONS.md):
//! one test per DDL, each asserting the state after it — the catalog, the
//! triggers pg_tviews keeps on sources and TVIEWs, the TVIEWs' contents —
//! never an orphaned trigger or catalog row, never a silently stale TVIEW.

use anyhow::{Context, Result, ensure};
use tokio_postgres::Client;
use tviews_tests::support::{Db, run, sqlstate};

/// tb_user → tv_post ← tb_post, and a cascade tv_feed reading tv_post.
const SCHEMA: &str = "
CREATE TABLE tb_user (pk_user bigint PRIMARY KEY, name text, email text, born date);
CREATE TABLE tb_post (pk_post bigint PRIMARY KEY, fk_user bigint REFERENCES tb_user, title text, score int);
INSERT INTO tb_user SELECT i, 'user ' || i, 'u' || i || '@x', date '2000-01-01' + i FROM generate_series(1, 10) i;
INSERT INTO tb_post SELECT i, 1 + i % 10, 'post ' || i, i FROM generate_series(1, 50) i;
CREATE TABLE tv_post AS
SELECT p.pk_post, p.fk_user, jsonb_build_object('title', p.title, 'author', u.name) AS data
FROM tb_post p JOIN tb_user u ON u.pk_user = p.fk_user;
CREATE TABLE tv_feed AS
SELECT u.pk_user AS pk_feed, u.name,
       (SELECT count(*) FROM tv_post tp WHERE tp.fk_user = u.pk_user) AS posts
FROM tb_user u;
";

async fn setup(prefix: &str) -> Result<Db> {
    let db = Db::fresh(prefix).await?;
    db.client.batch_execute(SCHEMA).await?;
    Ok(db)
}

async fn one_i64(c: &Client, sql: &str) -> Result<i64> {
    Ok(c.query_one(sql, &[])
        .await
        .with_context(|| sql.to_string())?
        .get(0))
}

async fn one_text(c: &Client, sql: &str) -> Result<String> {
    Ok(c.query_one(sql, &[])
        .await
        .with_context(|| sql.to_string())?
        .get(0))
}

/// The triggers pg_tviews keeps, as `table:trigger` lines, sorted.
async fn triggers(c: &Client) -> Result<Vec<String>> {
    Ok(c.query(
        "SELECT tviews.display_name(tgrelid) || ':' || tgname FROM pg_trigger
         WHERE tgfoid IN ('tviews.capture()'::regprocedure, 'tviews.guard()'::regprocedure)
         ORDER BY 1",
        &[],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

fn expected_triggers(sources: &[&str], tviews: &[&str]) -> Vec<String> {
    let mut v: Vec<String> =
        sources
            .iter()
            .flat_map(|s| {
                [
                    "tviews_capture_del",
                    "tviews_capture_ins",
                    "tviews_capture_trunc",
                    "tviews_capture_upd",
                ]
                .map(|t| format!("{s}:{t}"))
            })
            .chain(tviews.iter().flat_map(|t| {
                ["tviews_guard", "tviews_guard_truncate"].map(|g| format!("{t}:{g}"))
            }))
            .collect();
    v.sort();
    v
}

async fn tviews(c: &Client) -> Result<Vec<String>> {
    Ok(c.query(
        "SELECT tviews.display_name(relid) FROM tviews.tview ORDER BY 1",
        &[],
    )
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// Writes touching every source; then every TVIEW must be exact.
async fn write_and_check(db: &Db, user_table: &str, post_table: &str) -> Result<()> {
    let c = &db.client;
    c.batch_execute(&format!(
        "UPDATE {user_table} SET name = name || '!' WHERE pk_user = 2;
         INSERT INTO {post_table} (pk_post, fk_user) VALUES ((SELECT max(pk_post) + 1 FROM {post_table}), 3);
         DELETE FROM {post_table} WHERE pk_post = 4;"
    ))
    .await?;
    db.assert_exact().await
}

async fn expect_error(c: &Client, sql: &str, code: &str) -> Result<String> {
    let err = c
        .batch_execute(sql)
        .await
        .err()
        .with_context(|| format!("succeeded: {sql}"))?;
    let db = err.as_db_error().context("not a server error")?;
    ensure!(
        sqlstate(&err).as_deref() == Some(code),
        "{sql}: expected {code}, got {err:?}"
    );
    Ok(format!(
        "{} {} {}",
        db.message(),
        db.detail().unwrap_or(""),
        db.hint().unwrap_or("")
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn rename_source_table() {
    run(|| async {
        let db = setup("ddl_rename_table").await?;
        let c = &db.client;
        let before = triggers(c).await?;
        // Another session has the plans of the old name cached.
        let other = db.session().await?;
        other
            .batch_execute("UPDATE tb_user SET name = 'warm' WHERE pk_user = 1")
            .await?;
        c.batch_execute("ALTER TABLE tb_user RENAME TO tb_person")
            .await?;
        let mut expected: Vec<String> = before
            .iter()
            .map(|t| t.replace("tb_user:", "tb_person:"))
            .collect();
        expected.sort();
        ensure!(
            triggers(c).await? == expected,
            "triggers: {:?}",
            triggers(c).await?
        );
        other
            .batch_execute("UPDATE tb_person SET name = 'after rename' WHERE pk_user = 1")
            .await?;
        ensure!(
            one_text(c, "SELECT data->>'author' FROM tv_post WHERE pk_post = 10").await?
                == "after rename",
            "tv_post not maintained after the rename"
        );
        write_and_check(&db, "tb_person", "tb_post").await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rename_source_column() {
    run(|| async {
        let db = setup("ddl_rename_column").await?;
        let c = &db.client;
        let other = db.session().await?;
        other
            .batch_execute("UPDATE tb_post SET title = 'warm' WHERE pk_post = 1")
            .await?;
        c.batch_execute(
            "ALTER TABLE tb_post RENAME COLUMN title TO headline;
             ALTER TABLE tb_user RENAME COLUMN pk_user TO id",
        )
        .await?;
        other
            .batch_execute(
                "UPDATE tb_post SET headline = 'renamed column' WHERE pk_post = 1;
                 UPDATE tb_user SET name = 'by id' WHERE id = 2",
            )
            .await?;
        ensure!(
            one_text(c, "SELECT data->>'title' FROM tv_post WHERE pk_post = 1").await?
                == "renamed column",
            "tv_post not maintained after renaming a column"
        );
        ensure!(
            one_text(c, "SELECT name FROM tv_feed WHERE pk_feed = 2").await? == "by id",
            "tv_feed not maintained after renaming its key's source column"
        );
        c.batch_execute("INSERT INTO tb_user (id, name) VALUES (77, 'new'); DELETE FROM tb_post WHERE fk_user = 3")
            .await?;
        db.assert_exact().await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn add_column_and_index_to_a_source_change_nothing() {
    run(|| async {
        let db = setup("ddl_add_column").await?;
        let c = &db.client;
        let before = triggers(c).await?;
        let digest = "SELECT md5(string_agg(t::text, ',' ORDER BY pk_post)) FROM tv_post t";
        let contents = one_text(c, digest).await?;
        c.batch_execute(
            "ALTER TABLE tb_post ADD COLUMN extra text DEFAULT 'x';
             CREATE INDEX ON tb_post (fk_user, title);
             ALTER TABLE tb_user ADD COLUMN nickname text;
             ALTER TABLE tb_post DROP COLUMN extra;
             ALTER TABLE tb_user ALTER COLUMN email TYPE varchar(200);",
        )
        .await?;
        ensure!(triggers(c).await? == before, "triggers changed");
        ensure!(one_text(c, digest).await? == contents, "tv_post changed");
        ensure!(
            tviews(c).await? == ["tv_feed", "tv_post"],
            "catalog changed"
        );
        write_and_check(&db, "tb_user", "tb_post").await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_or_retype_a_used_column_is_refused() {
    run(|| async {
        let db = setup("ddl_drop_column").await?;
        let c = &db.client;
        c.batch_execute("CREATE TABLE tv_user AS SELECT pk_user, email FROM tb_user")
            .await?;
        let before = triggers(c).await?;
        let msg = expect_error(c, "ALTER TABLE tb_user DROP COLUMN name", "2BP01").await?;
        ensure!(
            msg.contains("table tv_post depends on column name"),
            "the error does not name the TVIEW: {msg}"
        );
        let msg = expect_error(
            c,
            "ALTER TABLE tb_post ALTER COLUMN title TYPE varchar(10)",
            "0A000",
        )
        .await?;
        ensure!(
            msg.contains("tviews.tv_post"),
            "the error does not name the TVIEW: {msg}"
        );
        ensure!(
            triggers(c).await? == before,
            "a refused DDL changed triggers"
        );
        ensure!(
            tviews(c).await? == ["tv_feed", "tv_post", "tv_user"],
            "a refused DDL changed the catalog"
        );
        write_and_check(&db, "tb_user", "tb_post").await?;

        // CASCADE drops the TVIEW that needs the column, and tv_feed which
        // reads it; tv_user does not need it and stays.
        c.batch_execute("ALTER TABLE tb_post DROP COLUMN title CASCADE")
            .await?;
        ensure!(
            tviews(c).await? == ["tv_user"],
            "catalog after CASCADE: {:?}",
            tviews(c).await?
        );
        ensure!(
            one_i64(c, "SELECT count(*) FROM pg_class WHERE relname = 'tv_post'").await? == 0,
            "tv_post survived"
        );
        ensure!(
            triggers(c).await? == expected_triggers(&["tb_user"], &["tv_user"]),
            "triggers after CASCADE: {:?}",
            triggers(c).await?
        );
        c.batch_execute("UPDATE tb_user SET email = 'new@x' WHERE pk_user = 1")
            .await?;
        db.assert_exact().await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_a_source_table() {
    run(|| async {
        let db = setup("ddl_drop_source").await?;
        let c = &db.client;
        let msg = expect_error(c, "DROP TABLE tb_post", "2BP01").await?;
        ensure!(msg.contains("tv_post"), "the error does not name the TVIEW: {msg}");
        ensure!(tviews(c).await? == ["tv_feed", "tv_post"], "a refused DROP changed the catalog");
        write_and_check(&db, "tb_user", "tb_post").await?;
        // CASCADE: tv_post reads tb_post, tv_feed reads tv_post: both go,
        // and no trigger is left on tb_user (no TVIEW reads it any more).
        c.batch_execute("DROP TABLE tb_post CASCADE").await?;
        ensure!(tviews(c).await?.is_empty(), "catalog after CASCADE: {:?}", tviews(c).await?);
        ensure!(triggers(c).await?.is_empty(), "orphaned triggers: {:?}", triggers(c).await?);
        ensure!(
            one_i64(c, "SELECT count(*) FROM pg_class WHERE relnamespace = 'tviews'::regnamespace AND relkind = 'v'").await? == 0,
            "backing views left"
        );
        // tb_user is a plain table again.
        c.batch_execute("UPDATE tb_user SET name = 'free' WHERE pk_user = 1; TRUNCATE tb_user").await?;
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rename_and_move_a_tview() {
    run(|| async {
        let db = setup("ddl_rename_tview").await?;
        let c = &db.client;
        let other = db.session().await?;
        other
            .batch_execute("UPDATE tb_post SET title = 'warm' WHERE pk_post = 1")
            .await?;
        c.batch_execute(
            "ALTER TABLE tv_post RENAME TO tv_article;
             CREATE SCHEMA api;
             ALTER TABLE tv_feed SET SCHEMA api;",
        )
        .await?;
        ensure!(tviews(c).await? == ["api.tv_feed", "tv_article"], "catalog: {:?}", tviews(c).await?);
        ensure!(
            triggers(c).await? == expected_triggers(&["tb_post", "tb_user", "tv_article"], &["api.tv_feed", "tv_article"]),
            "triggers: {:?}",
            triggers(c).await?
        );
        other
            .batch_execute("UPDATE tb_post SET title = 'after move' WHERE pk_post = 1; INSERT INTO tb_post VALUES (500, 2, 'new', 1)")
            .await?;
        ensure!(
            one_text(c, "SELECT data->>'title' FROM tv_article WHERE pk_post = 1").await? == "after move",
            "renamed TVIEW not maintained"
        );
        ensure!(
            one_i64(c, "SELECT posts FROM api.tv_feed WHERE pk_feed = 2").await?
                == one_i64(c, "SELECT count(*) FROM tb_post WHERE fk_user = 2").await?,
            "moved TVIEW not maintained"
        );
        // Monitoring and the API know the new names.
        ensure!(
            one_i64(c, "SELECT count(*) FROM pg_tviews_verify('api.tv_feed')").await? == 0,
            "verify by the new name"
        );
        // The old name is free for a new TVIEW.
        c.batch_execute("CREATE TABLE tv_post AS SELECT pk_post, title FROM tb_post").await?;
        ensure!(tviews(c).await? == ["api.tv_feed", "tv_article", "tv_post"], "catalog: {:?}", tviews(c).await?);
        write_and_check(&db, "tb_user", "tb_post").await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tview_keeps_the_columns_of_its_definition() {
    run(|| async {
        let db = setup("ddl_tview_columns").await?;
        let c = &db.client;
        for sql in [
            "ALTER TABLE tv_post ADD COLUMN note text",
            "ALTER TABLE tv_post DROP COLUMN data",
            "ALTER TABLE tv_post RENAME COLUMN data TO doc",
            "ALTER TABLE tv_post ALTER COLUMN data TYPE json",
        ] {
            let msg = expect_error(c, sql, "0A000").await?;
            ensure!(msg.contains("pg_tviews_create_or_replace"), "no hint: {msg}");
        }
        // What does not touch columns is allowed.
        c.batch_execute(
            "CREATE INDEX ON tv_post ((data->>'title'));
             ALTER TABLE tv_post SET (fillfactor = 90);
             ALTER TABLE tv_post ALTER COLUMN data SET STATISTICS 200;
             COMMENT ON TABLE tv_post IS 'posts';",
        )
        .await?;
        write_and_check(&db, "tb_user", "tb_post").await?;

        // A new owner: the backing view follows, and refresh runs as them.
        c.batch_execute(
            "CREATE ROLE ddl_tview_owner;
             GRANT SELECT ON tb_user, tb_post TO ddl_tview_owner;
             GRANT USAGE ON SCHEMA tviews TO ddl_tview_owner;
             ALTER TABLE tv_post OWNER TO ddl_tview_owner;",
        )
        .await?;
        ensure!(
            one_text(c, "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = 'tviews.tv_post'::regclass").await?
                == "ddl_tview_owner",
            "the backing view kept its old owner"
        );
        write_and_check(&db, "tb_user", "tb_post").await?;
        // The new owner loses a right the definition needs: refresh fails
        // (as REFRESH MATERIALIZED VIEW would), nothing is written.
        c.batch_execute("REVOKE SELECT ON tb_user FROM ddl_tview_owner").await?;
        expect_error(c, "UPDATE tb_user SET name = 'x' WHERE pk_user = 1", "42501").await?;
        c.batch_execute("GRANT SELECT ON tb_user TO ddl_tview_owner").await?;
        write_and_check(&db, "tb_user", "tb_post").await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_backing_view_belongs_to_its_tview() {
    run(|| async {
        let db = setup("ddl_backing_view").await?;
        let c = &db.client;
        expect_error(
            c,
            "CREATE OR REPLACE VIEW tviews.tv_post AS SELECT p.pk_post, p.fk_user, '{}'::jsonb AS data FROM tb_post p",
            "0A000",
        )
        .await?;
        expect_error(
            c,
            "CREATE SCHEMA elsewhere; ALTER VIEW tviews.tv_post SET SCHEMA elsewhere",
            "0A000",
        )
        .await?;
        expect_error(c, "CREATE ROLE ddl_view_other; ALTER VIEW tviews.tv_post OWNER TO ddl_view_other", "0A000").await?;
        expect_error(c, "DROP VIEW tviews.tv_post", "2BP01").await?;
        // Renaming it is harmless: the guard trigger's arguments follow
        // (a dump must name the view as it is).
        c.batch_execute("ALTER VIEW tviews.tv_post RENAME TO tv_post_definition").await?;
        let args = one_text(
            c,
            "SELECT encode(tgargs, 'escape') FROM pg_trigger WHERE tgrelid = 'tv_post'::regclass AND tgname = 'tviews_guard'",
        )
        .await?;
        ensure!(args.contains("tviews.tv_post_definition"), "guard arguments: {args}");
        write_and_check(&db, "tb_user", "tb_post").await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn triggers_of_pg_tviews_are_its_own() {
    run(|| async {
        let db = setup("ddl_triggers").await?;
        let c = &db.client;
        let before = triggers(c).await?;
        let msg = expect_error(c, "DROP TRIGGER tviews_capture_ins ON tb_post", "2BP01").await?;
        ensure!(msg.contains("tv_post"), "the error does not name the TVIEW: {msg}");
        expect_error(c, "DROP TRIGGER tviews_guard ON tv_post", "2BP01").await?;
        expect_error(c, "ALTER TRIGGER tviews_capture_upd ON tb_user RENAME TO mine", "0A000").await?;
        ensure!(triggers(c).await? == before, "triggers changed");
        // Disabling capture is the owner's choice: the TVIEW goes stale and
        // the health check says so; enabling and a refresh repair it.
        c.batch_execute(
            "ALTER TABLE tb_post DISABLE TRIGGER tviews_capture_upd;
             UPDATE tb_post SET title = 'unseen' WHERE pk_post = 3;",
        )
        .await?;
        ensure!(
            one_text(c, "SELECT severity FROM pg_tviews_health_check() WHERE check_name = 'capture triggers'").await?
                == "error",
            "the health check misses a disabled capture trigger"
        );
        ensure!(one_i64(c, "SELECT pg_tviews_diff('tv_post')").await? > 0, "tv_post should be stale");
        c.batch_execute(
            "ALTER TABLE tb_post ENABLE TRIGGER tviews_capture_upd;
             SELECT pg_tviews_refresh('tv_post'); SELECT pg_tviews_refresh('tv_feed');",
        )
        .await?;
        write_and_check(&db, "tb_user", "tb_post").await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn drop_extension() {
    run(|| async {
        let db = setup("ddl_drop_extension").await?;
        let c = &db.client;
        let msg = expect_error(c, "DROP EXTENSION pg_tviews", "2BP01").await?;
        ensure!(msg.contains("CASCADE"), "no hint: {msg}");
        ensure!(tviews(c).await? == ["tv_feed", "tv_post"], "a refused DROP changed the catalog");
        write_and_check(&db, "tb_user", "tb_post").await?;

        c.batch_execute("DROP EXTENSION pg_tviews CASCADE").await?;
        for (what, sql) in [
            ("schema tviews", "SELECT count(*) FROM pg_namespace WHERE nspname = 'tviews'"),
            ("TVIEW tables", "SELECT count(*) FROM pg_class WHERE relname IN ('tv_post', 'tv_feed')"),
            ("triggers", "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'tviews\\_%'"),
            ("event triggers", "SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'tviews\\_%'"),
            ("functions", "SELECT count(*) FROM pg_proc WHERE proname LIKE 'pg\\_tviews\\_%'"),
            ("views", "SELECT count(*) FROM pg_class WHERE relname LIKE 'pg\\_tviews\\_%'"),
        ] {
            let n = one_i64(c, sql).await?;
            ensure!(n == 0, "{n} {what} left after DROP EXTENSION CASCADE");
        }
        // The sources are plain tables again, and the extension comes back.
        c.batch_execute(
            "UPDATE tb_user SET name = 'plain' WHERE pk_user = 1; DELETE FROM tb_post WHERE pk_post = 1;
             CREATE EXTENSION pg_tviews;
             CREATE TABLE tv_post AS SELECT p.pk_post, p.title FROM tb_post p;",
        )
        .await?;
        write_and_check(&db, "tb_user", "tb_post").await
    })
    .await;
}
