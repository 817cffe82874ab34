//! Privileges and safety (DESIGN.md §7, issue 8, docs/OPERATIONS.md):
//! refresh runs with the TVIEW owner's rights and a fixed search_path
//! whoever wrote; only maintenance writes a TVIEW; shadowing objects on a
//! writer's search_path change nothing; a creator must be able to read
//! what the definition reads; row-level security on sources is applied as
//! the TVIEW's owner, and policies on a TVIEW work for its readers.

use anyhow::{Context, Result, ensure};
use tokio_postgres::Client;
use tviews_tests::support::{Db, run, sqlstate};

const SCHEMA: &str = "
CREATE TABLE tb_user (pk_user bigint PRIMARY KEY, name text);
CREATE TABLE tb_post (pk_post bigint PRIMARY KEY, fk_user bigint REFERENCES tb_user, title text, tenant int NOT NULL DEFAULT 1);
INSERT INTO tb_user SELECT i, 'user ' || i FROM generate_series(1, 5) i;
INSERT INTO tb_post SELECT i, 1 + i % 5, 'post ' || i, 1 + i % 2 FROM generate_series(1, 20) i;
CREATE TABLE tv_post AS
SELECT p.pk_post, p.tenant, p.title || ' by ' || u.name AS line, length(p.title) + p.pk_post AS n
FROM tb_post p JOIN tb_user u ON u.pk_user = p.fk_user;
";

async fn setup(prefix: &str) -> Result<Db> {
    let db = Db::fresh(prefix).await?;
    db.client.batch_execute(SCHEMA).await?;
    Ok(db)
}

async fn expect_code(c: &Client, sql: &str, code: &str) -> Result<String> {
    let err = c
        .batch_execute(sql)
        .await
        .err()
        .with_context(|| format!("succeeded: {sql}"))?;
    ensure!(
        sqlstate(&err).as_deref() == Some(code),
        "{sql}: expected {code}, got {err:?}"
    );
    let db = err.as_db_error().context("not a server error")?;
    Ok(format!("{} {}", db.message(), db.hint().unwrap_or("")))
}

async fn one_i64(c: &Client, sql: &str) -> Result<i64> {
    Ok(c.query_one(sql, &[])
        .await
        .with_context(|| sql.to_string())?
        .get(0))
}

/// Role names are cluster-wide: prefix them with the test's database.
fn role(db: &Db, name: &str) -> String {
    format!("{}_{name}", db.name)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_writer_without_rights_on_the_tview_keeps_it_exact() {
    run(|| async {
        let db = setup("priv_writer").await?;
        let c = &db.client;
        let writer = role(&db, "writer");
        c.batch_execute(&format!(
            "CREATE ROLE {writer};
             GRANT SELECT, INSERT, UPDATE, DELETE ON tb_post TO {writer};"
        ))
        .await?;
        let w = db.session().await?;
        w.batch_execute(&format!("SET ROLE {writer}")).await?;
        // The writer can read neither the TVIEW nor the user table it joins.
        expect_code(&w, "SELECT * FROM tv_post", "42501").await?;
        expect_code(&w, "SELECT * FROM tb_user", "42501").await?;
        w.batch_execute(
            "INSERT INTO tb_post VALUES (100, 2, 'by writer', 1);
             UPDATE tb_post SET title = 'edited' WHERE pk_post = 3;
             DELETE FROM tb_post WHERE pk_post = 4;
             BEGIN; UPDATE tb_post SET fk_user = 5 WHERE pk_post = 5; COMMIT;",
        )
        .await?;
        ensure!(
            one_i64(
                c,
                "SELECT count(*) FROM tv_post WHERE line = 'by writer by user 2'"
            )
            .await?
                == 1,
            "the writer's insert is missing"
        );
        db.assert_exact().await?;
        // The owner's statistics and functions stay out of the writer's reach.
        expect_code(&w, "SELECT pg_tviews_refresh('tv_post')", "42501").await?;
        db.assert_exact().await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_maintenance_writes_a_tview() {
    run(|| async {
        let db = setup("priv_guard").await?;
        let c = &db.client;
        let owner = role(&db, "owner");
        c.batch_execute(&format!(
            "CREATE ROLE {owner};
             GRANT SELECT ON tb_user, tb_post TO {owner};
             GRANT USAGE ON SCHEMA tviews TO {owner};
             ALTER TABLE tv_post OWNER TO {owner};"
        ))
        .await?;
        let o = db.session().await?;
        o.batch_execute(&format!("SET ROLE {owner}")).await?;
        for client in [c, &o] {
            for sql in [
                "INSERT INTO tv_post VALUES (999, 1, 'forged', 0)",
                "UPDATE tv_post SET line = 'forged' WHERE pk_post = 1",
                "DELETE FROM tv_post WHERE pk_post = 1",
                "TRUNCATE tv_post",
            ] {
                let msg = expect_code(client, sql, "42809").await?;
                ensure!(msg.contains("pg_tviews_refresh"), "no repair hint: {msg}");
            }
        }
        // COPY FROM, as a superuser: refused too.
        let err = db
            .cluster
            .psql(
                &db.name,
                "COPY tv_post FROM STDIN;\n998\t1\tforged\t0\n\\.\n",
            )
            .err()
            .context("COPY into a TVIEW succeeded")?;
        let text = format!("{err:#}");
        ensure!(
            text.contains("cannot change TVIEW \"tv_post\" directly"),
            "COPY was not refused by the guard: {text}"
        );
        db.assert_exact().await?;

        // The repair switch is for superusers only.
        expect_code(&o, "SET pg_tviews.allow_direct_writes = on", "42501").await?;
        c.batch_execute(
            "SET pg_tviews.allow_direct_writes = on;
             DELETE FROM tv_post WHERE pk_post = 1;
             RESET pg_tviews.allow_direct_writes;",
        )
        .await?;
        ensure!(
            one_i64(c, "SELECT pg_tviews_diff('tv_post')").await? == 1,
            "the repair switch did not let the superuser write"
        );
        c.batch_execute("SELECT pg_tviews_refresh('tv_post')")
            .await?;
        db.assert_exact().await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shadowing_objects_on_the_search_path_change_nothing() {
    run(|| async {
        let db = setup("priv_shadow").await?;
        let c = &db.client;
        let evil = role(&db, "evil");
        // A role that may write tb_post and owns a schema full of look-alikes.
        c.batch_execute(&format!(
            "CREATE ROLE {evil};
             GRANT SELECT, INSERT, UPDATE, DELETE ON tb_post TO {evil};
             CREATE SCHEMA evil AUTHORIZATION {evil};"
        ))
        .await?;
        let e = db.session().await?;
        e.batch_execute(&format!(
            r#"SET ROLE {evil};
            CREATE FUNCTION evil.length(text) RETURNS int LANGUAGE sql AS 'SELECT 0';
            CREATE FUNCTION evil.textcat(text, text) RETURNS text LANGUAGE sql AS $$SELECT 'pwned'$$;
            CREATE FUNCTION evil.int8eq(bigint, bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true';
            CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.int8eq);
            CREATE FUNCTION evil.int_add(int, bigint) RETURNS bigint LANGUAGE sql AS 'SELECT -1::bigint';
            CREATE OPERATOR evil.+ (LEFTARG = int, RIGHTARG = bigint, FUNCTION = evil.int_add);
            CREATE FUNCTION evil.cat(text, text) RETURNS text LANGUAGE sql AS $$SELECT 'pwned'$$;
            CREATE OPERATOR evil.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.cat);
            CREATE TABLE evil.tb_user (pk_user bigint, name text);
            INSERT INTO evil.tb_user VALUES (1, 'impostor'), (2, 'impostor');
            SET search_path = evil, pg_catalog, public;
            INSERT INTO public.tb_post VALUES (200, 1, 'shadowed', 2);
            UPDATE public.tb_post SET title = 'retitled' WHERE pk_post = 2;
            DELETE FROM public.tb_post WHERE pk_post = 6;"#
        ))
        .await?;
        let line: String = c
            .query_one("SELECT line || ' ' || n FROM tv_post WHERE pk_post = 200", &[])
            .await?
            .get(0);
        ensure!(line == "shadowed by user 1 208", "maintenance was shadowed: {line}");
        db.assert_exact().await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_creator_must_read_what_the_definition_reads() {
    run(|| async {
        let db = setup("priv_creator").await?;
        let c = &db.client;
        let creator = role(&db, "creator");
        c.batch_execute(&format!(
            "CREATE ROLE {creator};
             GRANT SELECT ON tb_post TO {creator};
             GRANT CREATE ON SCHEMA public TO {creator};"
        ))
        .await?;
        let before: i64 = one_i64(c, "SELECT count(*) FROM pg_trigger").await?;
        let k = db.session().await?;
        k.batch_execute(&format!("SET ROLE {creator}")).await?;
        expect_code(
            &k,
            "CREATE TABLE tv_mine AS SELECT p.pk_post AS pk_mine, u.name FROM tb_post p JOIN tb_user u ON u.pk_user = p.fk_user",
            "42501",
        )
        .await?;
        expect_code(
            &k,
            "SELECT pg_tviews_create('tv_mine', 'SELECT p.pk_post AS pk_mine, u.name FROM tb_post p JOIN tb_user u ON u.pk_user = p.fk_user')",
            "42501",
        )
        .await?;
        // Nothing is left behind.
        ensure!(
            one_i64(c, "SELECT count(*) FROM pg_class WHERE relname = 'tv_mine'").await? == 0,
            "a table was left"
        );
        ensure!(
            one_i64(c, "SELECT count(*) FROM tviews.tview").await? == 1,
            "a catalog row was left"
        );
        ensure!(
            one_i64(c, "SELECT count(*) FROM pg_trigger").await? == before,
            "triggers were left"
        );
        // What the creator can read, it can make a TVIEW of; it owns it,
        // and its refresh runs with the creator's rights.
        k.batch_execute("CREATE TABLE tv_mine AS SELECT p.pk_post AS pk_mine, p.title FROM tb_post p")
            .await?;
        ensure!(
            one_i64(
                c,
                &format!(
                    "SELECT count(*) FROM pg_class WHERE oid = 'public.tv_mine'::regclass AND relowner = '{creator}'::regrole"
                )
            )
            .await?
                == 1,
            "the TVIEW does not belong to its creator"
        );
        c.batch_execute("UPDATE tb_post SET title = 'seen by creator' WHERE pk_post = 1")
            .await?;
        db.assert_exact().await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn row_level_security_on_sources_is_the_owners() {
    run(|| async {
        let db = setup("priv_rls").await?;
        let c = &db.client;
        let analyst = role(&db, "analyst");
        let writer = role(&db, "writer");
        // Tenant 1's analyst sees tenant 1's posts only; the writer writes
        // tenant 2's.
        c.batch_execute(&format!(
            "CREATE ROLE {analyst}; CREATE ROLE {writer};
             GRANT SELECT ON tb_post, tb_user TO {analyst};
             GRANT CREATE ON SCHEMA public TO {analyst};
             GRANT SELECT, INSERT, UPDATE, DELETE ON tb_post TO {writer};
             ALTER TABLE tb_post ENABLE ROW LEVEL SECURITY;
             CREATE POLICY tenant_one ON tb_post FOR SELECT TO {analyst} USING (tenant = 1);
             CREATE POLICY writes_two ON tb_post TO {writer} USING (tenant = 2) WITH CHECK (tenant = 2);"
        ))
        .await?;
        // The analyst's TVIEW holds what the analyst may see, like a view
        // or a materialized view of theirs would.
        let a = db.session().await?;
        a.batch_execute(&format!(
            "SET ROLE {analyst};
             CREATE TABLE tv_tenant AS SELECT p.pk_post AS pk_tenant, p.tenant, p.title FROM tb_post p"
        ))
        .await?;
        let w = db.session().await?;
        w.batch_execute(&format!(
            "SET ROLE {writer};
             INSERT INTO tb_post VALUES (300, 1, 'tenant two', 2);
             UPDATE tb_post SET title = 'two, edited' WHERE pk_post = 2;"
        ))
        .await?;
        c.batch_execute("INSERT INTO tb_post VALUES (301, 1, 'tenant one', 1); UPDATE tb_post SET tenant = 1 WHERE pk_post = 4")
            .await?;
        let counts = c
            .query_one(
                "SELECT (SELECT count(*) FROM tv_tenant WHERE tenant = 2),
                        (SELECT count(*) FROM tv_tenant),
                        (SELECT count(*) FROM tb_post WHERE tenant = 1),
                        (SELECT count(*) FROM tv_post)
                 ",
                &[],
            )
            .await?;
        let (two, tenant_rows, one, all): (i64, i64, i64, i64) =
            (counts.get(0), counts.get(1), counts.get(2), counts.get(3));
        ensure!(two == 0, "tenant 2 rows leaked into the analyst's TVIEW");
        ensure!(tenant_rows == one, "tv_tenant has {tenant_rows} rows, tenant 1 has {one}");
        // The superuser-owned tv_post is computed as its owner: every row.
        ensure!(
            all == one_i64(c, "SELECT count(*) FROM tb_post").await?,
            "tv_post is missing rows"
        );
        db.assert_exact().await?;

        // Policies on a TVIEW work for its readers.
        let reader = role(&db, "reader");
        c.batch_execute(&format!(
            "CREATE ROLE {reader};
             GRANT SELECT ON tv_post TO {reader};
             ALTER TABLE tv_post ENABLE ROW LEVEL SECURITY;
             CREATE POLICY mine ON tv_post FOR SELECT TO {reader} USING (tenant = 2);"
        ))
        .await?;
        let r = db.session().await?;
        r.batch_execute(&format!("SET ROLE {reader}")).await?;
        let (seen, tenant2) = (
            one_i64(&r, "SELECT count(*) FROM tv_post").await?,
            one_i64(c, "SELECT count(*) FROM tb_post WHERE tenant = 2").await?,
        );
        ensure!(seen == tenant2, "the reader sees {seen} rows, tenant 2 has {tenant2}");
        // Maintenance still writes every row of the TVIEW.
        c.batch_execute("INSERT INTO tb_post VALUES (302, 3, 'after policy', 1)")
            .await?;
        ensure!(
            one_i64(c, "SELECT count(*) FROM tv_post WHERE pk_post = 302").await? == 1,
            "maintenance was filtered by the TVIEW's own policy"
        );
        db.assert_exact().await?;

        // FORCE ROW LEVEL SECURITY subjects the owner's maintenance writes
        // to the TVIEW's policies: with none that allows them, the writer's
        // transaction fails (nothing is half-written); a policy for the
        // owner lets maintenance through.
        c.batch_execute(&format!(
            "ALTER TABLE tv_tenant ENABLE ROW LEVEL SECURITY;
             ALTER TABLE tv_tenant FORCE ROW LEVEL SECURITY;
             CREATE POLICY readers ON tv_tenant FOR SELECT TO {analyst} USING (true);"
        ))
        .await?;
        expect_code(c, "INSERT INTO tb_post VALUES (303, 3, 'forced', 1)", "42501").await?;
        c.batch_execute(&format!(
            "CREATE POLICY maintenance ON tv_tenant FOR ALL TO {analyst} USING (true) WITH CHECK (true);
             INSERT INTO tb_post VALUES (303, 3, 'forced', 1);"
        ))
        .await?;
        ensure!(
            one_i64(c, "SELECT count(*) FROM tv_tenant WHERE pk_tenant = 303").await? == 1,
            "maintenance under FORCE ROW LEVEL SECURITY with a policy for the owner"
        );
        db.assert_exact().await
    })
    .await;
}
