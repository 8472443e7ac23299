-- gpuwatch_history_late_change: its one current definition. `gpuwatch migrate` applies every
-- file of migrations/functions/ after the versioned migrations, whenever
-- the file changed (first defined in 0019_billing.sql, which stays as history).
-- If a change alters the return type or argument types, start this file
-- with DROP FUNCTION IF EXISTS gpuwatch_history_late_change(<old argument types>): CREATE OR
-- REPLACE cannot change them.

CREATE OR REPLACE FUNCTION gpuwatch_history_late_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    wm timestamptz;
BEGIN
    SELECT watermark INTO wm FROM billing_meter_state WHERE id = 1 FOR SHARE;
    IF wm IS NOT NULL AND NEW.valid_from < wm THEN
        INSERT INTO billing_recompute_queue (env_id, from_time) VALUES (NEW.env_id, NEW.valid_from);
    END IF;
    RETURN NULL;
END
$$;
