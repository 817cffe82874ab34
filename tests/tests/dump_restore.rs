//! Backup and restore (issue 8, docs/OPERATIONS.md): a database with
//! TVIEWs — a three-level cascade, a TVIEW in another schema with a quoted
//! name, recorded settings — dumped with pg_dump in plain and custom
//! format, restored with psql and pg_restore (also in parallel) into a new
//! database with no manual step; schema-only followed by a data load;
//! data-only into an existing schema. After each: the catalog is back,
//! the backing views are owned by their tables again, every TVIEW equals
//! its definition, and writes at every level keep it so.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use tviews_tests::pg_bin;
use tviews_tests::support::{Db, assert_exact, run, shared_cluster, sqlstate};

/// The demo read model (three levels: tv_review, tv_product, tv_category
/// reading tv_product) plus a TVIEW in a schema of its own, with a quoted
/// name and a column whose text depends on a recorded setting.
async fn source_db(prefix: &str) -> Result<Db> {
    let db = Db::fresh(prefix).await?;
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/schema.sql");
    db.cluster.psql_file(&db.name, &schema)?;
    db.client
        .batch_execute(
            r#"
            CREATE SCHEMA "Sales";
            CREATE TABLE "Sales".tb_order (pk_order bigint PRIMARY KEY, fk_product bigint REFERENCES tb_product,
                                           placed date NOT NULL, amount numeric NOT NULL);
            INSERT INTO "Sales".tb_order SELECT i, 1 + i % 50, date '2026-01-01' + i, i * 1.5 FROM generate_series(1, 200) i;
            SET DateStyle = 'German';
            CREATE TABLE "Sales"."tv_Order line" WITH (tviews.key = 'pk_order') AS
            SELECT o.pk_order, o.placed::text AS placed_text, tp.data->>'name' AS product
            FROM "Sales".tb_order o JOIN tv_product tp ON tp.pk_product = o.fk_product;
            RESET DateStyle;
            "#,
        )
        .await?;
    Ok(db)
}

fn tool(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(pg_bin(program))
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

fn dump(db: &Db, file: &Path, extra: &[&str]) -> Result<()> {
    let conn = shared_cluster().conninfo(&db.name);
    let file = file.to_string_lossy();
    let mut args = vec!["-d", &conn, "-f", &file];
    args.extend_from_slice(extra);
    tool("pg_dump", &args).map(drop)
}

/// A new empty database (no extension: a restore brings it).
async fn empty_db(name: &str) -> Result<tokio_postgres::Client> {
    let cluster = shared_cluster();
    cluster.create_database(name)?;
    cluster.connect(name).await
}

/// The catalog, the internal dependencies and exactness after a restore.
async fn assert_restored(c: &tokio_postgres::Client, expected_tviews: i64) -> Result<()> {
    let n: i64 = c
        .query_one("SELECT count(*) FROM tviews.tview", &[])
        .await?
        .get(0);
    ensure!(
        n == expected_tviews,
        "{n} TVIEWs in the catalog, expected {expected_tviews}"
    );
    let deps: i64 = c
        .query_one(
            "SELECT count(*) FROM tviews.tview t JOIN pg_depend d
               ON d.classid = 'pg_class'::regclass AND d.objid = t.defview
              AND d.refclassid = 'pg_class'::regclass AND d.refobjid = t.relid AND d.deptype = 'i'",
            &[],
        )
        .await?
        .get(0);
    ensure!(
        deps == n,
        "{deps} of {n} backing views depend on their TVIEW"
    );
    let placed: String = c
        .query_one(
            r#"SELECT placed_text FROM "Sales"."tv_Order line" WHERE pk_order = 1"#,
            &[],
        )
        .await?
        .get(0);
    ensure!(placed == "02.01.2026", "recorded DateStyle lost: {placed}");
    assert_exact(c).await
}

/// Writes at every level of the cascade and in the other schema.
async fn assert_maintained(c: &tokio_postgres::Client) -> Result<()> {
    c.batch_execute(
        r#"
        INSERT INTO tb_review VALUES (900001, 7, 5, 'after restore');
        UPDATE tb_product SET name = 'Renamed after restore' WHERE pk_product = 3;
        UPDATE tb_category SET name = 'Category X' WHERE pk_category = 4;
        DELETE FROM tb_inventory WHERE fk_product = 5;
        INSERT INTO "Sales".tb_order VALUES (9001, 3, date '2026-12-24', 10);
        "#,
    )
    .await?;
    let placed: String = c
        .query_one(
            r#"SELECT placed_text || ' ' || product FROM "Sales"."tv_Order line" WHERE pk_order = 9001"#,
            &[],
        )
        .await?
        .get(0);
    ensure!(
        placed == "24.12.2026 Renamed after restore",
        "new row refreshed wrong: {placed}"
    );
    let reviews: i64 = c
        .query_one(
            "SELECT (data->'reviews'->>'count')::bigint FROM tv_product WHERE pk_product = 7",
            &[],
        )
        .await?
        .get(0);
    let expected: i64 = c
        .query_one("SELECT count(*) FROM tb_review WHERE fk_product = 7", &[])
        .await?
        .get(0);
    ensure!(
        reviews == expected,
        "tv_product 7 counts {reviews} reviews, not {expected}"
    );
    assert_exact(c).await?;
    // The dependency works as at creation: the view cannot go alone, the table takes it along.
    let err = c
        .batch_execute("DROP VIEW tviews.tv_review")
        .await
        .err()
        .context("dropping a backing view alone succeeded")?;
    ensure!(sqlstate(&err).as_deref() == Some("2BP01"), "{err}");
    c.batch_execute("DROP TABLE tv_category").await?;
    let left: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 'tv_category'",
            &[],
        )
        .await?
        .get(0);
    ensure!(left == 0, "DROP TABLE tv_category left its view");
    assert_exact(c).await
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_dump_restores_with_psql() {
    run(|| async {
        let src = source_db("dump_plain").await?;
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("dump.sql");
        dump(&src, &file, &[])?;
        let sql = std::fs::read_to_string(&file)?;
        ensure!(
            !sql.contains("COPY tviews.tview"),
            "the catalog's rows are dumped: a data-only restore would collide with them"
        );
        let target = "dump_plain_restored";
        let c = empty_db(target).await?;
        shared_cluster().psql_file(target, &file)?;
        assert_restored(&c, 4).await?;
        assert_maintained(&c).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_dump_restores_with_parallel_pg_restore() {
    run(|| async {
        let src = source_db("dump_custom").await?;
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("dump.custom");
        dump(&src, &file, &["-Fc"])?;
        let target = "dump_custom_restored";
        let c = empty_db(target).await?;
        let conn = shared_cluster().conninfo(target);
        tool(
            "pg_restore",
            &[
                "--exit-on-error",
                "-j",
                "3",
                "-d",
                &conn,
                &file.to_string_lossy(),
            ],
        )?;
        assert_restored(&c, 4).await?;
        assert_maintained(&c).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_only_then_data_load() {
    run(|| async {
        let src = source_db("dump_schema").await?;
        let dir = tempfile::tempdir()?;
        let schema = dir.path().join("schema.sql");
        dump(&src, &schema, &["--schema-only"])?;
        let full = dir.path().join("full.custom");
        dump(&src, &full, &["-Fc"])?;

        // 1. The schema alone: TVIEWs exist, empty like their sources.
        let target = "dump_schema_restored";
        let c = empty_db(target).await?;
        shared_cluster().psql_file(target, &schema)?;
        let n: i64 = c
            .query_one("SELECT count(*) FROM tviews.tview", &[])
            .await?
            .get(0);
        ensure!(n == 4, "{n} TVIEWs after a schema-only restore");
        let rows: i64 = c
            .query_one("SELECT count(*) FROM tv_product", &[])
            .await?
            .get(0);
        ensure!(rows == 0, "tv_product has {rows} rows with no data loaded");
        assert_exact(&c).await?;

        // 2. The application loads its data: the TVIEWs follow.
        c.batch_execute(
            "INSERT INTO tb_category VALUES (1, 'Books', 'books');
             INSERT INTO tb_product VALUES (1, 1, 'Dune', 9.99), (2, 1, 'Emma', 5);
             INSERT INTO tb_review VALUES (1, 1, 5, 'great');",
        )
        .await?;
        let count: i64 = c
            .query_one(
                "SELECT jsonb_array_length(data->'products')::bigint FROM tv_category WHERE pk_category = 1",
                &[],
            )
            .await?
            .get(0);
        ensure!(count == 2, "tv_category 1 embeds {count} products");
        assert_exact(&c).await?;

        // 3. Or the dump's data, restored with --disable-triggers into a
        //    second schema-only copy: sources and TVIEWs come from one snapshot.
        let target2 = "dump_schema_restored2";
        let c2 = empty_db(target2).await?;
        shared_cluster().psql_file(target2, &schema)?;
        let conn = shared_cluster().conninfo(target2);
        tool(
            "pg_restore",
            &[
                "--data-only",
                "--disable-triggers",
                "--exit-on-error",
                "-d",
                &conn,
                &full.to_string_lossy(),
            ],
        )?;
        assert_restored(&c2, 4).await?;
        assert_maintained(&c2).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn data_only_into_an_existing_schema() {
    run(|| async {
        let src = source_db("dump_data").await?;
        let dir = tempfile::tempdir()?;
        let schema = dir.path().join("schema.sql");
        dump(&src, &schema, &["--schema-only"])?;
        let cluster = shared_cluster();

        // Without the TVIEWs' own rows: the sources load through the capture
        // triggers and the TVIEWs fill as they do, with no error.
        let data = dir.path().join("data.sql");
        dump(
            &src,
            &data,
            &[
                "--data-only",
                "--exclude-table-data=public.tv_*",
                "--exclude-table-data=\"Sales\".tv_*",
            ],
        )?;
        let target = "dump_data_restored";
        let c = empty_db(target).await?;
        cluster.psql_file(target, &schema)?;
        cluster.psql_file(target, &data)?;
        assert_restored(&c, 4).await?;
        assert_maintained(&c).await?;

        // With them and triggers enabled: the sources still fill the
        // TVIEWs, and the TVIEWs' rows are refused with the hint that says so.
        let all = dir.path().join("all.sql");
        dump(&src, &all, &["--data-only"])?;
        let target2 = "dump_data_restored2";
        empty_db(target2).await?;
        cluster.psql_file(target2, &schema)?;
        let err = cluster
            .psql_file(target2, &all)
            .err()
            .context("loading TVIEW rows directly succeeded")?;
        let text = format!("{err:#}");
        ensure!(
            text.contains("cannot change TVIEW") && text.contains("--exclude-table-data"),
            "unexpected error: {text}"
        );
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn incomplete_restores_fail_clearly() {
    run(|| async {
        let src = source_db("dump_partial").await?;
        let dir = tempfile::tempdir()?;
        // Tables picked by name leave out the backing views in schema tviews.
        let file = dir.path().join("tables.sql");
        dump(&src, &file, &["-t", "public.*", "-t", "\"Sales\".*"])?;
        let target = "dump_partial_restored";
        let c = empty_db(target).await?;
        c.batch_execute("CREATE EXTENSION pg_tviews; CREATE SCHEMA \"Sales\"")
            .await?;
        let err = shared_cluster()
            .psql_file(target, &file)
            .err()
            .context("restoring without the backing views succeeded")?;
        let text = format!("{err:#}");
        ensure!(
            text.contains("the backing view tviews.") && text.contains("is missing"),
            "unexpected error: {text}"
        );

        // A guard trigger made by hand does not make a table a TVIEW.
        let c = &src.client;
        c.batch_execute("CREATE TABLE tv_fake (pk_fake bigint PRIMARY KEY)")
            .await?;
        let err = c
            .batch_execute(
                "CREATE TRIGGER tviews_guard BEFORE INSERT ON tv_fake FOR EACH STATEMENT EXECUTE FUNCTION tviews.guard('x')",
            )
            .await
            .err()
            .context("a guard trigger with bad arguments was accepted")?;
        ensure!(sqlstate(&err).as_deref() == Some("22023"), "{err}");
        // Nor does one naming another TVIEW's view.
        let err = c
            .batch_execute(
                "CREATE TRIGGER tviews_guard BEFORE INSERT ON tv_fake FOR EACH STATEMENT EXECUTE FUNCTION tviews.guard('pg_tviews:1', 'tviews.tv_review', 'pk_fake')",
            )
            .await
            .err()
            .context("a guard trigger naming another TVIEW's view was accepted")?;
        ensure!(sqlstate(&err).as_deref() == Some("42710"), "{err}");
        // Nor a trigger from a role that does not own the table.
        c.batch_execute(
            "CREATE ROLE dump_partial_intruder;
             GRANT TRIGGER ON tv_fake TO dump_partial_intruder;
             GRANT USAGE ON SCHEMA tviews TO dump_partial_intruder;",
        )
        .await?;
        let err = c
            .batch_execute(
                "SET ROLE dump_partial_intruder;
                 CREATE TRIGGER tviews_guard BEFORE INSERT ON tv_fake FOR EACH STATEMENT EXECUTE FUNCTION tviews.guard('pg_tviews:1', 'tviews.tv_nothing', 'pk_fake')",
            )
            .await
            .err()
            .context("a non-owner made a table a TVIEW")?;
        ensure!(sqlstate(&err).as_deref() == Some("42501"), "{err}");
        c.batch_execute("RESET ROLE").await?;
        let n: i64 = c
            .query_one(
                "SELECT count(*) FROM tviews.tview WHERE relid = 'tv_fake'::regclass",
                &[],
            )
            .await?
            .get(0);
        ensure!(n == 0, "tv_fake was registered");
        src.assert_exact().await
    })
    .await;
}
