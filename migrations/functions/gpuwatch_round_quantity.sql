-- gpuwatch_round_quantity: the one quantity rounding rule, the money rule's
-- twin at 6 decimals: numerator / denominator rounded half away from zero
-- with exact integer arithmetic. Invoice lines round their exact
-- unit-seconds / 3600 by it once; report rows split that rounded figure by
-- largest remainder, so they add up to the line exactly (as amounts do).

CREATE OR REPLACE FUNCTION gpuwatch_round_quantity(numerator numeric, denominator numeric)
RETURNS numeric
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
    x numeric := numerator * 1000000;
    d numeric := abs(denominator);
    q numeric;
    r numeric;
BEGIN
    IF denominator = 0 THEN
        RAISE EXCEPTION 'gpuwatch_round_quantity: denominator is zero';
    END IF;
    IF denominator < 0 THEN
        x := -x;
    END IF;
    q := div(x, d);          -- truncated toward zero, exact
    r := x - q * d;          -- exact remainder, same sign as x
    IF abs(r) * 2 >= d THEN  -- half or more: away from zero
        q := q + sign(x);
    END IF;
    RETURN (q * 0.000001)::numeric(38, 6);
END
$$;

COMMENT ON FUNCTION gpuwatch_round_quantity(numeric, numeric) IS
    'The one quantity rounding rule: numerator/denominator to 6 decimals, half away from zero, exact.';
