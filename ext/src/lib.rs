//! pg_tviews: transactional, incrementally maintained materialized views.
//!
//! This crate is the glue between PostgreSQL and `tviews-core`: it reads
//! definitions from the server, hands them to `core`, and runs the plans
//! `core` returns over SPI. The refresh path, by module:
//! [`ddl`] (CREATE/DROP) → [`capture`] (statement triggers) → [`queue`]
//! (pending keys) → [`flush`] (derive, apply, cascade) ← [`xact`]
//! (pre-commit). [`registry`] caches what each backend knows.

use pgrx::prelude::*;

mod adopt;
mod api;
mod capture;
mod ddl;
mod error;
mod flush;
mod guard;
mod introspect;
mod locks;
mod monitor;
mod queue;
mod registry;
mod security;
mod settings;
mod shmem;
mod spi;
mod stats;
mod watch;
mod xact;

::pgrx::pg_module_magic!(name, version);

/// Whether `_PG_init` ran from `shared_preload_libraries` (shared memory
/// statistics are only available then).
static mut PRELOADED: bool = false;

pub fn preloaded() -> bool {
    // SAFETY: written once in _PG_init, before any other code of ours runs.
    unsafe { PRELOADED }
}

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // SAFETY: _PG_init runs once per process, single-threaded.
    unsafe {
        PRELOADED = pg_sys::process_shared_preload_libraries_in_progress;
    }
    if crate::preloaded() {
        shmem::init();
    }
    settings::register();
    xact::register_callbacks();
    registry::register_invalidation();
}

// The extension's own SQL objects: schema, catalog, triggers' functions,
// event triggers. Functions written with #[pg_extern] are added by pgrx.
pgrx::extension_sql!(
    r#"
CREATE SCHEMA tviews;
COMMENT ON SCHEMA tviews IS 'pg_tviews internals: the catalog of TVIEWs and their backing views';
GRANT USAGE ON SCHEMA tviews TO PUBLIC;

-- One row per TVIEW. Not dumped: pg_dump writes a TVIEW as its table,
-- backing view and triggers, and the guard trigger's arguments bring this
-- row back at restore (ext/src/adopt.rs).
CREATE TABLE tviews.tview (
    relid       regclass PRIMARY KEY,
    defview     regclass NOT NULL UNIQUE,
    key_column  name NOT NULL,
    -- Settings every refresh of this TVIEW runs under (name, value pairs),
    -- as they were when it was created: a row never depends on who wrote.
    settings    text[] NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE tviews.tview IS 'pg_tviews catalog: one row per TVIEW';
GRANT SELECT ON tviews.tview TO PUBLIC;

"#,
    name = "bootstrap",
    bootstrap
);

// Trigger and event-trigger functions, event triggers, the prepared
// transactions view, and the monitoring API: after every Rust function.
pgrx::extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn version_matches_core() {
        let v = Spi::get_one::<String>("SELECT pg_tviews_version()").unwrap();
        assert_eq!(v.as_deref(), Some(tviews_core::VERSION));
    }

    #[pg_test]
    fn catalog_exists_and_is_empty() {
        let n = Spi::get_one::<i64>("SELECT count(*) FROM tviews.tview").unwrap();
        assert_eq!(n, Some(0));
    }

    #[pg_test]
    fn create_and_maintain_a_tview() {
        Spi::run(
            "CREATE TABLE tb_user (pk_user bigint PRIMARY KEY, name text);
             CREATE TABLE tb_post (pk_post bigint PRIMARY KEY, fk_user bigint REFERENCES tb_user, title text);
             INSERT INTO tb_user VALUES (1, 'alice'), (2, 'bob');
             INSERT INTO tb_post VALUES (1, 1, 'a'), (2, 2, 'b');
             CREATE TABLE tv_post AS SELECT p.pk_post, p.title, u.name FROM tb_post p JOIN tb_user u ON u.pk_user = p.fk_user;",
        )
        .unwrap();
        let n = Spi::get_one::<i64>("SELECT count(*) FROM tviews.tview").unwrap();
        assert_eq!(n, Some(1));
        // Inside one pg_test transaction nothing commits, so refresh explicitly.
        Spi::run("UPDATE tb_user SET name = 'ALICE' WHERE pk_user = 1").unwrap();
        Spi::run("SELECT pg_tviews_flush()").unwrap();
        let name = Spi::get_one::<String>("SELECT name FROM tv_post WHERE pk_post = 1").unwrap();
        assert_eq!(name.as_deref(), Some("ALICE"));
    }
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
