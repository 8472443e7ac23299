-- gpuwatch_invoice_lines_sum: its one current definition. `gpuwatch migrate` applies every
-- file of migrations/functions/ after the versioned migrations, whenever
-- the file changed (first defined in 0019_billing.sql, which stays as history).
-- If a change alters the return type or argument types, start this file
-- with DROP FUNCTION IF EXISTS gpuwatch_invoice_lines_sum(<old argument types>): CREATE OR
-- REPLACE cannot change them.
--
-- An invoice's subtotal is exactly the sum of its lines' amounts (strings in
-- the lines JSON, so no float ever touches them).

CREATE OR REPLACE FUNCTION gpuwatch_invoice_lines_sum(lines jsonb) RETURNS numeric
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT coalesce(sum((l ->> 'amount')::numeric), 0) FROM jsonb_array_elements(lines) AS l
$$;
