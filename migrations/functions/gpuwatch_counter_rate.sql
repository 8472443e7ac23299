-- gpuwatch_counter_rate: its one current definition. `gpuwatch migrate` applies every
-- file of migrations/functions/ after the versioned migrations, whenever
-- the file changed (first defined in 0021_dashboards.sql, which stays as history).
-- If a change alters the return type or argument types, start this file
-- with DROP FUNCTION IF EXISTS gpuwatch_counter_rate(<old argument types>): CREATE OR
-- REPLACE cannot change them.

CREATE OR REPLACE FUNCTION gpuwatch_counter_rate(
    p_source  text,
    p_ids     text[],
    p_counter text,
    p_from    timestamptz,
    p_to      timestamptz,
    p_step    interval
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
        ELSE RAISE EXCEPTION 'gpuwatch_counter_rate: unknown source %; use gpu_metrics, host_metrics or environment_metrics', p_source;
    END CASE;
    IF p_ids IS NULL THEN
        RAISE EXCEPTION 'gpuwatch_counter_rate: ids are required (fleet rollups hold no counters); pass ARRAY[...] of % values', key_col;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = to_regclass(p_source || '_1h') AND attname = p_counter || '_last'
                     AND NOT attisdropped) THEN
        RAISE EXCEPTION 'gpuwatch_counter_rate: % has no counter %', p_source, p_counter;
    END IF;
    IF p_step IS NULL OR p_step <= interval '0' THEN
        RAISE EXCEPTION 'gpuwatch_counter_rate: step must be positive, got %', p_step;
    END IF;

    -- Tier choice and spans exactly as in gpuwatch_series.
    SELECT t.tier, t.step, t.h_from, t.raw_from, t.wm_1h, t.wm_1d
      INTO v_tier, step, h_from, raw_from, wm_1h, wm_1d
      FROM gpuwatch_tier_plan(p_source, p_from, p_step) t;

    -- $2 widened by one step: the first bucket's rate needs the bucket before it.
    q := format($f$
        WITH pts (k, ts, v) AS (
            SELECT d.%1$I::text, d.bucket + interval '1 day' - interval '1 day' / greatest(d.sample_count, 1), d.%2$I FROM %3$I d
             WHERE $6 = '1d' AND d.bucket < $7 AND d.bucket >= date_bin('1 day', $2 - $4, $9) AND d.bucket <= $3
               AND d.%1$I = ANY ($1::%4$s)
            UNION ALL
            SELECT h.%1$I::text, h.bucket + interval '1 hour' - interval '1 hour' / greatest(h.sample_count, 1), h.%2$I FROM %5$I h
             WHERE $6 IN ('1h', '1d') AND h.bucket >= $8 AND h.bucket < $10
               AND h.bucket >= date_bin('1 hour', $2 - $4, $9) AND h.bucket <= $3
               AND h.%1$I = ANY ($1::%4$s)
            UNION ALL
            SELECT r.%1$I::text, r.collected_at, r.%6$I FROM %7$I r
             WHERE r.collected_at >= greatest($2 - greatest($4, interval '15 minutes'), $11) AND r.collected_at <= $3
               AND r.%1$I = ANY ($1::%4$s)
        ), last_per_bucket AS (
            SELECT k, date_bin($4, ts, $9) AS b, max(ts) AS ts, (array_agg(v ORDER BY ts DESC))[1] AS v
            FROM pts WHERE v IS NOT NULL GROUP BY 1, 2
        ), deltas AS (
            SELECT b, v, v - lag(v) OVER w AS dv, extract(epoch FROM ts - lag(ts) OVER w) AS dt
            FROM last_per_bucket WINDOW w AS (PARTITION BY k ORDER BY b)
        )
        SELECT b, sum(CASE WHEN dv < 0 THEN v ELSE dv END / dt)::float8
        FROM deltas WHERE dt > 0 AND b >= date_bin($4, $2, $9)
        GROUP BY 1 ORDER BY 1
        $f$,
        key_col, p_counter || '_last', p_source || '_1d', key_cast,
        p_source || '_1h', p_counter, p_source);
    RETURN QUERY EXECUTE q USING p_ids, p_from, p_to, step, 0, v_tier,
        coalesce(wm_1d, '-infinity'::timestamptz), coalesce(h_from, 'infinity'::timestamptz),
        origin, coalesce(wm_1h, '-infinity'::timestamptz), raw_from;
END;
$$;

COMMENT ON FUNCTION gpuwatch_counter_rate(text, text[], text, timestamptz, timestamptz, interval) IS
    'Per-second rate of a counter summed over series per step bucket, from the 1d/1h tiers plus the raw tail.';
