-- pg_tviews: objects created after the Rust functions (pgrx `finalize`).
CREATE FUNCTION tviews.capture() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'tviews_capture';
COMMENT ON FUNCTION tviews.capture() IS 'pg_tviews: records the TVIEW keys a statement affects';

CREATE FUNCTION tviews.guard() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'tviews_guard';
COMMENT ON FUNCTION tviews.guard() IS 'pg_tviews: refuses direct writes to a TVIEW (only its refresh writes it)';

CREATE FUNCTION tviews.on_ddl_command_start() RETURNS event_trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'tviews_ddl_command_start';
CREATE FUNCTION tviews.on_ddl_command_end() RETURNS event_trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'tviews_ddl_command_end';
CREATE FUNCTION tviews.on_sql_drop() RETURNS event_trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'tviews_sql_drop';
CREATE FUNCTION tviews.on_ddl_watch() RETURNS event_trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'tviews_ddl_watch';
CREATE FUNCTION tviews.reconcile_triggers() RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'tviews_reconcile_triggers';
REVOKE ALL ON FUNCTION tviews.reconcile_triggers() FROM PUBLIC;
COMMENT ON FUNCTION tviews.reconcile_triggers() IS 'pg_tviews: makes the capture and guard triggers match the catalog (upgrades, repairs)';

CREATE EVENT TRIGGER tviews_ddl_command_start ON ddl_command_start
    WHEN TAG IN ('CREATE TABLE AS', 'SELECT INTO')
    EXECUTE FUNCTION tviews.on_ddl_command_start();
CREATE EVENT TRIGGER tviews_ddl_command_end ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE AS', 'SELECT INTO')
    EXECUTE FUNCTION tviews.on_ddl_command_end();
CREATE EVENT TRIGGER tviews_sql_drop ON sql_drop
    EXECUTE FUNCTION tviews.on_sql_drop();
-- DDL on a TVIEW, its backing view or our triggers (ext/src/watch.rs); a
-- restore brings a TVIEW back when its guard trigger is created
-- (ext/src/adopt.rs).
CREATE EVENT TRIGGER tviews_ddl_watch ON ddl_command_end
    WHEN TAG IN ('CREATE TRIGGER', 'ALTER TRIGGER', 'ALTER TABLE', 'ALTER VIEW', 'CREATE VIEW')
    EXECUTE FUNCTION tviews.on_ddl_watch();

-- How relations are named in every view of ours, whatever the caller's
-- search_path: the name alone in public, schema.name elsewhere.
CREATE FUNCTION tviews.display_name(rel pg_catalog.oid) RETURNS pg_catalog.text
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT CASE WHEN n.nspname = 'public' THEN c.relname::text ELSE n.nspname || '.' || c.relname END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = rel
$$;
GRANT EXECUTE ON FUNCTION tviews.display_name(pg_catalog.oid) TO PUBLIC;

-- Prepared transactions of this database that hold TVIEW work: their
-- flush ran at PREPARE, so they hold value locks (pg_locks: advisory,
-- objsubid 3 or 4) until COMMIT PREPARED / ROLLBACK PREPARED, and the
-- TVIEWs they wrote are locked ROW EXCLUSIVE. Lock manager state survives
-- a restart with the prepared transaction, and so does this view.
CREATE VIEW pg_tviews_prepared AS
SELECT p.gid,
       p.owner,
       p.database,
       p.prepared AS prepared_at,
       pg_catalog.now() - p.prepared AS age,
       p.transaction AS xid,
       ARRAY(SELECT tviews.display_name(t.relid)
             FROM pg_catalog.pg_locks l JOIN tviews.tview t ON t.relid::pg_catalog.oid = l.relation
             WHERE l.virtualtransaction = x.virtualtransaction AND l.pid IS NULL
               AND l.locktype = 'relation' AND l.mode = 'RowExclusiveLock'
             ORDER BY 1) AS tviews,
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_locks l
        WHERE l.virtualtransaction = x.virtualtransaction AND l.pid IS NULL
          AND l.locktype = 'advisory' AND l.objsubid = 3) AS value_locks,
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_locks l
        WHERE l.virtualtransaction = x.virtualtransaction AND l.pid IS NULL
          AND l.locktype = 'advisory' AND l.objsubid = 4
          AND l.mode IN ('ShareLock', 'ExclusiveLock')) AS relation_locks
FROM pg_catalog.pg_prepared_xacts p
JOIN pg_catalog.pg_locks x ON x.locktype = 'transactionid' AND x.transactionid = p.transaction AND x.pid IS NULL
WHERE p.database = pg_catalog.current_database()
  AND EXISTS (SELECT FROM pg_catalog.pg_locks l
              WHERE l.virtualtransaction = x.virtualtransaction AND l.pid IS NULL
                AND l.locktype = 'advisory' AND l.objsubid IN (3, 4));
COMMENT ON VIEW pg_tviews_prepared IS 'pg_tviews: prepared transactions holding TVIEW work';

-- A function runs inside a transaction, where PostgreSQL refuses COMMIT
-- PREPARED; and none is needed, since a prepared transaction already
-- carries its TVIEW changes. This name of the design card fails loudly.
CREATE FUNCTION pg_tviews_commit_prepared(gid text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'pg_tviews_commit_prepared() cannot commit a prepared transaction'
        USING ERRCODE = '0A000',
              DETAIL = 'COMMIT PREPARED cannot run inside a function or a transaction block; and a prepared transaction already holds its TVIEW changes (they were refreshed at PREPARE TRANSACTION).',
              HINT = pg_catalog.format('Run COMMIT PREPARED %L (or ROLLBACK PREPARED %L) as a statement of its own, from any session.', gid, gid);
END $$;

-- pg_tviews monitoring API (docs/MONITORING.md). Everything the CLI and
-- the console show comes from these views and functions.

CREATE VIEW pg_tviews_stats AS
SELECT tviews.display_name(t.relid) AS tview,
       GREATEST(c.reltuples, 0)::pg_catalog.int8 AS rows_estimate,
       pg_catalog.pg_total_relation_size(t.relid) AS size_bytes,
       COALESCE(s.refreshes, 0) AS refreshes,
       COALESCE(s.keys, 0) AS keys,
       COALESCE(s.inserted, 0) AS inserted,
       COALESCE(s.updated, 0) AS updated,
       COALESCE(s.deleted, 0) AS deleted,
       COALESCE(s.skipped, 0) AS skipped,
       COALESCE(s.cascaded_keys, 0) AS cascaded_keys,
       COALESCE(s.full_rebuilds, 0) AS full_rebuilds,
       COALESCE(s.errors, 0) AS errors,
       COALESCE(s.statements, 0) AS statements,
       COALESCE(s.time_ms, 0) AS time_ms,
       COALESCE(s.lock_ms, 0) AS lock_ms,
       COALESCE(s.derive_ms, 0) AS derive_ms,
       COALESCE(s.apply_ms, 0) AS apply_ms,
       COALESCE(s.lock_waits, 0) AS lock_waits,
       COALESCE(s.lock_wait_ms, 0) AS lock_wait_ms,
       s.last_refresh,
       COALESCE(s.stats_since, g.stats_since) AS stats_since
FROM tviews.tview t
JOIN pg_catalog.pg_class c ON c.oid = t.relid
CROSS JOIN pg_tviews_cache_raw() g
LEFT JOIN pg_tviews_stats_raw() s ON s.relid = t.relid::pg_catalog.oid;
COMMENT ON VIEW pg_tviews_stats IS 'pg_tviews: cumulative refresh counters per TVIEW (shared memory; zero without shared_preload_libraries)';

CREATE VIEW pg_tviews_source_stats AS
SELECT tviews.display_name(s.relid) AS source,
       s.captures, s.rows_captured, s.capture_ms, s.refresh_ms, s.stats_since
FROM pg_tviews_source_stats_raw() s
JOIN pg_catalog.pg_class c ON c.oid = s.relid;
COMMENT ON VIEW pg_tviews_source_stats IS 'pg_tviews: what the writers of each source table spent capturing and refreshing';

CREATE VIEW pg_tviews_queue_realtime AS
SELECT q.pid,
       d.datname AS database,
       CASE WHEN d.datname = pg_catalog.current_database() THEN tviews.display_name(q.relid) END AS tview,
       q.keys AS keys_pending,
       q.phase,
       q.since,
       pg_catalog.clock_timestamp() - q.since AS age,
       q.waiting_for,
       a.usename,
       a.xact_start
FROM pg_tviews_queue_raw() q
JOIN pg_catalog.pg_stat_activity a ON a.pid = q.pid
LEFT JOIN pg_catalog.pg_database d ON d.oid = q.datid;
COMMENT ON VIEW pg_tviews_queue_realtime IS 'pg_tviews: every backend''s pending TVIEW work, live';

CREATE VIEW pg_tviews_cache_stats AS
SELECT preloaded, hits, misses, invalidations,
       CASE WHEN hits + misses > 0 THEN pg_catalog.round(hits::pg_catalog.numeric / (hits + misses), 4) END AS hit_ratio,
       slots_full,
       stats_since
FROM pg_tviews_cache_raw();
COMMENT ON VIEW pg_tviews_cache_stats IS 'pg_tviews: plan-cache (registry) hits, misses and invalidations since stats_since';

CREATE VIEW pg_tviews_performance_summary AS
SELECT pg_catalog.date_trunc('hour', minute) AS hour,
       pg_catalog.sum(refreshes)::pg_catalog.int8 AS refreshes,
       pg_catalog.sum(keys)::pg_catalog.int8 AS keys,
       pg_catalog.sum(rows_written)::pg_catalog.int8 AS rows_written,
       pg_catalog.sum(rows_skipped)::pg_catalog.int8 AS rows_skipped,
       pg_catalog.sum(errors)::pg_catalog.int8 AS errors,
       pg_catalog.round(pg_catalog.sum(time_ms)::pg_catalog.numeric, 3) AS time_ms,
       pg_catalog.round((pg_catalog.sum(time_ms) / NULLIF(pg_catalog.sum(refreshes), 0))::pg_catalog.numeric, 3) AS mean_ms
FROM pg_tviews_ring_raw()
GROUP BY 1
ORDER BY 1;
COMMENT ON VIEW pg_tviews_performance_summary IS 'pg_tviews: hourly totals of the last 24 hours, all databases (from the per-minute ring in shared memory)';

CREATE VIEW pg_tviews_lock_waits AS
SELECT w.pid AS waiting_pid,
       tviews.display_name(w.classid) AS relation,
       q.waiting_for,
       w.mode AS wanted_mode,
       pg_catalog.clock_timestamp() - q.since AS waiting,
       h.pid AS holder_pid,
       px.gid AS holder_gid,
       h.mode AS held_mode
FROM pg_catalog.pg_locks w
JOIN pg_catalog.pg_locks h
  ON h.locktype = 'advisory' AND h.granted AND h.database = w.database
 AND h.classid = w.classid AND h.objid = w.objid AND h.objsubid = w.objsubid
LEFT JOIN pg_tviews_queue_raw() q ON q.pid = w.pid
LEFT JOIN pg_catalog.pg_locks hx
  ON h.pid IS NULL AND hx.pid IS NULL AND hx.locktype = 'transactionid' AND hx.virtualtransaction = h.virtualtransaction
LEFT JOIN pg_catalog.pg_prepared_xacts px ON px.transaction = hx.transactionid
WHERE w.locktype = 'advisory' AND w.objsubid IN (3, 4) AND NOT w.granted
  AND w.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database());
COMMENT ON VIEW pg_tviews_lock_waits IS 'pg_tviews: sessions waiting for a value lock, what they wait for, and who holds it (a pid, or a prepared transaction''s gid)';

CREATE FUNCTION pg_tviews_health_check(prepared_warning pg_catalog.interval DEFAULT '5 minutes')
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

-- One JSON document with everything the console shows (schema_version 1).
CREATE FUNCTION pg_tviews_snapshot() RETURNS pg_catalog.jsonb
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

REVOKE ALL ON FUNCTION pg_tviews_stats_reset() FROM PUBLIC;

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
