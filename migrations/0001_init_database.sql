-- 01 · database initialisation: extensions and shared trigger functions.
--
-- uuid-ossp and pgcrypto are what seed 001 requires. TimescaleDB is not
-- created here: `gpuwatch migrate` decides the backend (config `database.backend`)
-- and creates the extension itself before this file runs, so that a refused
-- CREATE EXTENSION is reported with a hint instead of a bare SQL error.

CREATE EXTENSION IF NOT EXISTS "uuid-ossp";
CREATE EXTENSION IF NOT EXISTS pgcrypto;

-- Keeps updated_at true on every UPDATE, whatever client wrote the row.
CREATE OR REPLACE FUNCTION gpuwatch_set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
