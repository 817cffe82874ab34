-- pg_tviews 0.1.0 -> 0.2.0 (docs/OPERATIONS.md, "Upgrades").
\echo Use "ALTER EXTENSION pg_tviews UPDATE" to load this file. \quit

-- TVIEWs survive pg_dump as their own objects: the catalog is no longer
-- dumped (a data-only restore would collide with its rows); the guard
-- trigger carries what a restore needs (ext/src/adopt.rs). Dropping the
-- table from the extension and adding it back removes it from extconfig.
ALTER EXTENSION pg_tviews DROP TABLE tviews.tview;
ALTER EXTENSION pg_tviews ADD TABLE tviews.tview;
COMMENT ON TABLE tviews.tview IS 'pg_tviews catalog: one row per TVIEW';

-- DDL on TVIEWs, their backing views and our triggers; restores.
CREATE FUNCTION tviews.on_ddl_watch() RETURNS event_trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'tviews_ddl_watch';
CREATE FUNCTION tviews.reconcile_triggers() RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'tviews_reconcile_triggers';
REVOKE ALL ON FUNCTION tviews.reconcile_triggers() FROM PUBLIC;
COMMENT ON FUNCTION tviews.reconcile_triggers() IS 'pg_tviews: makes the capture and guard triggers match the catalog (upgrades, repairs)';
CREATE EVENT TRIGGER tviews_ddl_watch ON ddl_command_end
    WHEN TAG IN ('CREATE TRIGGER', 'ALTER TRIGGER', 'ALTER TABLE', 'ALTER VIEW', 'CREATE VIEW')
    EXECUTE FUNCTION tviews.on_ddl_watch();

-- Health check: disabled capture triggers, sources a subscription writes.
CREATE OR REPLACE FUNCTION pg_tviews_health_check(prepared_warning pg_catalog.interval DEFAULT '5 minutes')
RETURNS TABLE (check_name pg_catalog.text, severity pg_catalog.text, detail pg_catalog.text, hint pg_catalog.text)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT 'statistics',
       CASE WHEN c.preloaded THEN 'ok' ELSE 'info' END,
       CASE WHEN c.preloaded THEN 'statistics are collected in shared memory'
            ELSE 'pg_tviews is not in shared_preload_libraries: statistics are off (everything else works)' END,
       CASE WHEN c.preloaded THEN NULL ELSE 'Add pg_tviews to shared_preload_libraries and restart the server.' END
FROM @extschema@.pg_tviews_cache_raw() c
UNION ALL
SELECT 'version',
       CASE WHEN e.extversion = @extschema@.pg_tviews_version() THEN 'ok' ELSE 'warning' END,
       format('SQL objects %s, library %s', e.extversion, @extschema@.pg_tviews_version()),
       CASE WHEN e.extversion = @extschema@.pg_tviews_version() THEN NULL
            ELSE 'Run ALTER EXTENSION pg_tviews UPDATE (and restart if the library is preloaded).' END
FROM pg_extension e WHERE e.extname = 'pg_tviews'
UNION ALL
SELECT 'capture triggers',
       CASE WHEN count(*) = 0 THEN 'ok' ELSE 'error' END,
       CASE WHEN count(*) = 0 THEN 'every source has its four capture triggers, enabled'
            ELSE 'sources whose capture triggers are missing or disabled: ' || string_agg(DISTINCT tviews.display_name(m.source), ', ') END,
       CASE WHEN count(*) = 0 THEN NULL
            ELSE 'Their writes are not being captured: ALTER TABLE ... ENABLE TRIGGER the disabled ones (a superuser can recreate missing ones with SELECT tviews.reconcile_triggers()), then rebuild the TVIEWs reading them with pg_tviews_refresh.' END
FROM (SELECT DISTINCT s.source FROM @extschema@.pg_tviews_sources() s
      WHERE (SELECT count(*) FROM pg_trigger t
             WHERE t.tgrelid = s.source AND t.tgfoid = 'tviews.capture()'::regprocedure AND t.tgenabled <> 'D') < 4) m
UNION ALL
SELECT 'orphaned capture triggers',
       CASE WHEN count(*) = 0 THEN 'ok' ELSE 'warning' END,
       CASE WHEN count(*) = 0 THEN 'no capture trigger on a table no TVIEW reads'
            ELSE 'capture triggers on tables no TVIEW reads: ' || string_agg(DISTINCT tviews.display_name(t.tgrelid), ', ') END,
       CASE WHEN count(*) = 0 THEN NULL ELSE 'Drop them with DROP TRIGGER (they only cost time).' END
FROM pg_trigger t
WHERE t.tgfoid = 'tviews.capture()'::regprocedure
  AND t.tgrelid NOT IN (SELECT source FROM @extschema@.pg_tviews_sources())
UNION ALL
SELECT 'subscribed sources',
       CASE WHEN count(*) = 0 THEN 'ok' ELSE 'warning' END,
       CASE WHEN count(*) = 0 THEN 'no source is written by a logical replication subscription'
            ELSE 'sources a subscription writes (replicated row changes are not captured): ' || string_agg(DISTINCT tviews.display_name(r.srrelid), ', ') END,
       CASE WHEN count(*) = 0 THEN NULL
            ELSE 'TVIEWs over them go stale as changes arrive: publish the TVIEWs themselves instead, or rebuild them with pg_tviews_refresh (docs/OPERATIONS.md, Replicas).' END
FROM pg_subscription_rel r
WHERE r.srrelid IN (SELECT source FROM @extschema@.pg_tviews_sources())
UNION ALL
SELECT 'catalog',
       CASE WHEN count(*) = 0 THEN 'ok' ELSE 'error' END,
       CASE WHEN count(*) = 0 THEN 'every catalog row has its table and backing view'
            ELSE 'catalog rows without their table or view: ' || string_agg(v.relid::text, ', ') END,
       CASE WHEN count(*) = 0 THEN NULL ELSE 'DELETE the rows from tviews.tview, then recreate the TVIEWs.' END
FROM tviews.tview v
WHERE NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = v.relid AND c.relkind IN ('r', 'p'))
   OR NOT EXISTS (SELECT FROM pg_class c WHERE c.oid = v.defview AND c.relkind = 'v')
UNION ALL
SELECT 'prepared transactions',
       CASE WHEN count(*) = 0 THEN 'ok' ELSE 'warning' END,
       CASE WHEN count(*) = 0 THEN format('no prepared transaction has held TVIEW work for more than %s', prepared_warning)
            ELSE format('%s prepared transaction(s) holding TVIEW work for more than %s: %s', count(*), prepared_warning,
                        string_agg(format('%s (%s)', p.gid, date_trunc('second', p.age)), ', ')) END,
       CASE WHEN count(*) = 0 THEN NULL
            ELSE 'Finish them with COMMIT PREPARED or ROLLBACK PREPARED: they block writers of the same values.' END
FROM @extschema@.pg_tviews_prepared p WHERE p.age > prepared_warning
UNION ALL
SELECT 'refresh errors',
       CASE WHEN coalesce(sum(s.errors), 0) = 0 THEN 'ok' ELSE 'warning' END,
       CASE WHEN coalesce(sum(s.errors), 0) = 0 THEN 'no refresh failed since statistics were reset'
            ELSE 'refreshes failed (their transactions rolled back): ' || string_agg(format('%s: %s', s.tview, s.errors), ', ') FILTER (WHERE s.errors > 0) END,
       CASE WHEN coalesce(sum(s.errors), 0) = 0 THEN NULL
            ELSE 'The failing writers got the error; see the server log for the SQLSTATE (duplicate or NULL keys, serialization failures).' END
FROM @extschema@.pg_tviews_stats s
UNION ALL
SELECT 'statistics slots',
       CASE WHEN coalesce(c.slots_full, 0) = 0 THEN 'ok' ELSE 'warning' END,
       CASE WHEN coalesce(c.slots_full, 0) = 0 THEN 'every TVIEW and source has a statistics slot'
            ELSE format('%s updates found no free statistics slot', c.slots_full) END,
       CASE WHEN coalesce(c.slots_full, 0) = 0 THEN NULL ELSE 'Reset statistics with pg_tviews_stats_reset() after dropping TVIEWs.' END
FROM @extschema@.pg_tviews_cache_raw() c
$$;
COMMENT ON FUNCTION pg_tviews_health_check(pg_catalog.interval) IS 'pg_tviews: one row per health check, with severity, detail and hint';

-- Every TVIEW's guard trigger gets its arguments (view, key, settings).
SELECT tviews.reconcile_triggers();
