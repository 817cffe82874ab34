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

-- Health check: disabled (or replica-only) capture triggers, sources a
-- subscription writes; hints; no JIT.
CREATE OR REPLACE FUNCTION pg_tviews_health_check(prepared_warning pg_catalog.interval DEFAULT '5 minutes')
RETURNS TABLE (check_name pg_catalog.text, severity pg_catalog.text, detail pg_catalog.text, hint pg_catalog.text)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
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
             WHERE t.tgrelid = s.source AND t.tgfoid = 'tviews.capture()'::regprocedure AND t.tgenabled IN ('O', 'A')) < 4) m
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
            ELSE 'The failing writers got the error with its SQLSTATE (duplicate or NULL keys, serialization failures, errors of the definition); the server log has it with log_line_prefix including %e.' END
FROM @extschema@.pg_tviews_stats s
UNION ALL
SELECT 'statistics slots',
       CASE WHEN coalesce(c.slots_full, 0) = 0 THEN 'ok' ELSE 'warning' END,
       CASE WHEN coalesce(c.slots_full, 0) = 0 THEN 'every TVIEW and source has a statistics slot'
            ELSE format('%s updates found no free statistics slot', c.slots_full) END,
       CASE WHEN coalesce(c.slots_full, 0) = 0 THEN NULL ELSE 'Slots are taken per TVIEW and source and freed only by a server restart: restart after dropping many TVIEWs.' END
FROM @extschema@.pg_tviews_cache_raw() c
$$;
COMMENT ON FUNCTION pg_tviews_health_check(pg_catalog.interval) IS 'pg_tviews: one row per health check, with severity, detail and hint';

-- The snapshot: edges in a defined order, server start, lock counts; no JIT.
CREATE OR REPLACE FUNCTION pg_tviews_snapshot() RETURNS pg_catalog.jsonb
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
SET jit = off
AS $$
SELECT jsonb_build_object(
  'schema_version', 1,
  'server_time', extract(epoch FROM clock_timestamp()) * 1e6,
  'stats_since', coalesce(extract(epoch FROM c.stats_since) * 1e6, 0),
  'preloaded', c.preloaded,
  'server_started', extract(epoch FROM pg_catalog.pg_postmaster_start_time()) * 1e6,
  'database', current_database(),
  'tviews', coalesce((SELECT jsonb_agg(jsonb_build_object(
        'name', s.tview, 'rows', s.rows_estimate, 'size_bytes', s.size_bytes,
        'refreshes', s.refreshes, 'keys', s.keys,
        'rows_written', s.inserted + s.updated + s.deleted, 'rows_skipped', s.skipped,
        'inserted', s.inserted, 'updated', s.updated, 'deleted', s.deleted,
        'refresh_time_ms', s.time_ms, 'lock_ms', s.lock_ms, 'derive_ms', s.derive_ms, 'apply_ms', s.apply_ms,
        'cascades', s.cascaded_keys, 'full_rebuilds', s.full_rebuilds, 'errors', s.errors,
        'lock_waits', s.lock_waits, 'lock_wait_ms', s.lock_wait_ms,
        'depth', coalesce((SELECT max(depth) FROM @extschema@.pg_tviews_sources() x WHERE tviews.display_name(x.tview) = s.tview), 0),
        'last_refresh', extract(epoch FROM s.last_refresh) * 1e6) ORDER BY s.tview)
      FROM @extschema@.pg_tviews_stats s), '[]'),
  'edges', coalesce((SELECT jsonb_agg(jsonb_build_object('from', tviews.display_name(x.source), 'to', tviews.display_name(x.tview),
                                                         'full_rebuild', x.full_rebuild)
                                      ORDER BY tviews.display_name(x.source), tviews.display_name(x.tview))
      FROM @extschema@.pg_tviews_sources() x), '[]'),
  'queues', coalesce((SELECT jsonb_agg(jsonb_build_object('pid', q.pid, 'database', q.database, 'tview', coalesce(q.tview, ''),
        'keys_pending', q.keys_pending, 'phase', q.phase, 'since', extract(epoch FROM q.since) * 1e6,
        'waiting_for', q.waiting_for) ORDER BY q.pid)
      FROM @extschema@.pg_tviews_queue_realtime q), '[]'),
  'cache', jsonb_build_object('hits', coalesce(c.hits, 0), 'misses', coalesce(c.misses, 0),
                              'invalidations', coalesce(c.invalidations, 0)),
  'prepared', coalesce((SELECT jsonb_agg(jsonb_build_object('gid', p.gid, 'owner', p.owner,
        'prepared_at', extract(epoch FROM p.prepared_at) * 1e6, 'tviews', to_jsonb(p.tviews), 'keys', p.value_locks,
        'value_locks', p.value_locks, 'relation_locks', p.relation_locks) ORDER BY p.prepared_at)
      FROM @extschema@.pg_tviews_prepared p), '[]'),
  'lock_waits', coalesce((SELECT jsonb_agg(jsonb_build_object('waiting_pid', l.waiting_pid, 'relation', l.relation,
        'waiting_for', l.waiting_for, 'holder_pid', l.holder_pid, 'holder_gid', l.holder_gid,
        'waiting_ms', extract(epoch FROM l.waiting) * 1000))
      FROM @extschema@.pg_tviews_lock_waits l), '[]'),
  'sources', coalesce((SELECT jsonb_agg(jsonb_build_object('name', s.source, 'captures', s.captures,
        'rows_captured', s.rows_captured, 'capture_ms', s.capture_ms, 'refresh_ms', s.refresh_ms) ORDER BY s.source)
      FROM @extschema@.pg_tviews_source_stats s), '[]'))
FROM @extschema@.pg_tviews_cache_raw() c
$$;
COMMENT ON FUNCTION pg_tviews_snapshot() IS 'pg_tviews: everything the console shows, as one JSON document (schema_version 1)';

-- Who may watch: superusers and members of pg_monitor, as for PostgreSQL's
-- own statistics views. The raw functions show every database's queues,
-- with the values writers wait on.
REVOKE ALL ON FUNCTION pg_tviews_stats_raw(), pg_tviews_source_stats_raw(), pg_tviews_queue_raw(),
    pg_tviews_ring_raw(), pg_tviews_cache_raw(), pg_tviews_snapshot(),
    pg_tviews_health_check(pg_catalog.interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pg_tviews_stats_raw(), pg_tviews_source_stats_raw(), pg_tviews_queue_raw(),
    pg_tviews_ring_raw(), pg_tviews_cache_raw(), pg_tviews_snapshot(),
    pg_tviews_health_check(pg_catalog.interval) TO pg_monitor;
GRANT SELECT ON pg_tviews_stats, pg_tviews_source_stats, pg_tviews_queue_realtime, pg_tviews_cache_stats,
    pg_tviews_performance_summary, pg_tviews_lock_waits, pg_tviews_prepared TO pg_monitor;

-- The raw functions return a row per TVIEW, source or backend: tens, not
-- the default thousand (which made the planner JIT-compile the views).
ALTER FUNCTION pg_tviews_stats_raw() ROWS 20;
ALTER FUNCTION pg_tviews_source_stats_raw() ROWS 20;
ALTER FUNCTION pg_tviews_queue_raw() ROWS 10;
ALTER FUNCTION pg_tviews_ring_raw() ROWS 1440;
ALTER FUNCTION pg_tviews_cache_raw() ROWS 1;
ALTER FUNCTION pg_tviews_sources() ROWS 50;

-- Every TVIEW's guard trigger gets its arguments (view, key, settings).
SELECT tviews.reconcile_triggers();
