-- 29 · tiers see every write to raw rows, whichever client made it.
--
-- Statement-level AFTER triggers with transition tables on the three raw
-- tables record the [min, max] of collected_at that each INSERT, COPY,
-- UPDATE or DELETE touched, for every tier whose watermark is past it, in
-- the same transaction as the rows (TimescaleDB's invalidation log is the
-- model: one range per statement, whole buckets recomputed). Both backends
-- accept transition tables here: plain PostgreSQL on the partitioned
-- parent, TimescaleDB 2.19 on the hypertable (tests/suite/tiers.rs checks
-- both). The batch writer no longer records invalidations itself.
--
-- The second trigger argument is `gpuwatch_store::tier_lock_key(table)`
-- (tests/suite/tiers.rs checks that they agree).

CREATE OR REPLACE FUNCTION gpuwatch_tier_invalidate() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    lo timestamptz;
    hi timestamptz;
BEGIN
    -- One range per statement, whatever the client (the batch writer's COPY,
    -- psql \copy, INSERT, UPDATE, DELETE), recorded in the statement's own
    -- transaction: if the rows commit, so does their invalidation.
    IF TG_OP = 'INSERT' THEN
        SELECT min(collected_at), max(collected_at) INTO lo, hi FROM gpuwatch_new_rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT min(collected_at), max(collected_at) INTO lo, hi FROM gpuwatch_old_rows;
    ELSE
        -- An UPDATE may move a row from one bucket to another: both change.
        SELECT min(t), max(t) INTO lo, hi FROM (
            SELECT collected_at AS t FROM gpuwatch_old_rows
            UNION ALL
            SELECT collected_at FROM gpuwatch_new_rows) b;
    END IF;
    IF lo IS NULL THEN
        RETURN NULL;
    END IF;
    -- The aggregator holds this lock exclusively while it reads raw rows and
    -- moves a watermark; held shared until this transaction ends, it makes a
    -- row either visible to that read or checked against the moved watermark.
    PERFORM pg_advisory_xact_lock_shared(TG_ARGV[1]::bigint);
    INSERT INTO gpuwatch_tier_invalidations (source, tier, lo, hi)
    SELECT s.source, s.tier, lo, hi FROM gpuwatch_tier_state s
     WHERE s.source = TG_ARGV[0] AND s.watermark > lo;
    RETURN NULL;
END;
$$;

COMMENT ON FUNCTION gpuwatch_tier_invalidate() IS
    'Statement trigger of the raw metric tables: queues the time range a statement changed behind a tier watermark for recomputation. Arguments: source table, its tier lock key.';

CREATE TRIGGER gpuwatch_tier_invalidate_insert AFTER INSERT ON gpu_metrics
    REFERENCING NEW TABLE AS gpuwatch_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gpuwatch_tier_invalidate('gpu_metrics', '8410176785142233277');
CREATE TRIGGER gpuwatch_tier_invalidate_update AFTER UPDATE ON gpu_metrics
    REFERENCING OLD TABLE AS gpuwatch_old_rows NEW TABLE AS gpuwatch_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gpuwatch_tier_invalidate('gpu_metrics', '8410176785142233277');
CREATE TRIGGER gpuwatch_tier_invalidate_delete AFTER DELETE ON gpu_metrics
    REFERENCING OLD TABLE AS gpuwatch_old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gpuwatch_tier_invalidate('gpu_metrics', '8410176785142233277');

CREATE TRIGGER gpuwatch_tier_invalidate_insert AFTER INSERT ON host_metrics
    REFERENCING NEW TABLE AS gpuwatch_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gpuwatch_tier_invalidate('host_metrics', '8363060996512899631');
CREATE TRIGGER gpuwatch_tier_invalidate_update AFTER UPDATE ON host_metrics
    REFERENCING OLD TABLE AS gpuwatch_old_rows NEW TABLE AS gpuwatch_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gpuwatch_tier_invalidate('host_metrics', '8363060996512899631');
CREATE TRIGGER gpuwatch_tier_invalidate_delete AFTER DELETE ON host_metrics
    REFERENCING OLD TABLE AS gpuwatch_old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gpuwatch_tier_invalidate('host_metrics', '8363060996512899631');

CREATE TRIGGER gpuwatch_tier_invalidate_insert AFTER INSERT ON environment_metrics
    REFERENCING NEW TABLE AS gpuwatch_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gpuwatch_tier_invalidate('environment_metrics', '8413363680032547130');
CREATE TRIGGER gpuwatch_tier_invalidate_update AFTER UPDATE ON environment_metrics
    REFERENCING OLD TABLE AS gpuwatch_old_rows NEW TABLE AS gpuwatch_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gpuwatch_tier_invalidate('environment_metrics', '8413363680032547130');
CREATE TRIGGER gpuwatch_tier_invalidate_delete AFTER DELETE ON environment_metrics
    REFERENCING OLD TABLE AS gpuwatch_old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gpuwatch_tier_invalidate('environment_metrics', '8413363680032547130');

-- Counters are reset-aware. Per bucket, <counter>_increase is the sum of the
-- steps between consecutive samples in the bucket, a drop counted as a
-- restart from 0; with <counter>_first, _last and _last_at (the time of
-- _last), the increase over any run of buckets, and the time it accrued
-- in, follow from the tiers alone (gpuwatch_counter_rate). Appended
-- to the tier tables (aggregator/src/spec.rs puts them last, before
-- materialized_at, which is therefore added again at the end: the buckets
-- it stamps are recomputed below anyway).
CREATE OR REPLACE FUNCTION gpuwatch_counter_increase_step(state bigint[], v bigint) RETURNS bigint[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- state: {previous value, increase so far}. A drop is a restart from 0,
    -- so the new value is all increase (Prometheus' increase()).
    SELECT CASE
        WHEN v IS NULL THEN state
        WHEN state IS NULL THEN ARRAY[v, 0]
        WHEN v >= state[1] THEN ARRAY[v, state[2] + (v - state[1])]
        ELSE ARRAY[v, state[2] + v]
    END
$$;

CREATE OR REPLACE FUNCTION gpuwatch_counter_increase_final(state bigint[]) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT state[2] $$;

CREATE OR REPLACE FUNCTION gpuwatch_counter_delta(prev bigint, v bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    -- The increase from one sample (or bucket's last) to the next (or the
    -- next bucket's first), counted as the aggregate counts it.
    SELECT CASE WHEN prev IS NULL OR v IS NULL THEN NULL WHEN v >= prev THEN v - prev ELSE v END
$$;

CREATE AGGREGATE gpuwatch_counter_increase(bigint) (
    SFUNC = gpuwatch_counter_increase_step,
    STYPE = bigint[],
    FINALFUNC = gpuwatch_counter_increase_final
);

ALTER TABLE gpu_metrics_1h
    ADD COLUMN energy_consumed_mj_increase BIGINT,
    ADD COLUMN energy_consumed_mj_last_at timestamptz,
    ADD COLUMN ecc_sbe_volatile_increase BIGINT,
    ADD COLUMN ecc_sbe_volatile_last_at timestamptz,
    ADD COLUMN ecc_dbe_volatile_increase BIGINT,
    ADD COLUMN ecc_dbe_volatile_last_at timestamptz,
    DROP COLUMN materialized_at,
    ADD COLUMN materialized_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE host_metrics_1h
    ADD COLUMN disk_io_read_bytes_increase BIGINT,
    ADD COLUMN disk_io_read_bytes_last_at timestamptz,
    ADD COLUMN disk_io_write_bytes_increase BIGINT,
    ADD COLUMN disk_io_write_bytes_last_at timestamptz,
    ADD COLUMN network_rx_bytes_increase BIGINT,
    ADD COLUMN network_rx_bytes_last_at timestamptz,
    ADD COLUMN network_tx_bytes_increase BIGINT,
    ADD COLUMN network_tx_bytes_last_at timestamptz,
    ADD COLUMN network_rx_packets_increase BIGINT,
    ADD COLUMN network_rx_packets_last_at timestamptz,
    ADD COLUMN network_tx_packets_increase BIGINT,
    ADD COLUMN network_tx_packets_last_at timestamptz,
    DROP COLUMN materialized_at,
    ADD COLUMN materialized_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE environment_metrics_1h
    ADD COLUMN network_rx_bytes_increase BIGINT,
    ADD COLUMN network_rx_bytes_last_at timestamptz,
    ADD COLUMN network_tx_bytes_increase BIGINT,
    ADD COLUMN network_tx_bytes_last_at timestamptz,
    DROP COLUMN materialized_at,
    ADD COLUMN materialized_at timestamptz NOT NULL DEFAULT now();

ALTER TABLE gpu_metrics_1d
    ADD COLUMN energy_consumed_mj_increase BIGINT,
    ADD COLUMN energy_consumed_mj_last_at timestamptz,
    ADD COLUMN ecc_sbe_volatile_increase BIGINT,
    ADD COLUMN ecc_sbe_volatile_last_at timestamptz,
    ADD COLUMN ecc_dbe_volatile_increase BIGINT,
    ADD COLUMN ecc_dbe_volatile_last_at timestamptz,
    DROP COLUMN materialized_at,
    ADD COLUMN materialized_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE host_metrics_1d
    ADD COLUMN disk_io_read_bytes_increase BIGINT,
    ADD COLUMN disk_io_read_bytes_last_at timestamptz,
    ADD COLUMN disk_io_write_bytes_increase BIGINT,
    ADD COLUMN disk_io_write_bytes_last_at timestamptz,
    ADD COLUMN network_rx_bytes_increase BIGINT,
    ADD COLUMN network_rx_bytes_last_at timestamptz,
    ADD COLUMN network_tx_bytes_increase BIGINT,
    ADD COLUMN network_tx_bytes_last_at timestamptz,
    ADD COLUMN network_rx_packets_increase BIGINT,
    ADD COLUMN network_rx_packets_last_at timestamptz,
    ADD COLUMN network_tx_packets_increase BIGINT,
    ADD COLUMN network_tx_packets_last_at timestamptz,
    DROP COLUMN materialized_at,
    ADD COLUMN materialized_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE environment_metrics_1d
    ADD COLUMN network_rx_bytes_increase BIGINT,
    ADD COLUMN network_rx_bytes_last_at timestamptz,
    ADD COLUMN network_tx_bytes_increase BIGINT,
    ADD COLUMN network_tx_bytes_last_at timestamptz,
    DROP COLUMN materialized_at,
    ADD COLUMN materialized_at timestamptz NOT NULL DEFAULT now();

-- Buckets materialised before this migration lack the increase: recompute
-- those raw still holds (the aggregator clamps the range to raw retention).
INSERT INTO gpuwatch_tier_invalidations (source, tier, lo, hi)
SELECT source, tier, '2000-01-01 00:00:00+00', watermark FROM gpuwatch_tier_state
 WHERE watermark IS NOT NULL;
