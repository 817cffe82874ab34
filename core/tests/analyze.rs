//! Analysis and planning of definitions captured from a real PostgreSQL 15
//! (see `fixtures/capture.sql`), snapshot-tested.

use tviews_core::analyze::{Analysis, Mapping, Target, analyze};
use tviews_core::catalog::Catalog;
use tviews_core::plan::{TviewNames, capture_plan, refresh_plan};
use tviews_core::{TviewError, node};

fn load(name: &str) -> (node::Value, Catalog) {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let tree = node::parse(v["tree"].as_str().unwrap()).unwrap();
    let catalog: Catalog = serde_json::from_str(&v["catalog"].to_string()).unwrap();
    (tree, catalog)
}

fn run(name: &str, tview: &str, key: Option<&str>) -> Result<Analysis, TviewError> {
    let (tree, catalog) = load(name);
    analyze(
        &Target {
            schema: "public",
            name: tview,
            key_column: key,
        },
        &tree,
        &catalog,
    )
}

fn names(tview: &str) -> TviewNames {
    TviewNames {
        schema: "public".into(),
        name: tview.into(),
        view_schema: "tviews".into(),
        view_name: tview.into(),
    }
}

fn mapping_of<'a>(a: &'a Analysis, rel: &str) -> &'a Mapping {
    &a.sources.iter().find(|s| s.name == rel).unwrap().mapping
}

#[test]
fn join_with_filters_maps_both_sources() {
    let a = run("post", "tv_post", None).unwrap();
    assert_eq!(a.key.name, "pk_post");
    assert_eq!(a.key.type_name, "bigint");
    assert_eq!(a.columns, ["pk_post", "fk_user", "data"]);
    insta::assert_json_snapshot!("post_analysis", a);
    let plan = refresh_plan(names("tv_post"), &a);
    insta::assert_json_snapshot!("post_plan", plan);
}

#[test]
fn chain_of_joins_and_self_join() {
    let a = run("comment", "tv_comment", None).unwrap();
    // tb_user appears twice (post author, comment author): two paths.
    let Mapping::Keyed { paths } = mapping_of(&a, "tb_user") else {
        panic!("tb_user not keyed")
    };
    assert_eq!(paths.len(), 2);
    // tb_org is three hops away: org → user → post → comment.
    let Mapping::Keyed { paths } = mapping_of(&a, "tb_org") else {
        panic!("tb_org not keyed")
    };
    assert_eq!(paths[0].hops.len(), 3);
    insta::assert_json_snapshot!("comment_analysis", a);
    let plan = refresh_plan(names("tv_comment"), &a);
    insta::assert_json_snapshot!("comment_plan", plan);
}

#[test]
fn aggregate_keyed_by_group() {
    let a = run("user_stats", "tv_user_stats", Some("pk_user")).unwrap();
    assert!(a.aggregated);
    // Posts map straight to their user: fk_user is in the key's class.
    let Mapping::Keyed { paths } = mapping_of(&a, "tb_post") else {
        panic!()
    };
    assert_eq!(paths.len(), 1);
    assert!(paths[0].is_direct());
    assert_eq!(paths[0].column, "fk_user");
}

#[test]
fn nested_view_sublinks_and_unlinked_source() {
    let a = run("post_detail", "tv_post_detail", Some("pk_post")).unwrap();
    // Through the nested view v_named_post, the key is tb_post.pk_post.
    assert_eq!(a.key.relation_column, "pk_post");
    // Correlated subqueries map comments to their post directly.
    let Mapping::Keyed { paths } = mapping_of(&a, "tb_comment") else {
        panic!()
    };
    assert!(paths.iter().all(|p| p.is_direct() && p.column == "fk_post"));
    // IN (SELECT u.pk_user ...) links users to posts by fk_user.
    let Mapping::Keyed { paths } = mapping_of(&a, "tb_user") else {
        panic!()
    };
    assert_eq!(paths[0].hops[0].name, "tb_post");
    // The settings table has no link to the key: full rebuild.
    assert!(matches!(mapping_of(&a, "tb_setting"), Mapping::Full { .. }));
    insta::assert_json_snapshot!("post_detail_analysis", a);
}

#[test]
fn capture_plan_merges_readers() {
    let post = run("post", "tv_post", None).unwrap();
    let comment = run("comment", "tv_comment", None).unwrap();
    let post_plan = refresh_plan(names("tv_post"), &post);
    let comment_plan = refresh_plan(names("tv_comment"), &comment);
    let users = post
        .sources
        .iter()
        .find(|s| s.name == "tb_user")
        .unwrap()
        .relation;
    let locks = [
        tviews_core::locks::lock_plan(&post, &post_plan),
        tviews_core::locks::lock_plan(&comment, &comment_plan),
    ];
    let links = tviews_core::locks::link_columns(locks.iter());
    let user_links: Vec<_> = links[&users].iter().cloned().collect();
    let cap = capture_plan(
        users,
        &[(0, &post, &post_plan), (1, &comment, &comment_plan)],
        &user_links,
        None,
    );
    // One expression (pk_user as text) serves three paths and the lock of
    // the writer on tb_user.pk_user; fk_org (the link to orgs) is locked too.
    assert_eq!(cap.slots.len(), 2);
    assert_eq!(cap.slots[0].len(), 4);
    assert_eq!(cap.links.len(), 2);
    insta::assert_json_snapshot!("users_capture", cap);

    // With the source's column types, an UPDATE captures only rows whose
    // columns read by a TVIEW changed; without them (or with a column read
    // whose type's text may not be its value, or a system column read),
    // every row.
    let column_types = |key_type: &str| tviews_core::plan::UpdateFilter {
        columns: vec![
            ("pk_user".into(), key_type.into()),
            ("fk_org".into(), "bigint".into()),
            ("name".into(), "text".into()),
            ("email".into(), "text".into()),
        ],
        changed_rows_only: false,
    };
    let filtered = capture_plan(
        users,
        &[(0, &post, &post_plan), (1, &comment, &comment_plan)],
        &user_links,
        Some(&column_types("bigint")),
    );
    let update = filtered.on_update.clone().unwrap();
    // tv_post reads the user's name; tv_comment (and the locks) its org too:
    // a change of org alone refreshes tv_comment only.
    assert!(
        update.starts_with(
            "WITH tviews_changed_old_0 AS (SELECT a.* FROM \"tviews_old\" AS a WHERE (ROW(a.\"name\", a.\"pk_user\"))::pg_catalog.text IN"
        ),
        "{update}"
    );
    assert!(update.contains(
        "EXCEPT ALL SELECT (ROW(c.\"fk_org\", c.\"name\", c.\"pk_user\"))::pg_catalog.text FROM \"tviews_new\" AS c"
    ));
    assert!(update.contains("FROM \"tviews_changed_new_1\""));
    // Columns the definitions do not read are not compared.
    assert!(!update.contains("email"), "{update}");
    // INSERT and DELETE read the whole transition table either way.
    for (sql, table) in [
        (&filtered.on_insert, "tviews_new"),
        (&filtered.on_delete, "tviews_old"),
    ] {
        let sql = sql.as_deref().unwrap();
        assert!(!sql.contains("tviews_changed"), "{sql}");
        assert_eq!(
            sql.matches("FROM \"").count(),
            sql.matches(&format!("FROM \"{table}\"")).count(),
            "{sql}"
        );
    }
    for key_type in ["public.citext", "\"My Type\"", "money"] {
        let plan = capture_plan(
            users,
            &[(0, &post, &post_plan)],
            &user_links,
            Some(&column_types(key_type)),
        );
        assert!(!plan.on_update.unwrap().starts_with("WITH"), "{key_type}");
    }
}

#[test]
fn update_filter_is_per_reader() {
    // tv_post reads tb_post's pk_post, fk_user and title; tv_tag only its
    // tag_ids: an UPDATE of a title must not refresh tv_tag, so each slot
    // compares the columns its own readers read.
    let post = run("post", "tv_post", None).unwrap();
    let tag = run("tag", "tv_tag", None).unwrap();
    let post_plan = refresh_plan(names("tv_post"), &post);
    let tag_plan = refresh_plan(names("tv_tag"), &tag);
    let posts = post
        .sources
        .iter()
        .find(|s| s.name == "tb_post")
        .unwrap()
        .relation;
    let filter = tviews_core::plan::UpdateFilter {
        columns: vec![
            ("pk_post".into(), "bigint".into()),
            ("fk_user".into(), "bigint".into()),
            ("title".into(), "text".into()),
            ("tag_ids".into(), "bigint[]".into()),
        ],
        changed_rows_only: false,
    };
    // The value-lock links on tb_post compare every column read; a reader
    // whose expression is a link's still compares only its own columns.
    let locks = [
        tviews_core::locks::lock_plan(&post, &post_plan),
        tviews_core::locks::lock_plan(&tag, &tag_plan),
    ];
    let links = tviews_core::locks::link_columns(locks.iter());
    let post_links: Vec<_> = links
        .get(&posts)
        .map(|l| l.iter().cloned().collect())
        .unwrap_or_default();
    let cap = capture_plan(
        posts,
        &[(0, &post, &post_plan), (1, &tag, &tag_plan)],
        &post_links,
        Some(&filter),
    );
    assert!(cap.update_filtered);
    assert!(!post_links.is_empty());
    let update = cap.on_update.clone().unwrap();
    let group_of = |tview: usize| {
        let slot = cap
            .slots
            .iter()
            .position(|uses| {
                uses.iter().any(|u| match u {
                    tviews_core::plan::SlotUse::Keys { tview: t }
                    | tviews_core::plan::SlotUse::Start { tview: t, .. } => *t == tview,
                    _ => false,
                })
            })
            .unwrap();
        let from = format!("'{slot}'::pg_catalog.text AS slot, ");
        let at = update
            .find(&from)
            .unwrap_or_else(|| panic!("{from} in {update}"));
        let rest = &update[at..];
        let table = &rest[rest.find("FROM \"").unwrap() + 6..];
        table[..table.find('"').unwrap()].to_string()
    };
    let (post_from, tag_from) = (group_of(0), group_of(1));
    assert_ne!(post_from, tag_from, "{update}");
    let definition = |name: &str| {
        let at = update.find(&format!("{name} AS (")).unwrap();
        update[at..at + update[at..].find("IN (").unwrap()].to_string()
    };
    assert!(
        definition(&post_from).contains(r#"ROW(a."fk_user", a."pk_post", a."title")"#),
        "{update}"
    );
    assert!(
        definition(&tag_from).contains(r#"ROW(a."tag_ids")"#),
        "{update}"
    );
    // INSERT and DELETE capture every row, as without the filter.
    let unfiltered = capture_plan(
        posts,
        &[(0, &post, &post_plan), (1, &tag, &tag_plan)],
        &post_links,
        None,
    );
    for sql in [&cap.on_insert, &cap.on_delete] {
        assert!(!sql.as_deref().unwrap().contains("tviews_changed"));
    }
    assert!(!unfiltered.on_update.unwrap().contains("tviews_changed"));
}

#[test]
fn tview_sources_compare_nothing_when_every_column_is_read() {
    // A TVIEW's table is written by its maintenance only, and only where a
    // row changed: a reader comparing every column would keep every row, so
    // it reads the transition tables as they are; one reading fewer columns
    // still compares them.
    let post = run("post", "tv_post", None).unwrap();
    let tag = run("tag", "tv_tag", None).unwrap();
    let post_plan = refresh_plan(names("tv_post"), &post);
    let tag_plan = refresh_plan(names("tv_tag"), &tag);
    let posts = post
        .sources
        .iter()
        .find(|s| s.name == "tb_post")
        .unwrap()
        .relation;
    let columns = |with_tags: bool| {
        let mut c: Vec<(String, String)> = vec![
            ("pk_post".into(), "bigint".into()),
            ("fk_user".into(), "bigint".into()),
            ("title".into(), "text".into()),
        ];
        if with_tags {
            c.push(("tag_ids".into(), "bigint[]".into()));
        }
        tviews_core::plan::UpdateFilter {
            columns: c,
            changed_rows_only: true,
        }
    };
    let all_read = capture_plan(posts, &[(0, &post, &post_plan)], &[], Some(&columns(false)));
    assert!(!all_read.update_filtered);
    let sql = all_read.on_update.unwrap();
    assert!(!sql.contains("tviews_changed"), "{sql}");
    // As a base table (no-op updates possible), the same reader compares.
    let base = tviews_core::plan::UpdateFilter {
        changed_rows_only: false,
        ..columns(false)
    };
    let compared = capture_plan(posts, &[(0, &post, &post_plan)], &[], Some(&base));
    assert!(compared.update_filtered);
    // tv_post does not read tag_ids, tv_tag reads nothing else: both compare.
    let both = capture_plan(
        posts,
        &[(0, &post, &post_plan), (1, &tag, &tag_plan)],
        &[],
        Some(&columns(true)),
    );
    assert!(both.update_filtered);
    let sql = both.on_update.unwrap();
    assert!(sql.contains("tviews_changed_old_1"), "{sql}");
}

#[test]
fn rejections_name_the_problem() {
    let cases = [
        (
            "bad_random",
            "tv_bad_random",
            "pk_post",
            "0A000",
            "volatile function random()",
        ),
        ("bad_now", "tv_bad_now", "pk_post", "0A000", "now()"),
        (
            "bad_limit",
            "tv_bad_limit",
            "pk_post",
            "0A000",
            "LIMIT or OFFSET",
        ),
        (
            "bad_window",
            "tv_bad_window",
            "pk_post",
            "0A000",
            "window function",
        ),
        (
            "bad_expr_key",
            "tv_bad_expr_key",
            "pk_post",
            "42P16",
            "not a plain column",
        ),
        (
            "bad_agg_key",
            "tv_bad_agg_key",
            "pk_post",
            "42P16",
            "not a GROUP BY column",
        ),
        (
            "bad_curdate",
            "tv_bad_curdate",
            "pk_post",
            "0A000",
            "CURRENT_DATE",
        ),
        ("post", "tv_post", "nope", "42703", "no key column \"nope\""),
    ];
    for (fixture, tview, key, sqlstate, needle) in cases {
        let err = run(fixture, tview, Some(key)).expect_err(fixture);
        let msg = err.to_string();
        assert_eq!(err.sqlstate(), sqlstate, "{fixture}: {msg}");
        assert!(msg.contains(needle), "{fixture}: {msg}");
        assert!(err.hint().is_some(), "{fixture} has no hint");
    }
}

#[test]
fn conventional_key_from_name() {
    // tv_post → pk_post without naming it.
    assert!(run("post", "tv_post", None).is_ok());
    let err = run("post", "tv_article", None).unwrap_err();
    assert!(matches!(err, TviewError::NoKeyColumn { ref wanted, .. } if wanted == "pk_article"));
}

#[test]
fn cte_sources_are_traced() {
    let a = run("cte", "tv_post_stats", Some("pk_post")).unwrap();
    // tb_comment is read only inside the CTE: it maps to posts by fk_post.
    let Mapping::Keyed { paths } = mapping_of(&a, "tb_comment") else {
        panic!("tb_comment not keyed")
    };
    assert!(paths[0].is_direct() && paths[0].column == "fk_post");
}

#[test]
fn array_membership_maps_through_elements() {
    // A tag's change reaches the posts whose tag_ids contain it.
    let a = run("post_tags", "tv_post_tags", Some("pk_post")).unwrap();
    let Mapping::Keyed { paths } = mapping_of(&a, "tb_tag") else {
        panic!("tb_tag not keyed")
    };
    assert!(paths[0].hops[0].overlap, "{paths:?}");
    let plan = refresh_plan(names("tv_post_tags"), &a);
    insta::assert_snapshot!("post_tags_derive", plan.derive.join("\n"));
    // A post's change reaches the tags in its old and new tag_ids.
    let a = run("tag", "tv_tag", Some("pk_tag")).unwrap();
    let Mapping::Keyed { paths } = mapping_of(&a, "tb_post") else {
        panic!("tb_post not keyed")
    };
    assert!(paths[0].is_direct() && paths[0].unnest, "{paths:?}");
    // Through an array and then a join: users → posts → tags.
    let a = run("tag_users", "tv_tag_users", Some("pk_tag")).unwrap();
    let Mapping::Keyed { paths } = mapping_of(&a, "tb_user") else {
        panic!("tb_user not keyed")
    };
    assert!(paths[0].hops[0].next_unnest, "{paths:?}");
    let plan = refresh_plan(names("tv_tag_users"), &a);
    insta::assert_snapshot!("tag_users_derive", plan.derive.join("\n"));
}

#[test]
fn union_all_branches_each_have_a_key() {
    // Expressions as keys are refused, in any branch.
    let err = run("feed", "tv_feed", None).unwrap_err();
    assert_eq!(err.sqlstate(), "42P16");
    // Plain key columns in every branch: each source maps within its branch.
    let a = run("feed2", "tv_feed2", Some("pk_feed")).unwrap();
    let Mapping::Keyed { paths } = mapping_of(&a, "tb_post") else {
        panic!()
    };
    assert!(paths[0].is_direct() && paths[0].column == "pk_post");
    let Mapping::Keyed { paths } = mapping_of(&a, "tb_comment") else {
        panic!()
    };
    assert!(paths[0].is_direct() && paths[0].column == "pk_comment");
    // UNION without ALL is refused with a hint towards UNION ALL.
    let err = run("bad_union", "tv_bad_union", Some("pk_post")).unwrap_err();
    assert!(err.hint().unwrap_or_default().contains("UNION ALL"));
}

#[test]
fn lock_plans_cover_every_link() {
    use tviews_core::locks::{link_columns, lock_plan};
    let a = run("comment", "tv_comment", None).unwrap();
    let plan = refresh_plan(names("tv_comment"), &a);
    let lp = lock_plan(&a, &plan);
    assert_eq!(lp.start_targets.len(), plan.paths.len());
    assert_eq!(lp.reverse.len(), plan.paths.len());
    // The org path is three hops: its forward query reports two levels.
    let org = plan
        .paths
        .iter()
        .position(|p| p.path.hops.len() == 3)
        .unwrap();
    assert_eq!(lp.forward[org].as_ref().unwrap().levels.len(), 2);
    assert_eq!(lp.reverse[org].levels.len(), 3);
    insta::assert_json_snapshot!("comment_locks", lp);
    // Writers of tb_post lock pk_post (the key side of paths) and fk_user
    // (the link to users).
    let links = link_columns([&lp]);
    let post = plan
        .paths
        .iter()
        .find(|p| p.path.hops.iter().any(|h| h.name == "tb_post"))
        .unwrap()
        .path
        .hops
        .iter()
        .find(|h| h.name == "tb_post")
        .unwrap()
        .relation;
    let cols: Vec<&str> = links[&post].iter().map(|t| t.column.as_str()).collect();
    assert!(
        cols.contains(&"pk_post") && cols.contains(&"fk_user"),
        "{cols:?}"
    );
}

#[test]
fn explain_renders_tree_json_and_dot() {
    use tviews_core::explain::{Upstream, explain};
    let a = run("comment", "tv_comment", None).unwrap();
    let plan = refresh_plan(names("tv_comment"), &a);
    let e = explain(
        "tv_comment",
        &a,
        &plan,
        0,
        vec![Upstream {
            tview: "tv_x".into(),
            reads: vec!["tv_y".into(), "tv_x".into()],
        }],
        vec!["tv_digest".into()],
        &|_| false,
    );
    insta::assert_snapshot!("comment_explain_text", e.to_text(false));
    insta::assert_snapshot!("comment_explain_dot", e.to_dot());
    insta::assert_json_snapshot!("comment_explain_json", e);
    assert!(e.to_text(true).contains("derive from tb_user"));
}
