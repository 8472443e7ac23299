-- gpuwatch_counter_rate: its one current definition. `gpuwatch migrate` applies every
-- file of migrations/functions/ after the versioned migrations, whenever
-- the file changed (first defined in 0021_dashboards.sql, which stays as history;
-- gpuwatch_counter_series since 0029).
-- If a change alters the return type or argument types, start this file
-- with DROP FUNCTION IF EXISTS gpuwatch_counter_rate(<old argument types>): CREATE OR
-- REPLACE cannot change them.

CREATE OR REPLACE FUNCTION gpuwatch_counter_series(
    p_source  text,
    p_ids     text[],
    p_counter text,
    p_from    timestamptz,
    p_to      timestamptz,
    p_step    interval,
    p_agg     text
) RETURNS TABLE (bucket timestamptz, value double precision)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    key_col  text;
    key_cast text;
    v_tier   text;
    step     interval;
    wm_1h    timestamptz;
    wm_1d    timestamptz;
    raw_from timestamptz;
    h_from   timestamptz;
    q        text;
    origin   constant timestamptz := '2000-01-01 00:00:00+00';
BEGIN
    CASE p_source
        WHEN 'gpu_metrics' THEN key_col := 'gpu_id'; key_cast := 'bigint[]';
        WHEN 'host_metrics' THEN key_col := 'host_id'; key_cast := 'text[]';
        WHEN 'environment_metrics' THEN key_col := 'env_id'; key_cast := 'text[]';
        ELSE RAISE EXCEPTION 'gpuwatch_counter_series: unknown source %; use gpu_metrics, host_metrics or environment_metrics', p_source;
    END CASE;
    IF p_agg IS NULL OR p_agg NOT IN ('increase', 'rate') THEN
        RAISE EXCEPTION 'gpuwatch_counter_series: unknown aggregate % for a counter; use increase or rate', p_agg;
    END IF;
    IF p_ids IS NULL THEN
        RAISE EXCEPTION 'gpuwatch_counter_series: ids are required (fleet rollups hold no counters); pass ARRAY[...] of % values', key_col;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = to_regclass(p_source || '_1h') AND attname = p_counter || '_increase'
                     AND NOT attisdropped) THEN
        RAISE EXCEPTION 'gpuwatch_counter_series: % has no counter %', p_source, p_counter;
    END IF;
    IF p_step IS NULL OR p_step <= interval '0' THEN
        RAISE EXCEPTION 'gpuwatch_counter_series: step must be positive, got %', p_step;
    END IF;

    -- Tier choice and spans exactly as in gpuwatch_series.
    SELECT t.tier, t.step, t.h_from, t.raw_from, t.wm_1h, t.wm_1d
      INTO v_tier, step, h_from, raw_from, wm_1h, wm_1d
      FROM gpuwatch_tier_plan(p_source, p_from, p_step) t;

    -- Units are tier rows (first, last, the time of last, increase inside)
    -- and raw samples (first = last, nothing inside). A unit adds its own
    -- increase and the step from the unit before it (last to first, a drop
    -- counted as a restart from 0), and the time from the unit before's
    -- last sample to its own: so raw samples and tier rows give the same
    -- increase and the same rate (increase over that time) for any step
    -- that is a multiple of the tier's bucket. The window reaches one step
    -- back for the unit before the first bucket. A GPU moved to another host
    -- inside a bucket has a tier row per host there (migration 0032): they
    -- follow each other in the order of their last samples, so the step
    -- from one host's last sample to the next host's first is counted as
    -- over raw samples (exact while the GPU is on each host for one stretch
    -- of the bucket; see DESIGN).
    q := format($f$
        WITH units (k, ts, at, first, last, inc) AS (
            SELECT d.%1$I::text, d.bucket, d.%10$I, d.%2$I, d.%3$I, d.%4$I FROM %5$I d
             WHERE $6 = '1d' AND d.bucket < $7 AND d.bucket >= date_bin('1 day', $2 - $4, $9) AND d.bucket <= $3
               AND d.%1$I = ANY ($1::%6$s) AND d.%2$I IS NOT NULL
            UNION ALL
            SELECT h.%1$I::text, h.bucket, h.%10$I, h.%2$I, h.%3$I, h.%4$I FROM %7$I h
             WHERE $6 IN ('1h', '1d') AND h.bucket >= $8 AND h.bucket < $10
               AND h.bucket >= date_bin('1 hour', $2 - $4, $9) AND h.bucket <= $3
               AND h.%1$I = ANY ($1::%6$s) AND h.%2$I IS NOT NULL
            UNION ALL
            SELECT r.%1$I::text, r.collected_at, r.collected_at, r.%8$I, r.%8$I, 0 FROM %9$I r
             WHERE r.collected_at >= greatest($2 - greatest($4, interval '15 minutes'), $11) AND r.collected_at <= $3
               AND r.%1$I = ANY ($1::%6$s) AND r.%8$I IS NOT NULL
        ), steps AS (
            SELECT k, date_bin($4, ts, $9) AS b,
                   inc + coalesce(gpuwatch_counter_delta(lag(last) OVER w, first), 0) AS dv,
                   coalesce(extract(epoch FROM at - lag(at) OVER w), 0) AS dt
            FROM units WINDOW w AS (PARTITION BY k ORDER BY ts, at)
        ), per_series AS (
            SELECT b, sum(dv) AS dv, sum(dt) AS dt FROM steps WHERE b >= date_bin($4, $2, $9) GROUP BY k, b
        )
        -- Rates add up over series; each series' rate is its own increase
        -- over its own time (none yet, as for a series' first sample: no rate).
        SELECT b, CASE WHEN $12 = 'rate' THEN sum(dv / dt)::float8 ELSE sum(dv)::float8 END
        FROM per_series WHERE $12 <> 'rate' OR dt > 0 GROUP BY 1 ORDER BY 1
        $f$,
        key_col, p_counter || '_first', p_counter || '_last', p_counter || '_increase',
        p_source || '_1d', key_cast, p_source || '_1h', p_counter, p_source, p_counter || '_last_at');
    RETURN QUERY EXECUTE q USING p_ids, p_from, p_to, step, 0, v_tier,
        coalesce(wm_1d, '-infinity'::timestamptz), coalesce(h_from, 'infinity'::timestamptz),
        origin, coalesce(wm_1h, '-infinity'::timestamptz), raw_from, p_agg;
END;
$$;

COMMENT ON FUNCTION gpuwatch_counter_series(text, text[], text, timestamptz, timestamptz, interval, text) IS
    'Reset-corrected increase (or per-second rate: that increase over the time it accrued in) of a counter summed over series per step bucket, from the 1d/1h tiers plus the raw tail.';

CREATE OR REPLACE FUNCTION gpuwatch_counter_rate(
    p_source  text,
    p_ids     text[],
    p_counter text,
    p_from    timestamptz,
    p_to      timestamptz,
    p_step    interval
) RETURNS TABLE (bucket timestamptz, value double precision)
LANGUAGE sql STABLE AS $$
    SELECT * FROM gpuwatch_counter_series(p_source, p_ids, p_counter, p_from, p_to, p_step, 'rate')
$$;

COMMENT ON FUNCTION gpuwatch_counter_rate(text, text[], text, timestamptz, timestamptz, interval) IS
    'Per-second rate of a counter summed over series per step bucket (reset-corrected increase over the time it accrued in), from the 1d/1h tiers plus the raw tail.';
