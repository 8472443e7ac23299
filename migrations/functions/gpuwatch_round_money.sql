-- gpuwatch_round_money: its one current definition. `gpuwatch migrate` applies every
-- file of migrations/functions/ after the versioned migrations, whenever
-- the file changed (first defined in 0019_billing.sql, which stays as history).
-- If a change alters the return type or argument types, start this file
-- with DROP FUNCTION IF EXISTS gpuwatch_round_money(<old argument types>): CREATE OR
-- REPLACE cannot change them.

CREATE OR REPLACE FUNCTION gpuwatch_round_money(numerator numeric, denominator numeric)
RETURNS numeric
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    x numeric := numerator * 100;
    d numeric := abs(denominator);
    q numeric;
    r numeric;
BEGIN
    IF denominator = 0 THEN
        RAISE EXCEPTION 'gpuwatch_round_money: denominator is zero';
    END IF;
    IF denominator < 0 THEN
        x := -x;
    END IF;
    q := div(x, d);          -- truncated toward zero, exact
    r := x - q * d;          -- exact remainder, same sign as x
    IF abs(r) * 2 >= d THEN  -- half or more: away from zero
        q := q + sign(x);
    END IF;
    RETURN (q * 0.01)::numeric(38, 2);
END
$$;

COMMENT ON FUNCTION gpuwatch_round_money(numeric, numeric) IS
    'The one money rounding rule: numerator/denominator to 2 decimals, half away from zero, exact.';
