-- gpuwatch_billing_records_append_only: its one current definition. `gpuwatch migrate` applies every
-- file of migrations/functions/ after the versioned migrations, whenever
-- the file changed (first defined in 0019_billing.sql, which stays as history).
-- If a change alters the return type or argument types, start this file
-- with DROP FUNCTION IF EXISTS gpuwatch_billing_records_append_only(<old argument types>): CREATE OR
-- REPLACE cannot change them.
--
-- Append-only: the only update allowed is attaching a record to an invoice
-- (invoice_id NULL -> id), or releasing it from a draft that is voided; a
-- report-only record (billed false, migration 0031) is never attached.

CREATE OR REPLACE FUNCTION gpuwatch_billing_records_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'billing_records are append-only: record % cannot be deleted; write a correction instead', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    -- Column by column (to_jsonb of both rows costs more per row). amount
    -- and billing_key are generated from these columns (and not yet
    -- computed in a BEFORE trigger), so they are not compared.
    IF (NEW.id, NEW.customer_id, NEW.env_id, NEW.workspace_id, NEW.resource_type, NEW.gpu_model,
        NEW.quantity, NEW.usage_seconds, NEW.unit_price, NEW.currency, NEW.start_time, NEW.end_time,
        NEW.is_correction, NEW.corrects_id, NEW.created_at, NEW.billed)
       IS DISTINCT FROM
       (OLD.id, OLD.customer_id, OLD.env_id, OLD.workspace_id, OLD.resource_type, OLD.gpu_model,
        OLD.quantity, OLD.usage_seconds, OLD.unit_price, OLD.currency, OLD.start_time, OLD.end_time,
        OLD.is_correction, OLD.corrects_id, OLD.created_at, OLD.billed) THEN
        RAISE EXCEPTION 'billing_records are append-only: record % cannot be changed; write a correction instead', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.invoice_id IS NOT NULL AND NOT NEW.billed THEN
        RAISE EXCEPTION 'billing record % is report-only (its cluster''s jobs are not billed) and cannot be invoiced', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.invoice_id IS NOT NULL AND NEW.invoice_id IS DISTINCT FROM OLD.invoice_id
       AND NOT (NEW.invoice_id IS NULL
                AND EXISTS (SELECT 1 FROM invoices WHERE id = OLD.invoice_id AND status = 'draft')) THEN
        RAISE EXCEPTION 'billing record % is on invoice % and cannot move', OLD.id, OLD.invoice_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
