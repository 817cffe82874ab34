//! Upgrades (issue 8, docs/OPERATIONS.md): builds the previous release
//! from the commit recorded in `ext/releases.txt`, installs it, creates
//! TVIEWs with data under it, then installs this build the way a DBA
//! would — new files, restart, `ALTER EXTENSION pg_tviews UPDATE` — and
//! checks that the TVIEWs stay exact and maintained at every step, that a
//! dump of the upgraded database restores, and that the upgraded
//! extension's objects are exactly those of a fresh install.
//!
//! The test swaps the extension's files in the system PostgreSQL and puts
//! the current ones back when it ends, however it ends. Files are replaced
//! by rename, so servers already running keep the library they mapped.
//! Cargo runs test binaries one after another, and this binary has one
//! test, so no other test of the suite sees the old release.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use tokio_postgres::Client;
use tviews_tests::support::assert_exact;
use tviews_tests::{Cluster, ClusterOptions, StopMode, pg_bin};

const CURRENT: &str = env!("CARGO_PKG_VERSION");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn work_root() -> PathBuf {
    std::env::var_os("TVIEWS_WORK_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/pg_tviews"))
}

/// The newest release in `ext/releases.txt` older than this build.
fn previous_release() -> Result<(String, String)> {
    let path = repo_root().join("ext/releases.txt");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .rfind(|(v, _)| v != CURRENT)
        .with_context(|| format!("no release older than {CURRENT} in {}", path.display()))
}

fn run(cmd: &mut Command) -> Result<()> {
    let what = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn pg_config_value(flag: &str) -> Result<PathBuf> {
    let program = std::env::var_os("PG_CONFIG").unwrap_or_else(|| "pg_config".into());
    let out = Command::new(program)
        .arg(flag)
        .output()
        .context("running pg_config")?;
    ensure!(out.status.success(), "pg_config {flag} failed");
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The files of a packaged build, as (file in the package, where it is installed).
struct Package {
    files: Vec<(PathBuf, PathBuf)>,
}

/// Builds release `version` from `commit` (once: kept under the work root)
/// with `cargo pgrx package`, and lists what it would install.
fn build_release(version: &str, commit: &str) -> Result<Package> {
    let dir = work_root().join("release-build");
    let src = dir.join(version).join("src");
    if !src.join("Cargo.toml").exists() {
        fs::create_dir_all(&src)?;
        let archive = dir.join(version).join("src.tar");
        run(Command::new("git")
            .arg("-C")
            .arg(repo_root())
            .args(["archive", "-o"])
            .arg(&archive)
            .arg(commit))
        .with_context(|| {
            format!("release {version} (commit {commit}) is not in this clone's history")
        })?;
        run(Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&src))?;
    }
    let target = dir.join("target");
    let pg_config = std::env::var_os("PG_CONFIG").unwrap_or_else(|| "/usr/bin/pg_config".into());
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building pg_tviews {version} from {commit} (the first time takes minutes)");
    run(Command::new(cargo)
        .current_dir(&src)
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "pgrx",
            "package",
            "-p",
            "pg_tviews",
            "--debug",
            "--pg-config",
        ])
        .arg(&pg_config))
    .with_context(|| format!("building release {version}"))?;
    let root = target.join("debug").join("pg_tviews-pg15");
    let pkglibdir = pg_config_value("--pkglibdir")?;
    let extdir = pg_config_value("--sharedir")?.join("extension");
    let inside = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    let mut files = vec![
        (
            inside(&pkglibdir).join("pg_tviews.so"),
            pkglibdir.join("pg_tviews.so"),
        ),
        (
            inside(&extdir).join("pg_tviews.control"),
            extdir.join("pg_tviews.control"),
        ),
    ];
    let script = format!("pg_tviews--{version}.sql");
    files.push((inside(&extdir).join(&script), extdir.join(&script)));
    for (from, _) in &files {
        ensure!(
            from.exists(),
            "the package of {version} has no {}",
            from.display()
        );
    }
    Ok(Package { files })
}

/// Installed files replaced by another build's; put back on drop.
struct Swap {
    saved: Vec<(PathBuf, Option<PathBuf>)>,
    _backup: tempfile::TempDir,
}

fn replace_by_rename(from: &Path, to: &Path) -> Result<()> {
    let tmp = to.with_extension(format!("swap.{}", std::process::id()));
    fs::copy(from, &tmp)
        .with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
    fs::rename(&tmp, to)
        .with_context(|| format!("renaming {} to {}", tmp.display(), to.display()))?;
    Ok(())
}

impl Swap {
    fn install(pkg: &Package) -> Result<Swap> {
        let backup = tempfile::tempdir()?;
        let mut swap = Swap {
            saved: Vec::new(),
            _backup: backup,
        };
        for (i, (from, to)) in pkg.files.iter().enumerate() {
            let saved = if to.exists() {
                let b = swap._backup.path().join(i.to_string());
                fs::copy(to, &b)?;
                Some(b)
            } else {
                None
            };
            swap.saved.push((to.clone(), saved));
            replace_by_rename(from, to)?;
        }
        Ok(swap)
    }

    fn restore(&mut self) -> Result<()> {
        for (to, saved) in self.saved.drain(..) {
            match saved {
                Some(b) => replace_by_rename(&b, &to)?,
                None => fs::remove_file(&to)?,
            }
        }
        Ok(())
    }
}

impl Drop for Swap {
    fn drop(&mut self) {
        if let Err(e) = self.restore() {
            eprintln!("could not put the current pg_tviews files back: {e:#}");
        }
    }
}

async fn one(c: &Client, sql: &str) -> Result<String> {
    let row = c
        .query_one(sql, &[])
        .await
        .with_context(|| sql.to_string())?;
    Ok(row.get(0))
}

/// Writes at every level of the demo's cascade.
async fn write(c: &Client, round: i64) -> Result<()> {
    c.batch_execute(&format!(
        "INSERT INTO tb_review VALUES ({}, {round}, 4, 'round {round}');
         UPDATE tb_product SET name = 'Product {round}*' WHERE pk_product = {round};
         UPDATE tb_category SET name = 'Category {round}*' WHERE pk_category = {};
         DELETE FROM tb_inventory WHERE fk_product = {};",
        800_000 + round,
        1 + round % 20,
        10 + round
    ))
    .await?;
    assert_exact(c).await
}

/// Every member object of the extension with what defines it.
async fn extension_objects(c: &Client) -> Result<Vec<String>> {
    let rows = c
        .query(
            "SELECT pg_describe_object(d.classid, d.objid, 0) || ' | ' || coalesce(
                 CASE d.classid
                   WHEN 'pg_proc'::regclass THEN (SELECT md5(pg_get_functiondef(p.oid)) || ' ' || coalesce(p.proacl::text, '') FROM pg_proc p WHERE p.oid = d.objid)
                   WHEN 'pg_class'::regclass THEN (SELECT c.relkind::text || ' ' || coalesce(md5(pg_get_viewdef(c.oid)), '') || ' ' || coalesce(c.relacl::text, '')
                                                       || ' ' || (SELECT string_agg(a.attname || ':' || format_type(a.atttypid, a.atttypmod), ',' ORDER BY a.attnum)
                                                                  FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped)
                                                   FROM pg_class c WHERE c.oid = d.objid)
                   WHEN 'pg_event_trigger'::regclass THEN (SELECT e.evtevent || ' ' || e.evtfoid::regproc::text || ' ' || coalesce(e.evttags::text, '') FROM pg_event_trigger e WHERE e.oid = d.objid)
                 END, '') || ' | ' || coalesce(obj_description(d.objid, d.classid::regclass::name), '')
             FROM pg_depend d
             WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
               AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_tviews')
             UNION ALL
             SELECT 'extconfig | ' || coalesce(extconfig::regclass[]::text, 'none') FROM pg_extension WHERE extname = 'pg_tviews'
             ORDER BY 1",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_from_the_previous_release() {
    if let Err(e) = upgrade().await {
        panic!("{e:?}");
    }
}

async fn upgrade() -> Result<()> {
    let (old, commit) = previous_release()?;
    let current = build_current_files()?;
    let pkg = build_release(&old, &commit)?;

    // 1. The previous release, with TVIEWs and data.
    let mut swap = Swap::install(&pkg)?;
    let mut cluster = Cluster::start(ClusterOptions {
        preload: true,
        name: "upgrade".into(),
        ..ClusterOptions::default()
    })?;
    let demo = repo_root().join("demo/schema.sql");
    cluster.create_database_with_extension("app")?;
    cluster.psql_file("app", &demo)?;
    {
        let c = cluster.connect("app").await?;
        ensure!(
            one(
                &c,
                "SELECT extversion FROM pg_extension WHERE extname = 'pg_tviews'"
            )
            .await?
                == old,
            "the previous release is not what is installed"
        );
        write(&c, 1).await?;
    }

    // 2. The new files, then a restart (the library is preloaded): the
    //    new library runs the old SQL objects until the UPDATE.
    cluster.stop(StopMode::Fast)?;
    swap.restore()?;
    ensure!(
        current.iter().all(|p| p.exists()),
        "the current build's files are not installed"
    );
    cluster.start_again()?;
    let c = cluster.connect("app").await?;
    ensure!(
        one(&c, "SELECT pg_tviews_version()").await? == CURRENT,
        "old library still loaded"
    );
    ensure!(
        one(
            &c,
            "SELECT severity FROM pg_tviews_health_check() WHERE check_name = 'version'"
        )
        .await?
            == "warning",
        "the health check does not ask for the UPDATE"
    );
    assert_exact(&c)
        .await
        .context("after the restart, before the UPDATE")?;
    write(&c, 2).await.context("writes before the UPDATE")?;

    // 3. ALTER EXTENSION ... UPDATE.
    c.batch_execute("ALTER EXTENSION pg_tviews UPDATE").await?;
    ensure!(
        one(
            &c,
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_tviews'"
        )
        .await?
            == CURRENT,
        "not updated"
    );
    assert_exact(&c).await.context("after the UPDATE")?;
    write(&c, 3).await.context("writes after the UPDATE")?;
    c.batch_execute(
        "CREATE TABLE tv_cheap AS SELECT pk_product AS pk_cheap, name FROM tb_product WHERE price < 10",
    )
    .await?;
    write(&c, 4).await?;

    // 4. The upgraded extension is a fresh install's, object for object.
    cluster.create_database_with_extension("fresh")?;
    let fresh = cluster.connect("fresh").await?;
    let (upgraded, installed) = (
        extension_objects(&c).await?,
        extension_objects(&fresh).await?,
    );
    if upgraded != installed {
        let only = |a: &[String], b: &[String]| {
            a.iter()
                .filter(|x| !b.contains(x))
                .cloned()
                .collect::<Vec<_>>()
                .join("\n  ")
        };
        bail!(
            "the upgrade script does not reproduce a fresh install.\nonly after the upgrade:\n  {}\nonly in a fresh install:\n  {}",
            only(&upgraded, &installed),
            only(&installed, &upgraded)
        );
    }

    // 5. A dump of the upgraded database restores, TVIEWs maintained.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("app.sql");
    run(Command::new(pg_bin("pg_dump"))
        .arg("-d")
        .arg(cluster.conninfo("app"))
        .arg("-f")
        .arg(&file))?;
    cluster.create_database("restored")?;
    cluster.psql_file("restored", &file)?;
    let r = cluster.connect("restored").await?;
    ensure!(
        one(&r, "SELECT count(*)::text FROM tviews.tview").await? == "4",
        "TVIEWs missing after restoring the upgraded database"
    );
    assert_exact(&r).await?;
    write(&r, 5).await?;
    drop((c, fresh, r));
    cluster.stop(StopMode::Fast)?;
    Ok(())
}

/// The current build's installed files (scripts/test.sh installs them
/// before the tests run).
fn build_current_files() -> Result<Vec<PathBuf>> {
    let extdir = pg_config_value("--sharedir")?.join("extension");
    let files = vec![
        pg_config_value("--pkglibdir")?.join("pg_tviews.so"),
        extdir.join(format!("pg_tviews--{CURRENT}.sql")),
        extdir.join("pg_tviews.control"),
    ];
    for f in &files {
        ensure!(
            f.exists(),
            "{} is missing: install this build first (cargo pgrx install -p pg_tviews --pg-config /usr/bin/pg_config)",
            f.display()
        );
    }
    Ok(files)
}
