-- gpuwatch_tier_invalidate: its one current definition. `gpuwatch migrate` applies every
-- file of migrations/functions/ after the versioned migrations, whenever
-- the file changed (first defined in 0029_tiers.sql, which stays as history).
-- If a change alters the return type or argument types, start this file
-- with DROP FUNCTION IF EXISTS gpuwatch_tier_invalidate(<old argument types>): CREATE OR
-- REPLACE cannot change them.

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
