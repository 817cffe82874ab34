//! End to end: every command against a live, preloaded scratch cluster holding the demo
//! read model (`demo/schema.sql`), outputs snapshot-tested with volatile values
//! (sizes, times, timestamps) filtered. One cluster and one database serve the file; the
//! scenarios run in order from the single test, so a failure names the scenario.

mod common;

use std::process::Output;

use common::{expect_code, fails_with, json, stderr, stdout, tviews};
use serde_json::Value;
use tviews_tests::{Cluster, ClusterOptions};

const DEMO: &str = include_str!("../../demo/schema.sql");
const DB: &str = "shop";

struct Ctx {
    cluster: Cluster,
    home: tempfile::TempDir,
    socket: String,
    port: String,
}

impl Ctx {
    /// `tviews -h <socket> -p <port> -U postgres -d shop ARGS`.
    fn run(&self, args: &[&str]) -> Output {
        self.run_in(DB, args)
    }

    fn run_in(&self, db: &str, args: &[&str]) -> Output {
        let mut v = vec![
            "-h",
            &self.socket,
            "-p",
            &self.port,
            "-U",
            "postgres",
            "-d",
            db,
        ];
        v.extend_from_slice(args);
        tviews(self.home.path(), &v, &[])
    }

    /// Exit 0 and stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        expect_code(&out, 0, &args.join(" "));
        stdout(&out)
    }

    fn sql(&self, sql: &str) -> String {
        match self.cluster.psql(DB, sql) {
            Ok(out) => out,
            Err(e) => panic!("{sql}: {e:#}"),
        }
    }
}

/// Sizes, durations and timestamps change from run to run.
fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?[+-]\d\d(:\d\d)?",
            "[time]",
        ),
        (r"\d+(\.\d+)? (ms|s)\b", "[duration]"),
        (r"\d+m \d\ds", "[duration]"),
        (r"\d+ (bytes|kB|MB|GB)", "[size]"),
        // Whether autovacuum has analysed a table yet.
        (r"\((about \d+ rows|never analysed)\)", "([rows])"),
    ]
}

macro_rules! snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({filters => filters(), prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!($name, $value);
        });
    };
}

#[test]
fn commands_on_the_demo_read_model() {
    if !tviews_tests::extension_installed() {
        eprintln!("skipping: {}", tviews_tests::EXTENSION_NOT_INSTALLED);
        return;
    }
    let cluster = match Cluster::start(ClusterOptions {
        preload: true,
        name: "cli-commands".into(),
        ..ClusterOptions::default()
    }) {
        Ok(c) => c,
        Err(e) => panic!("{e:?}"),
    };
    if let Err(e) = cluster.create_database_with_extension(DB) {
        panic!("{e:#}");
    }
    if let Err(e) = cluster.psql(DB, DEMO) {
        panic!("loading demo/schema.sql: {e:#}");
    }
    let ctx = Ctx {
        socket: cluster.socket_dir().display().to_string(),
        port: cluster.port().to_string(),
        cluster,
        home: tempfile::tempdir().expect("temporary HOME"),
    };

    // Before any write: every counter is zero.
    list_and_status(&ctx);
    explain_shows_sources_cascade_and_statements(&ctx);
    graph_whole_and_inverted(&ctx);
    explain_for_lists_the_keys_and_rolls_back(&ctx);
    analyze_flags_a_dropped_index_and_prints_the_fix(&ctx);
    verify_exits_1_naming_the_corrupted_key(&ctx);
    stats_and_queue(&ctx);
    errors_with_sqlstate_and_exit_codes(&ctx);
}

fn list_and_status(ctx: &Ctx) {
    snapshot!("list", ctx.ok(&["list"]));
    let v = json(
        &ctx.run(&["list", "--format", "json"]),
        "list --format json",
    );
    let tviews: Vec<&str> = v["tviews"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["tview"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(tviews, ["tv_product", "tv_review", "tv_category"], "{v}");
    assert_eq!(v["tviews"][2]["depth"], 1, "{v}");
    assert_eq!(
        v["tviews"][2]["sources"],
        serde_json::json!(["tb_category", "tv_product"])
    );

    let v = json(&ctx.run(&["status", "--format", "json"]), "status");
    assert_eq!(v["extension"]["statistics"], true, "{v}");
    assert_eq!(v["tviews"]["count"], 3, "{v}");
    assert_eq!(v["health"]["available"], true, "{v}");
    assert_eq!(v["health"]["summary"]["error"], 0, "{v}");
    assert!(
        v["health"]["summary"]["ok"].as_u64().unwrap_or(0) >= 5,
        "{v}"
    );
}

fn explain_shows_sources_cascade_and_statements(ctx: &Ctx) {
    let text = ctx.ok(&["explain", "tv_product"]);
    assert!(
        text.contains("tb_category.pk_category → tb_product.fk_category → tb_product.pk_product → tv_product.pk_product"),
        "{text}"
    );
    snapshot!("explain_tv_product", text);
    snapshot!("explain_tv_category", ctx.ok(&["explain", "tv_category"]));
    snapshot!(
        "explain_tv_product_json",
        ctx.ok(&["explain", "tv_product", "--format", "json"])
    );
    snapshot!(
        "explain_tv_category_dot",
        ctx.ok(&["explain", "tv_category", "--format", "dot"])
    );
}

fn graph_whole_and_inverted(ctx: &Ctx) {
    snapshot!("graph", ctx.ok(&["graph"]));
    snapshot!("graph_dot", ctx.ok(&["graph", "--format", "dot"]));
    snapshot!("graph_invert", ctx.ok(&["graph", "--invert", "tb_review"]));
    let v = json(
        &ctx.run(&["graph", "--invert", "tb_inventory", "--format", "json"]),
        "graph --invert --format json",
    );
    assert_eq!(
        v["refresh_order"],
        serde_json::json!(["tv_product", "tv_category"])
    );
    let out = ctx.run(&["graph", "--invert", "tb_nothing"]);
    fails_with(&out, 1, "\"tb_nothing\" is not read by any TVIEW");
}

fn explain_for_lists_the_keys_and_rolls_back(ctx: &Ctx) {
    let update = "UPDATE tb_review SET rating = 5 WHERE pk_review = 1";
    snapshot!("explain_for_update", ctx.ok(&["explain", "--for", update]));
    // Nothing stayed: the review, its TVIEW row and the category document.
    let rating = ctx.sql("SELECT rating FROM tb_review WHERE pk_review = 1");
    assert!(rating.contains('2'), "{rating}");
    expect_code(&ctx.run(&["verify"]), 0, "verify after --for");

    let v = json(
        &ctx.run(&[
            "explain",
            "--for",
            "UPDATE tb_category SET name = 'Garden' WHERE pk_category = 3",
            "--format",
            "json",
        ]),
        "explain --for --format json",
    );
    assert_eq!(v["rows"], 1, "{v}");
    let product = &v["tviews"][0];
    assert_eq!(product["tview"], "tv_product", "{v}");
    assert_eq!(
        product["queued"][0]["path"],
        "tb_category.pk_category → tb_product.fk_category → tb_product.pk_product → tv_product.pk_product"
    );
    assert_eq!(
        product["queued"][0]["keys"].as_array().map(Vec::len),
        Some(50)
    );
    assert_eq!(product["queued"][0]["keys"][0], "2", "{v}");

    snapshot!(
        "explain_for_one_tview_no_refresh",
        ctx.ok(&[
            "explain",
            "tv_product",
            "--no-refresh",
            "--for",
            "DELETE FROM tb_inventory WHERE fk_product = 1",
        ])
    );

    let out = ctx.run(&["explain", "--for", "COMMIT"]);
    fails_with(&out, 1, "not COMMIT");
    let out = ctx.run(&[
        "explain",
        "--for",
        "UPDATE tb_review SET rating = 1; COMMIT",
    ]);
    fails_with(&out, 1, "SQLSTATE: 42601");
    let out = ctx.run(&["explain", "--for", "UPDATE tb_review SET rating = 9"]);
    fails_with(&out, 1, "SQLSTATE: 23514");
    let rating = ctx.sql("SELECT count(*) FROM tb_review WHERE rating = 1");
    assert!(rating.contains("600"), "{rating}");
}

fn analyze_flags_a_dropped_index_and_prints_the_fix(ctx: &Ctx) {
    let warnings = |out: &Output| -> Vec<Value> {
        let v = json(out, "explain --analyze --format json");
        let statements = v["analysis"]["statements"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for s in &statements {
            assert_eq!(s["error"], Value::Null, "{s}");
            assert!(s["generic_plan"].is_array(), "{s}");
        }
        let kinds: Vec<&str> = statements
            .iter()
            .filter_map(|s| s["kind"].as_str())
            .collect();
        assert_eq!(kinds, ["apply_keys", "apply_all", "derive", "reverse"]);
        assert!(statements[0]["analyzed_plan"].is_array());
        assert_eq!(statements[1]["analyzed_plan"], Value::Null);
        v["analysis"]["warnings"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|w| w["severity"] == "warning")
            .collect()
    };
    let healthy = warnings(&ctx.run(&["explain", "tv_product", "--analyze", "--format", "json"]));
    assert!(healthy.is_empty(), "{healthy:?}");

    ctx.sql("DROP INDEX tb_review_fk_product_idx");
    let out = ctx.run(&["explain", "tv_product", "--analyze"]);
    expect_code(&out, 0, "explain --analyze");
    let text = stdout(&out);
    assert!(
        text.contains("fix: CREATE INDEX ON public.tb_review (fk_product);"),
        "{text}"
    );
    assert!(text.contains("Seq Scan on tb_review"), "{text}");
    let mut found = warnings(&ctx.run(&["explain", "tv_product", "--analyze", "--format", "json"]));
    assert_eq!(found.len(), 1, "{found:?}");
    let evidence = found[0]["evidence"].take();
    assert!(
        evidence.to_string().contains("removed by filter"),
        "{evidence}"
    );
    snapshot!(
        "analyze_missing_index",
        serde_json::to_string_pretty(&found).unwrap_or_default()
    );
    // The fix fixes it.
    ctx.sql("CREATE INDEX ON public.tb_review (fk_product)");
    let after = warnings(&ctx.run(&["explain", "tv_product", "--analyze", "--format", "json"]));
    assert!(after.is_empty(), "{after:?}");
    // Nothing the statements wrote stayed.
    expect_code(&ctx.run(&["verify"]), 0, "verify after --analyze");
}

fn verify_exits_1_naming_the_corrupted_key(ctx: &Ctx) {
    snapshot!("verify_exact", ctx.ok(&["verify"]));
    // A TVIEW refuses direct writes; a superuser may, for repairs (or to break it).
    ctx.sql(
        "SET pg_tviews.allow_direct_writes = on; \
         UPDATE tv_product SET data = data || '{\"price\": 0}' WHERE pk_product = 5",
    );
    let out = ctx.run(&["verify"]);
    expect_code(&out, 1, "verify after corruption");
    snapshot!("verify_corrupted", stdout(&out));
    assert_eq!(
        stderr(&out),
        "tviews: 1 of 3 TVIEWs differ from their definitions (repair: tviews refresh tv_product)\n"
    );
    let out = ctx.run(&["verify", "tv_product", "--format", "json"]);
    expect_code(&out, 1, "verify --format json");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(v["exact"], false, "{v}");
    assert_eq!(
        v["tviews"][0]["differences"],
        serde_json::json!([{"key": "5", "difference": "different", "columns": ["data"]}])
    );
    expect_code(
        &ctx.run(&["verify", "tv_review"]),
        0,
        "verify one exact TVIEW",
    );

    snapshot!("refresh", ctx.ok(&["refresh", "tv_product"]));
    expect_code(&ctx.run(&["verify"]), 0, "verify after refresh");
}

fn stats_and_queue(ctx: &Ctx) {
    let v = json(&ctx.run(&["stats", "--format", "json"]), "stats");
    assert_eq!(v["preloaded"], true, "{v}");
    let product = v["tviews"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["tview"] == "tv_product"))
        .cloned()
        .unwrap_or_default();
    assert!(product["full_rebuilds"].as_i64().unwrap_or(0) >= 1, "{v}");
    assert!(v["cache"]["hits"].is_i64(), "{v}");
    let text = ctx.ok(&["stats"]);
    assert!(text.contains("plan cache hits"), "{text}");
    let v = json(&ctx.ok_json_reset(), "stats --reset");
    assert_eq!(v["reset"], true);
    assert!(
        v["tviews"]
            .as_array()
            .is_some_and(|a| a.iter().all(|t| t["refreshes"] == 0)),
        "{v}"
    );

    let v = json(&ctx.run(&["queue", "--format", "json"]), "queue");
    assert_eq!(v["pending"], serde_json::json!([]), "{v}");
    assert_eq!(v["prepared"], serde_json::json!([]), "{v}");
    assert_eq!(ctx.ok(&["queue"]), "no TVIEW work pending\n");
}

impl Ctx {
    fn ok_json_reset(&self) -> Output {
        self.run(&["stats", "--reset", "--format", "json"])
    }
}

fn errors_with_sqlstate_and_exit_codes(ctx: &Ctx) {
    let out = ctx.run(&["explain", "tv_nope"]);
    fails_with(&out, 1, "ERROR:  relation \"tv_nope\" does not exist");
    fails_with(&out, 1, "SQLSTATE: 42P01");
    let out = ctx.run(&["explain", "tb_review"]);
    fails_with(&out, 1, "\"tb_review\" is not a TVIEW");
    fails_with(&out, 1, "SQLSTATE: 42809");
    fails_with(&out, 1, "HINT:  TVIEWs are listed in tviews.tview.");
    let out = ctx.run(&["refresh", "tb_review"]);
    fails_with(&out, 1, "SQLSTATE: 42809");
    let out = ctx.run(&["verify", "tv_nope"]);
    fails_with(&out, 1, "SQLSTATE: 42P01");
    let out = ctx.run(&["list", "--format", "dot"]);
    fails_with(&out, 1, "--format dot is only for explain and graph");
    let out = ctx.run(&[
        "explain",
        "--for",
        "DELETE FROM tb_review",
        "--format",
        "dot",
    ]);
    fails_with(&out, 1, "not available with --for");
    let out = ctx.run(&["explain"]);
    expect_code(&out, 1, "explain without a TVIEW");
    let out = ctx.run_in("postgres", &["list"]);
    fails_with(
        &out,
        1,
        "the extension pg_tviews is not installed in database \"postgres\" (to install it: CREATE EXTENSION pg_tviews;)",
    );
}
