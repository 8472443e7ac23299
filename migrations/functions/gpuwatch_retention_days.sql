-- gpuwatch_retention_days: its one current definition. `gpuwatch migrate` applies every
-- file of migrations/functions/ after the versioned migrations, whenever
-- the file changed (first defined in 0015_series.sql, which stays as history).
-- If a change alters the return type or argument types, start this file
-- with DROP FUNCTION IF EXISTS gpuwatch_retention_days(<old argument types>): CREATE OR
-- REPLACE cannot change them.

CREATE OR REPLACE FUNCTION gpuwatch_retention_days(key text, fallback integer) RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT CASE WHEN config_value ~ '^\s*[0-9]+\s*$' THEN config_value::integer END
         FROM system_configs WHERE config_key = key),
        fallback)
$$;
