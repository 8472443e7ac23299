-- gpuwatch_set_updated_at: its one current definition. `gpuwatch migrate` applies every
-- file of migrations/functions/ after the versioned migrations, whenever
-- the file changed (first defined in 0001_init_database.sql, which stays as history).
-- If a change alters the return type or argument types, start this file
-- with DROP FUNCTION IF EXISTS gpuwatch_set_updated_at(<old argument types>): CREATE OR
-- REPLACE cannot change them.
--
-- Keeps updated_at true on every UPDATE, whatever client wrote the row.

CREATE OR REPLACE FUNCTION gpuwatch_set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
