-- gpuwatch_make_hypertable: its one current definition. `gpuwatch migrate` applies every
-- file of migrations/functions/ after the versioned migrations, whenever
-- the file changed (first defined in 0007_monitoring.sql, which stays as history).
-- If a change alters the return type or argument types, start this file
-- with DROP FUNCTION IF EXISTS gpuwatch_make_hypertable(<old argument types>): CREATE OR
-- REPLACE cannot change them.
--
-- The two forms of __MAKE_TIME_SERIES__; `gpuwatch migrate` picks one.

CREATE OR REPLACE FUNCTION gpuwatch_make_hypertable(tbl text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- Our own time index is created above on both backends, so no default ones.
    PERFORM create_hypertable(tbl::regclass, 'collected_at',
                              chunk_time_interval => interval '1 day',
                              create_default_indexes => false);
END;
$$;
