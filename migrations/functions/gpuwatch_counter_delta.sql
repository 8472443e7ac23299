-- gpuwatch_counter_delta (and the step and final functions of the aggregate
-- gpuwatch_counter_increase): their one current definition. `gpuwatch migrate` applies every
-- file of migrations/functions/ after the versioned migrations, whenever
-- the file changed (first defined in 0029_tiers.sql, which stays as history;
-- the aggregate gpuwatch_counter_increase(bigint ORDER BY ...) over these is declared there).
-- If a change alters the return type or argument types, start this file
-- with DROP FUNCTION IF EXISTS gpuwatch_counter_delta(<old argument types>): CREATE OR
-- REPLACE cannot change them.

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
