-- gpuwatch_series: its one current definition. `gpuwatch migrate` applies every
-- file of migrations/functions/ after the versioned migrations, whenever
-- the file changed (first defined in 0015_series.sql, which stays as history).
-- If a change alters the return type or argument types, start this file
-- with DROP FUNCTION IF EXISTS gpuwatch_series(<old argument types>): CREATE OR
-- REPLACE cannot change them.

-- 0029 added p_agg (with a default, so six-argument calls keep working):
-- the six-argument definition goes first.
DROP FUNCTION IF EXISTS gpuwatch_series(text, text[], text, timestamptz, timestamptz, interval);

CREATE OR REPLACE FUNCTION gpuwatch_series(
    p_source text,
    p_ids    text[],
    p_metric text,
    p_from   timestamptz,
    p_to     timestamptz,
    p_step   interval,
    p_agg    text DEFAULT 'avg'
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
    t_1d     text := p_source || CASE WHEN p_ids IS NULL THEN '_fleet_1d' ELSE '_1d' END;
    t_1h     text := p_source || CASE WHEN p_ids IS NULL THEN '_fleet_1h' ELSE '_1h' END;
    f_d      text;
    f_h      text;
    f_r      text;
    outer_e  text;
    origin   constant timestamptz := '2000-01-01 00:00:00+00';
BEGIN
    CASE p_source
        WHEN 'gpu_metrics' THEN key_col := 'gpu_id'; key_cast := 'bigint[]';
        WHEN 'host_metrics' THEN key_col := 'host_id'; key_cast := 'text[]';
        WHEN 'environment_metrics' THEN key_col := 'env_id'; key_cast := 'text[]';
        ELSE RAISE EXCEPTION 'gpuwatch_series: unknown source %; use gpu_metrics, host_metrics or environment_metrics', p_source;
    END CASE;
    IF p_agg IS NULL OR p_agg NOT IN ('avg', 'min', 'max', 'sum', 'count', 'p95') THEN
        RAISE EXCEPTION 'gpuwatch_series: unknown aggregate %; use avg, min, max, sum, count or p95 (increase and rate: gpuwatch_counter_series)', p_agg;
    END IF;
    -- pg_attribute, not information_schema: this runs on every chart refresh.
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = to_regclass(p_source || '_1h') AND attname = p_metric || '_sum'
                     AND NOT attisdropped) THEN
        RAISE EXCEPTION 'gpuwatch_series: % has no gauge metric %', p_source, p_metric;
    END IF;
    IF p_step IS NULL OR p_step <= interval '0' THEN
        RAISE EXCEPTION 'gpuwatch_series: step must be positive, got %', p_step;
    END IF;

    SELECT t.tier, t.step, t.h_from, t.raw_from, t.wm_1h, t.wm_1d
      INTO v_tier, step, h_from, raw_from, wm_1h, wm_1d
      FROM gpuwatch_tier_plan(p_source, p_from, p_step) t;

    -- Without ids the fleet rollups serve the tier parts (one row per bucket).
    IF p_ids IS NULL THEN
        f_d := 'true'; f_h := 'true'; f_r := 'true';
    ELSE
        f_d := format('d.%I = ANY ($1::%s)', key_col, key_cast);
        f_h := format('h.%I = ANY ($1::%s)', key_col, key_cast);
        f_r := format('r.%I = ANY ($1::%s)', key_col, key_cast);
    END IF;

    IF p_agg = 'p95' THEN
        RETURN QUERY SELECT * FROM gpuwatch_series_p95(p_source, p_ids, p_metric, p_from, p_to, step, v_tier, raw_from, f_r, f_h);
        RETURN;
    END IF;

    -- Every part carries sum, count, min and max, so each aggregate over
    -- any mix of daily, hourly and raw parts is exact: Σsum/Σcount, Σsum,
    -- Σcount, min of minima, max of maxima.
    outer_e := CASE p_agg
        WHEN 'avg' THEN '(sum(s) / nullif(sum(c), 0))::float8'
        WHEN 'sum' THEN 'sum(s)::float8'
        WHEN 'count' THEN 'sum(c)::float8'
        WHEN 'min' THEN 'min(mn)::float8'
        ELSE 'max(mx)::float8'
    END;
    q := format($f$
        WITH parts (ts, s, c, mn, mx) AS (
            SELECT d.bucket, d.%1$I, d.%2$I, d.%10$I::float8, d.%11$I::float8 FROM %3$I d
             WHERE $6 = '1d' AND d.bucket < $7 AND d.bucket >= date_bin('1 day', $2, $9) AND d.bucket <= $3
               AND %4$s
            UNION ALL
            SELECT h.bucket, h.%1$I, h.%2$I, h.%10$I::float8, h.%11$I::float8 FROM %6$I h
             WHERE $6 IN ('1h', '1d') AND h.bucket >= $8 AND h.bucket < $10
               AND h.bucket >= date_bin('1 hour', $2, $9) AND h.bucket <= $3
               AND %5$s
            UNION ALL
            SELECT r.collected_at, r.%7$I::numeric, CASE WHEN r.%7$I IS NULL THEN 0 ELSE 1 END,
                   r.%7$I::float8, r.%7$I::float8 FROM %8$I r
             WHERE r.collected_at >= greatest($2, $11) AND r.collected_at <= $3
               AND %9$s
        )
        SELECT date_bin($4, ts, $9), %12$s
        FROM parts GROUP BY 1 ORDER BY 1
        $f$,
        p_metric || '_sum', p_metric || '_count', t_1d, f_d, f_h,
        t_1h, p_metric, p_source, f_r, p_metric || '_min', p_metric || '_max', outer_e);
    RETURN QUERY EXECUTE q USING p_ids, p_from, p_to, step, 0, v_tier,
        coalesce(wm_1d, '-infinity'::timestamptz), coalesce(h_from, 'infinity'::timestamptz),
        origin, coalesce(wm_1h, '-infinity'::timestamptz), raw_from;
END;
$$;

COMMENT ON FUNCTION gpuwatch_series(text, text[], text, timestamptz, timestamptz, interval, text) IS
    'avg, min, max, sum, count or p95 of a gauge over series per step bucket, from the 1d/1h tiers plus the raw tail; range inclusive at both ends.';

CREATE OR REPLACE FUNCTION gpuwatch_series_p95(
    p_source text, p_ids text[], p_metric text, p_from timestamptz, p_to timestamptz,
    step interval, v_tier text, raw_from timestamptz, f_r text, f_h text
) RETURNS TABLE (bucket timestamptz, value double precision)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    origin   constant timestamptz := '2000-01-01 00:00:00+00';
    raw_days int := gpuwatch_retention_days('retention.raw_days', 7);
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                   WHERE attrelid = to_regclass(p_source || '_1h') AND attname = p_metric || '_p95'
                     AND NOT attisdropped) THEN
        RAISE EXCEPTION 'gpuwatch_series: % keeps no p95 of %; ask for avg, min, max, sum or count', p_source, p_metric;
    END IF;
    -- A p95 is not mergeable: it is exact from raw rows while raw rows hold
    -- the whole range, or the stored p95 of one series' buckets when a step
    -- is one hourly bucket. Anything else is refused, never averaged.
    IF p_from >= now() - make_interval(days => raw_days) THEN
        RETURN QUERY EXECUTE format($f$
            SELECT date_bin($4, r.collected_at, $5), percentile_cont(0.95) WITHIN GROUP (ORDER BY r.%1$I)::float8
            FROM %2$I r WHERE r.collected_at >= $2 AND r.collected_at <= $3 AND %3$s
            GROUP BY 1 ORDER BY 1 $f$, p_metric, p_source, f_r)
            USING p_ids, p_from, p_to, step, origin;
    ELSIF v_tier = '1h' AND step = interval '1 hour' AND cardinality(p_ids) = 1 THEN
        -- An hour in which the series moved hosts has a row per host
        -- (migration 0032) and no p95 of the whole hour: NULL, not a guess.
        RETURN QUERY EXECUTE format($f$
            SELECT h.bucket, CASE WHEN count(*) = 1 THEN max(h.%1$I) END FROM %2$I h
             WHERE h.bucket >= date_bin('1 hour', $2, $5) AND h.bucket <= $3 AND h.bucket < $6 AND %3$s
             GROUP BY 1
            UNION ALL
            SELECT date_bin($4, r.collected_at, $5), percentile_cont(0.95) WITHIN GROUP (ORDER BY r.%4$I)::float8
            FROM %5$I r WHERE r.collected_at >= greatest($2, $6) AND r.collected_at <= $3 AND %6$s
            GROUP BY 1 ORDER BY 1 $f$,
            p_metric || '_p95', p_source || '_1h', f_h, p_metric, p_source, f_r)
            USING p_ids, p_from, p_to, step, origin, raw_from;
    ELSE
        RAISE EXCEPTION 'gpuwatch_series: a p95 over % before raw retention (% days) is kept only per hour and series; ask for one id with a 1 hour step, or for max', step, raw_days;
    END IF;
END;
$$;

COMMENT ON FUNCTION gpuwatch_series_p95(text, text[], text, timestamptz, timestamptz, interval, text, timestamptz, text, text) IS
    'p95 for gpuwatch_series: exact from raw within raw retention, else the stored hourly p95 of one series.';
