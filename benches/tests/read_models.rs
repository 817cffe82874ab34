//! The benchmark's read models are right: every approach's documents equal the definitions
//! after a few transactions of every single-row and bulk operation, and the check notices when
//! they do not. On a scratch cluster (the harness), in well under 30 s.

use anyhow::Result;
use tviews_benches::approach::Approach;
use tviews_benches::data::Catalogue;
use tviews_benches::runner::{
    check_read_model, execute_txn, load_template, params, setup_approach,
};
use tviews_benches::scale::Scale;
use tviews_benches::workload::{Group, Op};
use tviews_tests::{Cluster, ClusterOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_model_stays_exact_through_the_workload() -> Result<()> {
    let cluster = Cluster::start(ClusterOptions {
        name: "bench_models".into(),
        ..ClusterOptions::default()
    })?;
    let cat = Catalogue::generate(Scale::Small, 11);
    load_template(&cluster, &cat).await?;
    // REFRESH ... CONCURRENTLY keeps the same views as Matview: not repeated here.
    let mut approaches = vec![
        Approach::TriggersRow,
        Approach::TriggersStmt,
        Approach::Matview,
    ];
    if tviews_tests::extension_installed() {
        approaches.push(Approach::Tviews);
    } else {
        eprintln!("pg_tviews is not installed: its read model is not checked here");
    }
    let ivm = cluster.psql(
        "postgres",
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_ivm'",
    )?;
    if ivm == "1" {
        approaches.push(Approach::PgIvm);
    }
    let ops: Vec<Op> = Op::sequence(Scale::Small)
        .into_iter()
        .filter(|op| matches!(op.group(), Group::Row | Group::Bulk))
        .collect();
    for a in approaches {
        setup_approach(&cluster, a)?;
        let client = cluster.connect(&a.database()).await?;
        for op in &ops {
            let (sql, types) = op.statement(a).expect("a statement");
            let stmt = client.prepare_typed(&sql, &types).await?;
            let refresh = a.refresh_sql(&op.touched_docs());
            for t in op.transactions(&cat, 1, 2) {
                execute_txn(&client, &stmt, &params(&t), &refresh, false)
                    .await
                    .map_err(|e| anyhow::anyhow!("{} {}: {e:?}", a.id(), op.id()))?;
            }
        }
        let differing = check_read_model(&client, a).await?;
        assert!(
            differing.iter().all(|(_, n)| *n == 0),
            "{} differs from the definitions: {differing:?}",
            a.label()
        );
    }

    // The check catches a read model that missed a change.
    let client = cluster.connect(&Approach::TriggersRow.database()).await?;
    client
        .batch_execute(
            "ALTER TABLE tb_review DISABLE TRIGGER hw_review; \
             UPDATE tb_review SET rating = rating % 5 + 1 WHERE pk_review = 1",
        )
        .await?;
    let differing = check_read_model(&client, Approach::TriggersRow).await?;
    let by_table = |t: &str| {
        differing
            .iter()
            .find(|(name, _)| name == t)
            .map(|(_, n)| *n)
    };
    // The review's document and its product's are stale (each counted both ways), and with
    // them the product's category.
    assert_eq!(by_table("hw_review"), Some(2), "{differing:?}");
    assert_eq!(by_table("hw_product"), Some(2), "{differing:?}");
    assert_eq!(by_table("hw_category"), Some(2), "{differing:?}");
    Ok(())
}
