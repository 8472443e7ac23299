-- gpuwatch_make_partitioned: its one current definition. `gpuwatch migrate` applies every
-- file of migrations/functions/ after the versioned migrations, whenever
-- the file changed (first defined in 0007_monitoring.sql, which stays as history).
-- If a change alters the return type or argument types, start this file
-- with DROP FUNCTION IF EXISTS gpuwatch_make_partitioned(<old argument types>): CREATE OR
-- REPLACE cannot change them.

CREATE OR REPLACE FUNCTION gpuwatch_make_partitioned(tbl text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
BEGIN
    PERFORM gpuwatch_ensure_partitions(tbl, today - 1, today + 7);
END;
$$;
