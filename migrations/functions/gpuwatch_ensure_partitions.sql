-- gpuwatch_ensure_partitions: its one current definition. `gpuwatch migrate` applies every
-- file of migrations/functions/ after the versioned migrations, whenever
-- the file changed (first defined in 0007_monitoring.sql, which stays as history).
-- If a change alters the return type or argument types, start this file
-- with DROP FUNCTION IF EXISTS gpuwatch_ensure_partitions(<old argument types>): CREATE OR
-- REPLACE cannot change them.
--
-- Daily partitions on plain PostgreSQL, named <table>_pYYYYMMDD, bounds in UTC.
-- Serialised by an advisory lock so concurrent writers can both call it.

CREATE OR REPLACE FUNCTION gpuwatch_ensure_partitions(tbl text, from_day date, to_day date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    d date := from_day;
    created integer := 0;
    part text;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = tbl::regclass) <> 'p' THEN
        RETURN 0;  -- a hypertable creates its chunks itself
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('gpuwatch_ensure_partitions'), hashtext(tbl));
    WHILE d <= to_day LOOP
        part := format('%s_p%s', tbl, to_char(d, 'YYYYMMDD'));
        IF to_regclass(part) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                part, tbl, (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC'));
            created := created + 1;
        END IF;
        d := d + 1;
    END LOOP;
    RETURN created;
END;
$$;
