-- gpuwatch_tier_plan: its one current definition. `gpuwatch migrate` applies every
-- file of migrations/functions/ after the versioned migrations, whenever
-- the file changed (first defined in 0015_series.sql, which stays as history).
-- If a change alters the return type or argument types, start this file
-- with DROP FUNCTION IF EXISTS gpuwatch_tier_plan(<old argument types>): CREATE OR
-- REPLACE cannot change them.
--
-- Which tier serves a range starting at p_from with buckets of p_step, and
-- where each part's span starts: the finest tier the step allows, coarsened
-- while retention no longer holds p_from; the step widened to the tier's
-- bucket; daily [.., wm_1d), hourly [h_from, wm_1h), raw [raw_from, ..].
-- Shared by every tier-aware reader (gpuwatch_series, gpuwatch_counter_rate).

CREATE OR REPLACE FUNCTION gpuwatch_tier_plan(
    p_source text, p_from timestamptz, p_step interval,
    OUT tier text, OUT step interval, OUT h_from timestamptz, OUT raw_from timestamptz,
    OUT wm_1h timestamptz, OUT wm_1d timestamptz)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    width interval;
BEGIN
    tier := CASE WHEN p_step >= interval '1 day' THEN '1d' WHEN p_step >= interval '1 hour' THEN '1h' ELSE 'raw' END;
    IF tier = 'raw' AND p_from < now() - make_interval(days => gpuwatch_retention_days('retention.raw_days', 7)) THEN
        tier := '1h';
    END IF;
    IF tier = '1h' AND p_from < now() - make_interval(days => gpuwatch_retention_days('retention.hourly_days', 90)) THEN
        tier := '1d';
    END IF;
    width := CASE tier WHEN '1d' THEN interval '1 day' WHEN '1h' THEN interval '1 hour' ELSE NULL END;
    step := p_step;
    IF width IS NOT NULL AND step < width THEN
        step := width;
    END IF;

    SELECT s.watermark INTO wm_1h FROM gpuwatch_tier_state s WHERE s.source = p_source AND s.tier = '1h';
    SELECT s.watermark INTO wm_1d FROM gpuwatch_tier_state s WHERE s.source = p_source AND s.tier = '1d';
    IF tier = 'raw' THEN
        raw_from := '-infinity';
    ELSIF tier = '1h' THEN
        h_from := '-infinity';
        raw_from := coalesce(wm_1h, '-infinity');
    ELSE
        wm_1d := coalesce(wm_1d, '-infinity');
        h_from := wm_1d;
        raw_from := greatest(wm_1d, coalesce(wm_1h, '-infinity'));
    END IF;
END;
$$;
