-- 25 · replication: how far each standby lags and which expected standby is
-- missing, as views that /metrics (gpuwatch_db_replication_lag_*), the
-- alerter (db.replication_lag_seconds, db.replication_lag_bytes,
-- db.standbys_missing) and operators read alike.
--
-- On the primary, one row per standby of pg_stat_replication: replay_lag
-- (which keeps growing while a standby's replay is stuck) and the WAL bytes
-- not yet replayed. On a standby, one row for itself: the age of the last
-- replayed transaction while received WAL waits to be replayed (0 when all
-- of it is replayed, so an idle primary does not read as lag).
CREATE OR REPLACE VIEW gpuwatch_replication AS
SELECT application_name::text AS standby,
       state::text AS state,
       COALESCE(extract(epoch FROM replay_lag), 0)::float8 AS lag_seconds,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8 AS lag_bytes
FROM pg_stat_replication
WHERE NOT pg_is_in_recovery()
UNION ALL
SELECT COALESCE(NULLIF(current_setting('cluster_name'), ''), 'self'),
       CASE WHEN pg_is_wal_replay_paused() THEN 'paused' ELSE 'replaying' END,
       CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
            ELSE COALESCE(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END::float8,
       COALESCE(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)::float8
WHERE pg_is_in_recovery();

COMMENT ON VIEW gpuwatch_replication IS 'Replication lag per standby (on the primary) or of this standby (on a standby).';

-- A physical replication slot that no walsender streams from is a standby
-- that is expected and not there. HA managers (pg_auto_failover, Patroni)
-- keep a slot per member, so a dead node shows up here; a single server has
-- no slots and never reads as missing a standby.
CREATE OR REPLACE VIEW gpuwatch_replication_missing AS
SELECT count(*) FILTER (WHERE NOT active AND NOT pg_is_in_recovery()) AS missing
FROM pg_replication_slots
WHERE slot_type = 'physical';

COMMENT ON VIEW gpuwatch_replication_missing IS 'Physical replication slots without a streaming standby: expected standbys that are missing.';

INSERT INTO alert_rules (name, description, metric, reduction, window_seconds, comparison, threshold,
                         for_seconds, severity, annotations, created_by)
VALUES
    ('DatabaseReplicationLag', 'A standby replays the primary''s WAL more than 30 s late (gpuwatch_replication).',
     'db.replication_lag_seconds', 'last', 60, '>', 30, 60, 'warning',
     '{"summary": "standby {{ $labels.standby }} is {{ $value }} s behind the primary", "runbook": "check the standby''s disk and network, and whether replay is paused (SELECT pg_is_wal_replay_paused())"}', 'migration'),
    ('DatabaseStandbyMissing', 'An expected standby (a physical replication slot) is not streaming from the primary.',
     'db.standbys_missing', 'last', 60, '>', 0, 60, 'critical',
     '{"summary": "{{ $value }} standby(s) of the database are not streaming", "runbook": "start the node or let the HA manager rejoin it (pg_autoctl show state); drop the slot of a node removed for good"}', 'migration');
