-- gpuwatch_environment_history: its one current definition. `gpuwatch migrate` applies every
-- file of migrations/functions/ after the versioned migrations, whenever
-- the file changed (first defined in 0019_billing.sql, which stays as history).
-- If a change alters the return type or argument types, start this file
-- with DROP FUNCTION IF EXISTS gpuwatch_environment_history(<old argument types>): CREATE OR
-- REPLACE cannot change them.
--
-- environments -> history. valid_from is now, truncated to the second, unless
-- the session says when the change really happened
-- (SET LOCAL gpuwatch.changed_at = '...'), which is how a control plane
-- reports a change it learnt late.

CREATE OR REPLACE FUNCTION gpuwatch_environment_history() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    at timestamptz := coalesce(
        nullif(current_setting('gpuwatch.changed_at', true), '')::timestamptz,
        clock_timestamp());
BEGIN
    -- A deleted row ends the environment's billing: history records it as
    -- 'deleted', else the last state (perhaps running) would bill forever.
    IF TG_OP = 'DELETE' THEN
        INSERT INTO environment_status_history
            (env_id, customer_id, workspace_id, status, cpu, memory, gpu, gpu_model, valid_from)
        VALUES (OLD.id, OLD.customer_id, OLD.workspace_id, 'deleted', OLD.cpu, OLD.memory,
                OLD.gpu, OLD.gpu_model, date_trunc('second', at));
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE'
       AND NEW.status IS NOT DISTINCT FROM OLD.status
       AND NEW.cpu IS NOT DISTINCT FROM OLD.cpu
       AND NEW.memory IS NOT DISTINCT FROM OLD.memory
       AND NEW.gpu IS NOT DISTINCT FROM OLD.gpu
       AND NEW.gpu_model IS NOT DISTINCT FROM OLD.gpu_model
       AND NEW.customer_id IS NOT DISTINCT FROM OLD.customer_id
       AND NEW.workspace_id IS NOT DISTINCT FROM OLD.workspace_id THEN
        RETURN NULL;
    END IF;
    INSERT INTO environment_status_history
        (env_id, customer_id, workspace_id, status, cpu, memory, gpu, gpu_model, valid_from)
    VALUES (NEW.id, NEW.customer_id, NEW.workspace_id, NEW.status, NEW.cpu, NEW.memory,
            NEW.gpu, NEW.gpu_model, date_trunc('second', at));
    RETURN NULL;
END
$$;
