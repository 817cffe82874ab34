//! The engine end to end: CREATE/DROP TVIEW, capture of every kind of
//! write, flush at commit, rollbacks, rejections. Each test has a database
//! of its own on one shared cluster, and checks every TVIEW against its
//! definition after the writes it makes.

use anyhow::{Context, Result, ensure};
use tviews_tests::support::{Db, run, sqlstate};

const SEED_SCHEMA: &str = "
CREATE TABLE tb_user (pk_user bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text, email text);
CREATE TABLE tb_post (pk_post bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, fk_user bigint REFERENCES tb_user, title text);
INSERT INTO tb_user (name, email) VALUES ('alice', 'a@x'), ('bob', 'b@x');
";

const TV_POST: &str = "
CREATE TABLE tv_post AS
SELECT p.pk_post, p.fk_user,
       jsonb_build_object('id', p.pk_post, 'title', p.title,
                          'author', jsonb_build_object('id', u.pk_user, 'name', u.name)) AS data
FROM tb_post p JOIN tb_user u ON u.pk_user = p.fk_user";

async fn seed(prefix: &str) -> Result<Db> {
    let db = Db::fresh(prefix).await?;
    db.client.batch_execute(SEED_SCHEMA).await?;
    db.client.batch_execute(TV_POST).await?;
    Ok(db)
}

async fn count(db: &Db, sql: &str) -> Result<i64> {
    Ok(db
        .client
        .query_one(sql, &[])
        .await
        .with_context(|| sql.to_string())?
        .get(0))
}

#[tokio::test(flavor = "multi_thread")]
async fn seed_example_is_maintained() {
    run(|| async {
        let db = seed("seed").await?;
        let c = &db.client;
        c.batch_execute("INSERT INTO tb_post (fk_user, title) VALUES (1, 'Learning Rust')")
            .await?;
        let data: serde_json::Value = c
            .query_one("SELECT data FROM tv_post WHERE pk_post = 1", &[])
            .await?
            .get(0);
        assert_eq!(data["author"]["name"], "alice");
        c.batch_execute("INSERT INTO tb_post (fk_user, title) VALUES (1, 'Second'), (2, 'Bob''s')")
            .await?;
        c.batch_execute("UPDATE tb_user SET name = 'Alice B.' WHERE pk_user = 1")
            .await?;
        let names: Vec<String> = c
            .query(
                "SELECT data->'author'->>'name' FROM tv_post ORDER BY pk_post",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(names, ["Alice B.", "Alice B.", "bob"]);
        // A post moving to another author, a deleted post, an unrelated column.
        c.batch_execute("UPDATE tb_post SET fk_user = 2 WHERE pk_post = 1")
            .await?;
        c.batch_execute("DELETE FROM tb_post WHERE pk_post = 2")
            .await?;
        c.batch_execute("UPDATE tb_user SET email = 'new@x'")
            .await?;
        db.assert_exact().await?;
        ensure!(count(&db, "SELECT count(*) FROM tv_post").await? == 2);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn ctas_semantics_and_catalog() {
    run(|| async {
        let db = Db::fresh("ctas").await?;
        let c = &db.client;
        c.batch_execute(SEED_SCHEMA).await?;
        c.batch_execute("INSERT INTO tb_post (fk_user, title) VALUES (1, 'a'), (2, 'b'), (1, 'c')")
            .await?;
        // The command tag of CREATE TABLE AS: SELECT n.
        let n = c.execute(TV_POST, &[]).await?;
        assert_eq!(n, 3);
        // IF NOT EXISTS on an existing TVIEW: a notice, nothing else.
        c.batch_execute(&TV_POST.replace("CREATE TABLE tv_post", "CREATE TABLE IF NOT EXISTS tv_post"))
            .await?;
        ensure!(count(&db, "SELECT count(*) FROM tviews.tview").await? == 1);
        // Primary key on the key column, backing view, capture triggers.
        let pk: String = c
            .query_one(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'tv_post'::regclass AND contype = 'p'",
                &[],
            )
            .await?
            .get(0);
        assert_eq!(pk, "PRIMARY KEY (pk_post)");
        ensure!(count(&db, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'tb_post'::regclass AND tgname LIKE 'tviews_capture_%'").await? == 4);
        ensure!(count(&db, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'tb_user'::regclass AND tgname LIKE 'tviews_capture_%'").await? == 4);
        // DROP TABLE removes all of it.
        c.batch_execute("DROP TABLE tv_post").await?;
        ensure!(count(&db, "SELECT count(*) FROM tviews.tview").await? == 0);
        ensure!(count(&db, "SELECT count(*) FROM pg_class WHERE relnamespace = 'tviews'::regnamespace AND relkind = 'v'").await? == 0);
        ensure!(count(&db, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'tviews_capture_%'").await? == 0);

        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn explicit_key_column_and_function_api() {
    run(|| async {
        let db = Db::fresh("api").await?;
        let c = &db.client;
        c.batch_execute(SEED_SCHEMA).await?;
        c.batch_execute(
            "CREATE TABLE tv_author WITH (tviews.key = 'id') AS SELECT u.pk_user AS id, u.name FROM tb_user u",
        )
        .await?;
        c.batch_execute("UPDATE tb_user SET name = 'x' WHERE pk_user = 2").await?;
        db.assert_exact().await?;
        // The function forms.
        c.batch_execute(
            "SELECT pg_tviews_create('tv_titles', 'SELECT p.pk_post AS pk_titles, p.title FROM tb_post p');
             INSERT INTO tb_post (fk_user, title) VALUES (1, 'f');",
        )
        .await?;
        db.assert_exact().await?;
        c.batch_execute(
            "SELECT pg_tviews_create_or_replace('tv_titles', 'SELECT p.pk_post AS pk_titles, upper(p.title) AS title FROM tb_post p')",
        )
        .await?;
        let t: String = c.query_one("SELECT title FROM tv_titles", &[]).await?.get(0);
        assert_eq!(t, "F");
        c.batch_execute("SELECT pg_tviews_drop('tv_titles')").await?;
        ensure!(count(&db, "SELECT count(*) FROM tviews.tview").await? == 1);
        // A second statement smuggled into the definition is refused.
        let err = c
            .batch_execute("SELECT pg_tviews_create('tv_x', 'SELECT 1 AS pk_x; DROP TABLE tb_post')")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("42601"));
        Ok(())
    })
    .await
}

/// Each rejected definition gets a SQLSTATE, a message and a hint, and
/// leaves nothing behind.
#[tokio::test(flavor = "multi_thread")]
async fn rejections_leave_nothing_behind() {
    run(|| async {
        let db = Db::fresh("reject").await?;
        let c = &db.client;
        c.batch_execute(SEED_SCHEMA).await?;
        c.batch_execute("INSERT INTO tb_post (fk_user, title) VALUES (1, 'a'), (1, 'b')").await?;
        c.batch_execute("CREATE FUNCTION f_stable(int) RETURNS int STABLE LANGUAGE sql AS 'SELECT count(*)::int FROM tb_user'")
            .await?;
        let cases = [
            ("CREATE TABLE tv_fn AS SELECT p.pk_post AS pk_fn, f_stable(1) AS n FROM tb_post p", "0A000"),
            ("CREATE TABLE tv_nokey AS SELECT p.title FROM tb_post p", "42703"),
            ("CREATE TABLE tv_dup AS SELECT p.fk_user AS pk_dup FROM tb_post p", "23505"),
            ("CREATE TABLE tv_null AS SELECT u.pk_user AS pk_null, p.title FROM tb_post p LEFT JOIN tb_user u ON u.pk_user = p.fk_user + 100", "23502"),
            ("CREATE TABLE tv_rand AS SELECT p.pk_post AS pk_rand, random() AS r FROM tb_post p", "0A000"),
            ("CREATE TABLE tv_now AS SELECT p.pk_post AS pk_now, now() AS t FROM tb_post p", "0A000"),
            ("CREATE TABLE tv_lim AS SELECT p.pk_post AS pk_lim FROM tb_post p LIMIT 1", "0A000"),
            ("CREATE TABLE tv_win AS SELECT p.pk_post AS pk_win, rank() OVER (ORDER BY p.title) FROM tb_post p", "0A000"),
            ("CREATE TABLE tv_expr AS SELECT p.pk_post + 1 AS pk_expr FROM tb_post p", "42P16"),
            ("CREATE TABLE tv_missing AS SELECT x.pk_missing FROM tb_nothere x", "42P01"),
            ("CREATE TABLE tv_nodata AS SELECT p.pk_post AS pk_nodata FROM tb_post p WITH NO DATA", "0A000"),
            ("CREATE TEMP TABLE tv_temp AS SELECT p.pk_post AS pk_temp FROM tb_post p", "0A000"),
            ("CREATE TABLE tv_opt WITH (tviews.nope = 'x') AS SELECT p.pk_post AS pk_opt FROM tb_post p", "22023"),
            ("CREATE TABLE tb_plain WITH (tviews.key = 'x') AS SELECT 1 AS x", "22023"),
            ("CREATE TABLE tv_post2 AS SELECT p.pk_post AS pk_post2 FROM tb_post p UNION SELECT 1", "0A000"),
        ];
        for (sql, state) in cases {
            let err = c.batch_execute(sql).await.expect_err(sql);
            let db_err = err.as_db_error().with_context(|| format!("{sql}: {err}"))?;
            assert_eq!(db_err.code().code(), state, "{sql}: {}", db_err.message());
            if state != "42P01" {
                assert!(db_err.hint().is_some(), "{sql}: no hint ({})", db_err.message());
            }
        }
        // A name collision is PostgreSQL's own error.
        c.batch_execute("CREATE TABLE tv_taken (pk_taken int)").await?;
        let err = c
            .batch_execute("CREATE TABLE tv_taken AS SELECT p.pk_post AS pk_taken FROM tb_post p")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("42P07"));
        ensure!(count(&db, "SELECT count(*) FROM tviews.tview").await? == 0);
        ensure!(count(&db, "SELECT count(*) FROM pg_class WHERE relname LIKE 'tv\\_%' AND relname <> 'tv_taken'").await? == 0);
        ensure!(count(&db, "SELECT count(*) FROM pg_class WHERE relnamespace = 'tviews'::regnamespace AND relkind = 'v'").await? == 0);
        ensure!(count(&db, "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'tviews_capture_%'").await? == 0);
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn rollbacks_and_savepoints() {
    run(|| async {
        let db = seed("rollback").await?;
        let c = &db.client;
        c.batch_execute("INSERT INTO tb_post (fk_user, title) VALUES (1, 'a'), (2, 'b')")
            .await?;
        c.batch_execute("BEGIN; UPDATE tb_user SET name = 'gone'; ROLLBACK")
            .await?;
        db.assert_exact().await?;
        c.batch_execute(
            "BEGIN;
             UPDATE tb_user SET name = 'kept' WHERE pk_user = 1;
             SAVEPOINT s1;
             UPDATE tb_user SET name = 'undone' WHERE pk_user = 2;
             INSERT INTO tb_post (fk_user, title) VALUES (2, 'undone');
             ROLLBACK TO SAVEPOINT s1;
             INSERT INTO tb_post (fk_user, title) VALUES (1, 'kept');
             SAVEPOINT s2;
             DELETE FROM tb_post WHERE title = 'a';
             RELEASE SAVEPOINT s2;
             COMMIT;",
        )
        .await?;
        db.assert_exact().await?;
        ensure!(
            count(
                &db,
                "SELECT count(*) FROM tv_post WHERE data->'author'->>'name' = 'kept'"
            )
            .await?
                == 1
        );
        // An error aborts the transaction and its queued work.
        let err = c
            .batch_execute("BEGIN; UPDATE tb_user SET name = 'err'; SELECT 1/0; COMMIT;")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("22012"));
        c.batch_execute("ROLLBACK").await?;
        db.assert_exact().await?;
        Ok(())
    })
    .await
}

/// Every way of writing rows is captured.
#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_write() {
    run(|| async {
        let db = seed("writes").await?;
        let c = &db.client;
        // Multi-row insert, INSERT ... ON CONFLICT, COPY, key updates, TRUNCATE.
        c.batch_execute("INSERT INTO tb_post (fk_user, title) SELECT 1 + i % 2, 't' || i FROM generate_series(1, 50) i")
            .await?;
        db.assert_exact().await?;
        c.batch_execute("ALTER TABLE tb_user ADD CONSTRAINT u_email UNIQUE (email)").await?;
        c.batch_execute(
            "INSERT INTO tb_user (name, email) VALUES ('alice2', 'a@x'), ('carol', 'c@x')
             ON CONFLICT (email) DO UPDATE SET name = EXCLUDED.name",
        )
        .await?;
        db.assert_exact().await?;
        let sink = c
            .copy_in("COPY tb_post (fk_user, title) FROM STDIN")
            .await?;
        use futures_util::SinkExt;
        let mut sink = Box::pin(sink);
        sink.send(bytes::Bytes::from_static(b"1\tcopied 1\n2\tcopied 2\n")).await?;
        sink.as_mut().finish().await?;
        db.assert_exact().await?;
        c.batch_execute("UPDATE tb_post SET pk_post = pk_post + 1000 WHERE pk_post <= 5").await.ok();
        c.batch_execute("ALTER TABLE tb_post ALTER COLUMN pk_post DROP IDENTITY").await?;
        c.batch_execute("UPDATE tb_post SET pk_post = pk_post + 1000 WHERE pk_post <= 5").await?;
        db.assert_exact().await?;
        c.batch_execute("UPDATE tb_post SET fk_user = NULL WHERE pk_post > 40").await?;
        db.assert_exact().await?;
        c.batch_execute("BEGIN; TRUNCATE tb_post; INSERT INTO tb_post VALUES (1, 1, 'after truncate'); COMMIT;")
            .await?;
        db.assert_exact().await?;
        ensure!(count(&db, "SELECT count(*) FROM tv_post").await? == 1);
        Ok(())
    })
    .await
}

/// Statements that commit implicitly, several at once, through the
/// extended protocol, in procedures, with deferred constraints.
#[tokio::test(flavor = "multi_thread")]
async fn every_way_of_committing() {
    run(|| async {
        let db = seed("commits").await?;
        let c = &db.client;
        // Multi-statement simple query (one implicit transaction).
        c.batch_execute("INSERT INTO tb_post (fk_user, title) VALUES (1, 'm1'); UPDATE tb_user SET name = 'multi' WHERE pk_user = 1; INSERT INTO tb_post (fk_user, title) VALUES (1, 'm2')")
            .await?;
        db.assert_exact().await?;
        // Extended protocol with parameters.
        let stmt = c.prepare("INSERT INTO tb_post (fk_user, title) VALUES ($1, $2)").await?;
        c.execute(&stmt, &[&2i64, &"ext"]).await?;
        c.execute("UPDATE tb_user SET name = $1 WHERE pk_user = $2", &[&"extended", &2i64]).await?;
        db.assert_exact().await?;
        // A procedure that commits in the middle.
        c.batch_execute(
            "CREATE PROCEDURE two_commits() LANGUAGE plpgsql AS $$
             BEGIN
               UPDATE tb_user SET name = 'proc1' WHERE pk_user = 1;
               COMMIT;
               INSERT INTO tb_post (fk_user, title) VALUES (1, 'proc');
               COMMIT;
               UPDATE tb_user SET name = 'proc2' WHERE pk_user = 2;
             END $$;",
        )
        .await?;
        // Alone: a procedure may only COMMIT outside a transaction block.
        c.batch_execute("CALL two_commits()").await?;
        db.assert_exact().await?;
        // COMMIT AND CHAIN.
        c.batch_execute("BEGIN; UPDATE tb_user SET name = 'chain1' WHERE pk_user = 1; COMMIT AND CHAIN; UPDATE tb_user SET name = 'chain2' WHERE pk_user = 2; COMMIT;")
            .await?;
        db.assert_exact().await?;
        // A deferred constraint on a source, and one on the TVIEW itself.
        c.batch_execute(
            "ALTER TABLE tb_post ADD CONSTRAINT title_len CHECK (length(title) < 100);
             CREATE TABLE tb_audit (n int);
             CREATE FUNCTION audit_tv() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO tb_audit VALUES (1); RETURN NULL; END $$;
             CREATE CONSTRAINT TRIGGER tv_post_audit AFTER INSERT OR UPDATE ON tv_post DEFERRABLE INITIALLY DEFERRED
               FOR EACH ROW EXECUTE FUNCTION audit_tv();
             CREATE CONSTRAINT TRIGGER tb_post_deferred AFTER INSERT ON tb_post DEFERRABLE INITIALLY DEFERRED
               FOR EACH ROW EXECUTE FUNCTION audit_tv();",
        )
        .await?;
        c.batch_execute("BEGIN; INSERT INTO tb_post (fk_user, title) VALUES (1, 'deferred'); COMMIT;").await?;
        db.assert_exact().await?;
        // One row from the source's deferred trigger, one from the TVIEW's.
        ensure!(count(&db, "SELECT count(*) FROM tb_audit").await? == 2, "deferred triggers on the TVIEW fired");
        Ok(())
    })
    .await
}

/// A single-row update touches only the rows that depend on it.
#[tokio::test(flavor = "multi_thread")]
async fn single_row_update_rewrites_only_its_rows() {
    run(|| async {
        let db = seed("narrow").await?;
        let c = &db.client;
        c.batch_execute(
            "INSERT INTO tb_user (name) SELECT 'u' || i FROM generate_series(3, 1000) i;
             INSERT INTO tb_post (fk_user, title) SELECT 1 + i % 1000, 'p' || i FROM generate_series(1, 100000) i;",
        )
        .await?;
        c.batch_execute("SELECT pg_tviews_session_stats_reset()").await?;
        c.batch_execute("UPDATE tb_user SET name = 'renamed' WHERE pk_user = 7").await?;
        let row = c
            .query_one(
                "SELECT keys, recomputed, inserted, updated, deleted FROM pg_tviews_session_stats() WHERE tview = 'tv_post'",
                &[],
            )
            .await?;
        let (keys, recomputed, inserted, updated, deleted): (i64, i64, i64, i64, i64) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        // User 7 has exactly 100 posts; exactly those are recomputed and rewritten.
        assert_eq!((keys, recomputed, inserted, updated, deleted), (100, 100, 0, 100, 0));
        ensure!(count(&db, "SELECT count(*) FROM tv_post WHERE data->'author'->>'name' = 'renamed'").await? == 100);
        // An update of columns no TVIEW reads, or one that changes no value,
        // is not even captured: no key, nothing recomputed.
        let work = "SELECT coalesce(sum(keys), 0)::bigint, coalesce(sum(recomputed), 0)::bigint, coalesce(sum(skipped), 0)::bigint \
                    FROM pg_tviews_session_stats() WHERE tview = 'tv_post'";
        for write in [
            "UPDATE tb_user SET email = 'e' WHERE pk_user = 8",
            "UPDATE tb_post SET title = title WHERE fk_user = 9",
            "UPDATE tb_user SET name = name, email = 'f' WHERE pk_user BETWEEN 10 AND 20",
        ] {
            c.batch_execute(&format!("SELECT pg_tviews_session_stats_reset(); {write}"))
                .await?;
            let row = c.query_one(work, &[]).await?;
            assert_eq!(
                (row.get::<_, i64>(0), row.get::<_, i64>(1)),
                (0, 0),
                "{write}"
            );
        }
        // With row-level security on the source, a policy may read any
        // column: every updated row is captured, and its unchanged rows
        // are skipped at apply.
        c.batch_execute(
            "ALTER TABLE tb_user ENABLE ROW LEVEL SECURITY;
             SELECT pg_tviews_session_stats_reset(); UPDATE tb_user SET email = 'g' WHERE pk_user = 8",
        )
        .await?;
        let row = c.query_one(work, &[]).await?;
        assert_eq!(
            (row.get::<_, i64>(0), row.get::<_, i64>(2)),
            (100, 100)
        );
        db.assert_exact().await?;
        Ok(())
    })
    .await
}

/// A 10k-row statement costs a constant number of refresh statements.
#[tokio::test(flavor = "multi_thread")]
async fn bulk_update_runs_constant_statements() {
    run(|| async {
        let db = seed("bulk").await?;
        let c = &db.client;
        c.batch_execute(
            "INSERT INTO tb_user (name) SELECT 'u' || i FROM generate_series(3, 2000) i;
             INSERT INTO tb_post (fk_user, title) SELECT 1 + i % 2000, 'p' || i FROM generate_series(1, 20000) i;",
        )
        .await?;
        let mut statements = Vec::new();
        for n in [10, 100, 10000] {
            c.batch_execute("SELECT pg_tviews_session_stats_reset()").await?;
            c.batch_execute(&format!("UPDATE tb_post SET title = title || '!' WHERE pk_post <= {n}")).await?;
            c.batch_execute(&format!("UPDATE tb_user SET name = name || '!' WHERE pk_user <= {}", n / 10)).await?;
            let row = c
                .query_one("SELECT statements, updated FROM pg_tviews_session_stats() WHERE tview = 'tv_post'", &[])
                .await?;
            statements.push(row.get::<_, i64>(0));
        }
        // The same statements per transaction, whatever the size:
        // post update: reverse (estimate) + reverse (check) + apply = 3;
        // user update: derive + reverse (estimate), derive + reverse (under
        // the locks) + apply = 5.
        assert!(statements.iter().all(|s| *s == statements[0]), "statements per size: {statements:?}");
        assert_eq!(statements[0], 3 + 5);
        db.assert_exact().await?;
        Ok(())
    })
    .await
}

/// Self-joins, left joins, three-hop chains, subqueries, views in FROM.
#[tokio::test(flavor = "multi_thread")]
async fn join_shapes() {
    run(|| async {
        let db = Db::fresh("joins").await?;
        let c = &db.client;
        c.batch_execute(
            "CREATE TABLE tb_org (pk_org int PRIMARY KEY, name text);
             CREATE TABLE tb_user (pk_user int PRIMARY KEY, fk_org int REFERENCES tb_org, name text, fk_manager int REFERENCES tb_user);
             CREATE TABLE tb_post (pk_post int PRIMARY KEY, fk_user int REFERENCES tb_user, title text);
             CREATE TABLE tb_comment (pk_comment int PRIMARY KEY, fk_post int REFERENCES tb_post ON DELETE CASCADE, fk_author int REFERENCES tb_user, body text);
             INSERT INTO tb_org VALUES (1, 'o1'), (2, 'o2');
             INSERT INTO tb_user VALUES (1, 1, 'a', NULL), (2, 2, 'b', 1), (3, NULL, 'c', 2);
             INSERT INTO tb_post VALUES (1, 1, 'p1'), (2, 2, 'p2'), (3, 3, 'p3');
             INSERT INTO tb_comment VALUES (1, 1, 2, 'c1'), (2, 2, 3, 'c2'), (3, 3, 1, 'c3');
             CREATE VIEW v_user AS SELECT u.pk_user, u.name, o.name AS org FROM tb_user u LEFT JOIN tb_org o ON o.pk_org = u.fk_org;
             CREATE TABLE tv_comment AS
               SELECT c.pk_comment, c.body, p.title, pa.name AS post_author, pa.org, ca.name AS comment_author, m.name AS manager
               FROM tb_comment c
               JOIN tb_post p ON p.pk_post = c.fk_post
               JOIN v_user pa ON pa.pk_user = p.fk_user
               LEFT JOIN tb_user ca ON ca.pk_user = c.fk_author
               LEFT JOIN tb_user m ON m.pk_user = ca.fk_manager
               WHERE c.body <> 'hidden';
             CREATE TABLE tv_user AS
               SELECT u.pk_user, u.name, (SELECT count(*) FROM tb_post p WHERE p.fk_user = u.pk_user) AS posts,
                      EXISTS (SELECT 1 FROM tb_comment c WHERE c.fk_author = u.pk_user) AS commented
               FROM tb_user u WHERE u.pk_user IN (SELECT fk_user FROM tb_post);
             CREATE TABLE tv_post_stats WITH (tviews.key = 'pk_post') AS
               WITH per_post AS (SELECT fk_post, count(*) AS n FROM tb_comment GROUP BY fk_post)
               SELECT p.pk_post, s.author, coalesce(pp.n, 0) AS comments
               FROM tb_post p
               JOIN (SELECT u.pk_user, u.name || '@' || coalesce(o.name, '-') AS author
                     FROM tb_user u LEFT JOIN tb_org o ON o.pk_org = u.fk_org) s ON s.pk_user = p.fk_user
               LEFT JOIN per_post pp ON pp.fk_post = p.pk_post;",
        )
        .await?;
        db.assert_exact().await?;
        let steps = [
            "UPDATE tb_org SET name = 'O1' WHERE pk_org = 1",
            "UPDATE tb_user SET fk_org = 1 WHERE pk_user = 3",
            "UPDATE tb_user SET fk_manager = 3 WHERE pk_user = 1",
            "UPDATE tb_user SET name = 'B' WHERE pk_user = 2",
            "UPDATE tb_comment SET body = 'hidden' WHERE pk_comment = 2",
            "UPDATE tb_comment SET fk_author = 3 WHERE pk_comment = 1",
            "INSERT INTO tb_post VALUES (4, 2, 'p4'); INSERT INTO tb_comment VALUES (4, 4, 2, 'c4')",
            "DELETE FROM tb_post WHERE pk_post = 1",
            "UPDATE tb_post SET fk_user = 1 WHERE pk_post = 3",
            "DELETE FROM tb_comment",
            "UPDATE tb_comment SET body = 'x'",
        ];
        for s in steps {
            c.batch_execute(s).await.with_context(|| s.to_string())?;
            db.assert_exact().await.with_context(|| s.to_string())?;
        }
        Ok(())
    })
    .await
}

/// Refresh reads the sources through their indexes, also with the generic
/// plans prepared statements settle on: the key restriction is pushed down
/// into the backing view.
#[tokio::test(flavor = "multi_thread")]
async fn refresh_statements_use_the_indexes() {
    run(|| async {
        let db = seed("pushdown").await?;
        let c = &db.client;
        c.batch_execute(
            "CREATE INDEX ON tb_post (fk_user);
             INSERT INTO tb_user (name) SELECT 'u' || i FROM generate_series(1, 2000) i;
             INSERT INTO tb_post (fk_user, title) SELECT 1 + i % 2000, 't' FROM generate_series(1, 20000) i;
             ANALYZE tb_user; ANALYZE tb_post;
             SET plan_cache_mode = force_generic_plan;",
        )
        .await?;
        let stmts = c
            .query("SELECT kind, sql, lookups FROM pg_tviews_statements('tv_post')", &[])
            .await?;
        let mut checked = 0;
        for r in stmts {
            let (kind, sql, lookups): (String, String, Vec<String>) = (r.get(0), r.get(1), r.get(2));
            if kind == "apply_all" {
                continue;
            }
            c.batch_execute(&format!("PREPARE s_{checked}(text[]) AS {sql}")).await?;
            let plan: Vec<String> = c
                .query(&format!("EXPLAIN (COSTS OFF) EXECUTE s_{checked}('{{1,2}}')"), &[])
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let plan = plan.join("\n");
            // The restriction reaches the index of the relation each
            // statement starts from (joins after it are the planner's
            // choice by size): its first lookup.
            let first = lookups.first().cloned().unwrap_or_default();
            let column = first.rsplit('.').next().unwrap_or_default();
            let wanted = format!("Index Cond: ({column} = ANY");
            assert!(plan.contains(&wanted), "{kind}: no {wanted}:\n{sql}\n{plan}");
            checked += 1;
        }
        assert_eq!(checked, 3, "apply_keys, derive (users → posts) and reverse (posts → users)");
        Ok(())
    })
    .await
}

/// Renaming a source column the definition uses: the view follows the
/// rename, the registry is rebuilt, maintenance goes on.
#[tokio::test(flavor = "multi_thread")]
async fn plan_cache_follows_schema_changes() {
    run(|| async {
        let db = seed("rename").await?;
        let c = &db.client;
        let other = db.session().await?;
        c.batch_execute("INSERT INTO tb_post (fk_user, title) VALUES (1, 'a')")
            .await?;
        // Another session has prepared its statements before the DDL.
        other
            .batch_execute("UPDATE tb_user SET name = 'warm' WHERE pk_user = 1")
            .await?;
        c.batch_execute(
            "ALTER TABLE tb_user RENAME COLUMN name TO full_name;
             ALTER TABLE tb_post RENAME COLUMN fk_user TO fk_author;
             ALTER TABLE tb_user RENAME TO tb_person;",
        )
        .await?;
        other
            .batch_execute("UPDATE tb_person SET full_name = 'after rename' WHERE pk_user = 1")
            .await?;
        other
            .batch_execute("INSERT INTO tb_post (fk_author, title) VALUES (2, 'b')")
            .await?;
        db.assert_exact().await?;
        let name: String = c
            .query_one(
                "SELECT data->'author'->>'name' FROM tv_post WHERE pk_post = 1",
                &[],
            )
            .await?
            .get(0);
        assert_eq!(name, "after rename");
        // An index added to a source changes nothing but the plans.
        c.batch_execute("CREATE INDEX ON tb_post (title); UPDATE tb_person SET full_name = 'x'")
            .await?;
        db.assert_exact().await?;
        Ok(())
    })
    .await
}
