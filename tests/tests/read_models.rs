//! Read models beyond flat joins: the seed's e-commerce model with nested
//! JSONB and a cascade, deep cascades, arrays, UNION ALL, LATERAL.

use anyhow::{Result, ensure};
use tviews_tests::support::{Db, run, sqlstate};

const ECOMMERCE: &str = include_str!("../../demo/schema.sql");

/// Counters of this session's refreshes since the last reset, per TVIEW:
/// (keys, recomputed, written = inserted + updated + deleted, skipped).
async fn counters(db: &Db, tview: &str) -> Result<(i64, i64, i64, i64)> {
    let rows = db
        .client
        .query(
            "SELECT keys, recomputed, inserted + updated + deleted, skipped FROM pg_tviews_session_stats() WHERE tview = $1",
            &[&tview],
        )
        .await?;
    Ok(rows
        .first()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .unwrap_or((0, 0, 0, 0)))
}

async fn reset(db: &Db) -> Result<()> {
    db.client
        .batch_execute("SELECT pg_tviews_session_stats_reset()")
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn ecommerce_model_one_review_refreshes_one_product_and_one_category() {
    run(|| async {
        let db = Db::fresh("shop").await?;
        let c = &db.client;
        c.batch_execute(ECOMMERCE).await?;
        db.assert_exact().await?;
        reset(&db).await?;
        c.batch_execute("INSERT INTO tb_review VALUES (100000, 7, 5, 'great')")
            .await?;
        // One product document, one category document, one review document.
        assert_eq!(counters(&db, "tv_product").await?, (1, 1, 1, 0));
        assert_eq!(counters(&db, "tv_category").await?, (1, 1, 1, 0));
        assert_eq!(counters(&db, "tv_review").await?, (1, 1, 1, 0));
        let reviews: serde_json::Value = c
            .query_one(
                "SELECT data->'reviews' FROM tv_product WHERE pk_product = 7",
                &[],
            )
            .await?
            .get(0);
        assert_eq!(reviews["count"], 4);
        db.assert_exact().await?;
        // A stock change in a column no TVIEW reads is not even captured.
        reset(&db).await?;
        c.batch_execute("UPDATE tb_inventory SET warehouse = 'wh-9' WHERE fk_product = 7")
            .await?;
        assert_eq!(counters(&db, "tv_product").await?, (0, 0, 0, 0));
        assert_eq!(counters(&db, "tv_category").await?, (0, 0, 0, 0));
        // Swapping two ratings (4 and 5) of product 7 leaves the multiset of the
        // (product, rating) pairs tv_product reads as it was: not captured for it.
        reset(&db).await?;
        c.batch_execute(
            "UPDATE tb_review SET rating = CASE pk_review WHEN 858 THEN 5 ELSE 4 END
             WHERE pk_review IN (858, 100000)",
        )
        .await?;
        assert_eq!(counters(&db, "tv_product").await?, (0, 0, 0, 0));
        assert_eq!(counters(&db, "tv_review").await?, (2, 2, 2, 0));
        // Two of its ratings 4 becoming 5 and 3 change that multiset but not the
        // review count and average: product 7's document is recomputed, found
        // unchanged, and nothing propagates to tv_category.
        reset(&db).await?;
        c.batch_execute(
            "UPDATE tb_review SET rating = CASE pk_review WHEN 1858 THEN 5 ELSE 3 END
             WHERE pk_review IN (1858, 2858)",
        )
        .await?;
        assert_eq!(counters(&db, "tv_product").await?, (1, 1, 0, 1));
        assert_eq!(counters(&db, "tv_category").await?, (0, 0, 0, 0));
        assert_eq!(counters(&db, "tv_review").await?, (2, 2, 2, 0));
        // A price change refreshes tv_product (and through it tv_category), not
        // tv_review, whose documents show the product's name only.
        reset(&db).await?;
        c.batch_execute("UPDATE tb_product SET price = price + 1 WHERE pk_product = 7")
            .await?;
        assert_eq!(counters(&db, "tv_product").await?, (1, 1, 1, 0));
        assert_eq!(counters(&db, "tv_category").await?, (1, 1, 1, 0));
        assert_eq!(counters(&db, "tv_review").await?, (0, 0, 0, 0));
        db.assert_exact().await?;
        // Renaming a category rewrites its 50 product documents, which cascade
        // to the category's document: refreshed once, after them, not again for
        // the cascade.
        reset(&db).await?;
        c.batch_execute("UPDATE tb_category SET name = 'Renamed 5' WHERE pk_category = 5")
            .await?;
        assert_eq!(counters(&db, "tv_product").await?, (50, 50, 50, 0));
        assert_eq!(counters(&db, "tv_category").await?, (1, 1, 1, 0));
        let refreshes: i64 = c
            .query_one(
                "SELECT refreshes FROM pg_tviews_session_stats() WHERE tview = 'tv_category'",
                &[],
            )
            .await?
            .get(0);
        assert_eq!(refreshes, 1);
        db.assert_exact().await?;
        // A mixed workload stays exact.
        c.batch_execute(
            "UPDATE tb_category SET name = 'Renamed' WHERE pk_category = 3;
             UPDATE tb_product SET fk_category = 4 WHERE pk_product = 3;
             DELETE FROM tb_product WHERE pk_product = 100;
             INSERT INTO tb_product VALUES (5000, 2, 'New', 9.99);
             INSERT INTO tb_inventory VALUES (5000, 3, 'wh-1');
             UPDATE tb_inventory SET quantity = quantity + 1 WHERE fk_product % 7 = 0;
             DELETE FROM tb_review WHERE fk_product = 8;
             UPDATE tb_product SET price = price * 2 WHERE pk_product BETWEEN 10 AND 30;",
        )
        .await?;
        db.assert_exact().await?;
        Ok(())
    })
    .await
}

/// Five levels of TVIEWs reading TVIEWs: exact, and a change reaches each
/// level once (cost linear in the changed rows, not in the chain's size).
#[tokio::test(flavor = "multi_thread")]
async fn five_level_cascade_is_exact_and_linear() {
    run(|| async {
        let db = Db::fresh("chain").await?;
        let c = &db.client;
        c.batch_execute(
            "CREATE TABLE tb_item (pk_item int PRIMARY KEY, grp int, name text, qty int);
             INSERT INTO tb_item SELECT i, i % 10, 'item ' || i, i FROM generate_series(1, 1000) i;
             CREATE TABLE tv_l1 WITH (tviews.key = 'id') AS SELECT pk_item AS id, grp, jsonb_build_object('name', name, 'big', qty > 100) AS data FROM tb_item;
             CREATE TABLE tv_l2 WITH (tviews.key = 'id') AS SELECT id, grp, jsonb_build_object('l1', data) AS data FROM tv_l1;
             CREATE TABLE tv_l3 WITH (tviews.key = 'id') AS SELECT id, grp, jsonb_build_object('l2', data) AS data FROM tv_l2;
             CREATE TABLE tv_l4 WITH (tviews.key = 'id') AS SELECT id, grp, jsonb_build_object('l3', data) AS data FROM tv_l3;
             CREATE TABLE tv_l5 WITH (tviews.key = 'grp') AS SELECT grp, count(*) AS n, jsonb_agg(data ORDER BY id) AS items FROM tv_l4 GROUP BY grp;",
        )
        .await?;
        reset(&db).await?;
        c.batch_execute("UPDATE tb_item SET name = 'changed' WHERE pk_item IN (5, 6)").await?;
        for level in ["tv_l1", "tv_l2", "tv_l3", "tv_l4"] {
            assert_eq!(counters(&db, level).await?, (2, 2, 2, 0), "{level}");
        }
        // Items 5 and 6 are in groups 5 and 6.
        assert_eq!(counters(&db, "tv_l5").await?, (2, 2, 2, 0));
        db.assert_exact().await?;
        // An UPDATE that changes no value read is not captured at all.
        reset(&db).await?;
        c.batch_execute("UPDATE tb_item SET name = name WHERE pk_item = 7").await?;
        assert_eq!(counters(&db, "tv_l1").await?, (0, 0, 0, 0));
        // A change that does not alter level 1's document (500 and 600 are both
        // "big") is recomputed there and stops there.
        reset(&db).await?;
        c.batch_execute("UPDATE tb_item SET qty = 600 WHERE pk_item = 500").await?;
        assert_eq!(counters(&db, "tv_l1").await?, (1, 1, 0, 1));
        assert_eq!(counters(&db, "tv_l2").await?, (0, 0, 0, 0));
        // Moving an item between groups refreshes both groups at the top.
        reset(&db).await?;
        c.batch_execute("UPDATE tb_item SET grp = 9 WHERE pk_item = 11").await?;
        assert_eq!(counters(&db, "tv_l5").await?.0, 2);
        db.assert_exact().await?;
        // Dropping a TVIEW that others read needs CASCADE, which drops them.
        let err = c.batch_execute("DROP TABLE tv_l3").await.unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("2BP01"));
        c.batch_execute("DROP TABLE tv_l3 CASCADE").await?;
        let left: i64 = c.query_one("SELECT count(*) FROM tviews.tview", &[]).await?.get(0);
        ensure!(left == 2, "tv_l1 and tv_l2 remain, got {left}");
        c.batch_execute("UPDATE tb_item SET name = 'after drop' WHERE pk_item = 1").await?;
        db.assert_exact().await?;
        Ok(())
    })
    .await
}

/// Arrays of keys: built by array_agg / ARRAY(SELECT ...), and read with
/// `= ANY(array)`; adding or removing an element refreshes exactly the
/// rows on both sides.
#[tokio::test(flavor = "multi_thread")]
async fn array_columns_and_array_building() {
    run(|| async {
        let db = Db::fresh("arrays").await?;
        let c = &db.client;
        c.batch_execute(
            "CREATE TABLE tb_tag (pk_tag bigint PRIMARY KEY, name text);
             CREATE TABLE tb_post (pk_post bigint PRIMARY KEY, title text, tag_ids bigint[]);
             CREATE INDEX ON tb_post USING gin (tag_ids);
             INSERT INTO tb_tag SELECT i, 'tag' || i FROM generate_series(1, 20) i;
             INSERT INTO tb_post SELECT i, 'post' || i, ARRAY[1 + i % 20, 1 + (i * 3) % 20] FROM generate_series(1, 200) i;
             CREATE TABLE tv_post AS
               SELECT p.pk_post, p.title,
                      (SELECT coalesce(jsonb_agg(t.name ORDER BY t.pk_tag), '[]') FROM tb_tag t WHERE t.pk_tag = ANY (p.tag_ids)) AS tags
               FROM tb_post p;
             CREATE TABLE tv_tag AS
               SELECT t.pk_tag, t.name,
                      ARRAY(SELECT p.pk_post FROM tb_post p WHERE t.pk_tag = ANY (p.tag_ids) ORDER BY p.pk_post) AS posts,
                      (SELECT count(*) FROM tb_post p WHERE t.pk_tag = ANY (p.tag_ids)) AS n
               FROM tb_tag t;",
        )
        .await?;
        // Renaming a tag refreshes exactly the posts that carry it.
        let carriers: i64 = c
            .query_one("SELECT count(*) FROM tb_post WHERE 3 = ANY (tag_ids)", &[])
            .await?
            .get(0);
        reset(&db).await?;
        c.batch_execute("UPDATE tb_tag SET name = 'three' WHERE pk_tag = 3").await?;
        assert_eq!(counters(&db, "tv_post").await?.0, carriers);
        // Adding an element refreshes the post and the tags it gained.
        reset(&db).await?;
        c.batch_execute("UPDATE tb_post SET tag_ids = array_append(tag_ids, 17) WHERE pk_post = 1").await?;
        let (keys, _, _, _) = counters(&db, "tv_tag").await?;
        ensure!(keys == 3, "old tags {{2, 4}} and the new one 17: {keys}");
        // Removing one.
        c.batch_execute("UPDATE tb_post SET tag_ids = array_remove(tag_ids, 2) WHERE pk_post = 1").await?;
        c.batch_execute("UPDATE tb_post SET tag_ids = NULL WHERE pk_post = 2; DELETE FROM tb_tag WHERE pk_tag = 5").await?;
        db.assert_exact().await?;
        Ok(())
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn union_all_and_lateral() {
    run(|| async {
        let db = Db::fresh("union").await?;
        let c = &db.client;
        c.batch_execute(
            "CREATE TABLE tb_user (pk_user int PRIMARY KEY, name text);
             CREATE TABLE tb_post (pk_post int PRIMARY KEY, fk_user int REFERENCES tb_user, title text, created int);
             CREATE TABLE tb_comment (pk_comment int PRIMARY KEY, fk_user int REFERENCES tb_user, body text);
             INSERT INTO tb_user VALUES (1, 'a'), (2, 'b');
             INSERT INTO tb_post VALUES (1, 1, 'p1', 10), (2, 1, 'p2', 20), (3, 2, 'p3', 5);
             INSERT INTO tb_comment VALUES (1001, 2, 'c1'), (1002, 1, 'c2');
             -- A feed of posts and comments: the keys of the branches never collide.
             CREATE TABLE tv_feed WITH (tviews.key = 'id') AS
               SELECT p.pk_post AS id, 'post' AS kind, p.title AS text, u.name FROM tb_post p JOIN tb_user u ON u.pk_user = p.fk_user
               UNION ALL
               SELECT c.pk_comment, 'comment', c.body, u.name FROM tb_comment c JOIN tb_user u ON u.pk_user = c.fk_user;
             -- Each user with their latest post, through LEFT JOIN LATERAL.
             CREATE TABLE tv_user AS
               SELECT u.pk_user, u.name, l.title AS latest, s.n
               FROM tb_user u
               LEFT JOIN LATERAL (SELECT p.title FROM tb_post p WHERE p.fk_user = u.pk_user ORDER BY p.created DESC LIMIT 1) l ON true
               LEFT JOIN LATERAL (SELECT count(*) AS n FROM tb_comment c WHERE c.fk_user = u.pk_user) s ON true;",
        )
        .await?;
        let steps = [
            "UPDATE tb_user SET name = 'A' WHERE pk_user = 1",
            "INSERT INTO tb_post VALUES (4, 2, 'p4', 30)",
            "UPDATE tb_post SET created = 1 WHERE pk_post = 4",
            "UPDATE tb_post SET fk_user = 2 WHERE pk_post = 2",
            "DELETE FROM tb_comment WHERE pk_comment = 1001",
            "INSERT INTO tb_comment VALUES (1003, 1, 'c3')",
            "DELETE FROM tb_post WHERE fk_user = 2",
        ];
        for s in steps {
            c.batch_execute(s).await?;
            db.assert_exact().await?;
        }
        // Branches that produce the same key are refused at creation.
        let err = c
            .batch_execute(
                "CREATE TABLE tv_clash WITH (tviews.key = 'id') AS SELECT pk_post AS id FROM tb_post UNION ALL SELECT pk_post FROM tb_post",
            )
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("23505"));
        Ok(())
    })
    .await
}

/// A refresh may write base tables itself — a user's trigger on a TVIEW, a
/// foreign-key action on a table that references a TVIEW — and those writes
/// reach TVIEWs flushed earlier in the same round: they are refreshed again
/// (only keys cascaded from upstream TVIEWs, which such a refresh has read
/// already, are skipped). In both refresh modes.
#[tokio::test(flavor = "multi_thread")]
async fn writes_made_by_a_refresh_are_refreshed_too() {
    run(|| async {
        for mode in ["transaction", "statement"] {
            let db = Db::fresh("side_effects").await?;
            let c = &db.client;
            c.batch_execute(&format!("SET pg_tviews.refresh_mode = {mode}"))
                .await?;
            // A trigger on tv_b (flushed after tv_a) writes tb_a, which tv_a reads.
            c.batch_execute(
                "CREATE TABLE tb_a (pk_a int PRIMARY KEY, v int, w int);
                 INSERT INTO tb_a VALUES (1, 0, 0);
                 CREATE TABLE tv_a AS SELECT pk_a, v FROM tb_a;
                 CREATE TABLE tv_b AS SELECT pk_a AS pk_b, w FROM tb_a;
                 CREATE FUNCTION bump_a() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN UPDATE public.tb_a SET v = v + 100 WHERE pk_a = NEW.pk_b; RETURN NULL; END $$;
                 CREATE TRIGGER tv_b_bump AFTER UPDATE ON tv_b FOR EACH ROW EXECUTE FUNCTION bump_a();
                 UPDATE tb_a SET v = 1, w = 1 WHERE pk_a = 1;",
            )
            .await?;
            let v: i32 = c
                .query_one("SELECT v FROM tv_a WHERE pk_a = 1", &[])
                .await?
                .get(0);
            ensure!(v == 101, "{mode}: tv_a.v = {v}, the trigger made it 101");
            db.assert_exact().await?;
            // ON DELETE SET NULL from a base table to a TVIEW: deleting the
            // TVIEW's row (by its refresh) nulls tb_c.fk_p, which tv_c shows.
            c.batch_execute(
                "CREATE TABLE tb_p (pk_p int PRIMARY KEY);
                 CREATE TABLE tb_c (pk_c int PRIMARY KEY, fk_p int, note text);
                 INSERT INTO tb_p VALUES (1);
                 INSERT INTO tb_c VALUES (10, 1, 'x');
                 CREATE TABLE tv_c AS SELECT pk_c, fk_p, note FROM tb_c;
                 CREATE TABLE tv_p AS SELECT pk_p FROM tb_p;
                 ALTER TABLE tb_c ADD FOREIGN KEY (fk_p) REFERENCES tv_p (pk_p) ON DELETE SET NULL;
                 BEGIN;
                 UPDATE tb_c SET note = 'y' WHERE pk_c = 10;
                 DELETE FROM tb_p WHERE pk_p = 1;
                 COMMIT;",
            )
            .await?;
            let fk: Option<i32> = c
                .query_one("SELECT fk_p FROM tv_c WHERE pk_c = 10", &[])
                .await?
                .get(0);
            ensure!(fk.is_none(), "{mode}: tv_c.fk_p = {fk:?}, the FK action nulled it");
            db.assert_exact().await?;
        }
        Ok(())
    })
    .await
}
