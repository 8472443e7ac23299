-- gpuwatch_invoices_immutable: its one current definition. `gpuwatch migrate` applies every
-- file of migrations/functions/ after the versioned migrations, whenever
-- the file changed (first defined in 0019_billing.sql, which stays as history).
-- If a change alters the return type or argument types, start this file
-- with DROP FUNCTION IF EXISTS gpuwatch_invoices_immutable(<old argument types>): CREATE OR
-- REPLACE cannot change them.
--
-- Invoices: draft -> issued -> paid | void, draft -> void. Once issued,
-- nothing but the status (and its timestamp) changes, and no invoice that
-- left draft is ever deleted.

CREATE OR REPLACE FUNCTION gpuwatch_invoices_immutable() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'draft' THEN
            RAISE EXCEPTION 'invoice % is %: it can never be deleted', OLD.invoice_number, OLD.status
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN OLD;
    END IF;
    IF NOT ((OLD.status = NEW.status)
            OR (OLD.status = 'draft' AND NEW.status IN ('issued', 'void'))
            OR (OLD.status = 'issued' AND NEW.status IN ('paid', 'void'))) THEN
        RAISE EXCEPTION 'invoice % cannot go from % to %', OLD.invoice_number, OLD.status, NEW.status
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.status <> 'draft'
       AND (to_jsonb(NEW) - ARRAY['status', 'paid_at', 'updated_at'])
           IS DISTINCT FROM (to_jsonb(OLD) - ARRAY['status', 'paid_at', 'updated_at']) THEN
        RAISE EXCEPTION 'invoice % is %: its figures and lines never change', OLD.invoice_number, OLD.status
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END
$$;
