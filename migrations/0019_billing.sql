-- 19 · billing: status history, prices, the meter's state, the constraints
-- that forbid double billing, invoice immutability, the rounding rule, and
-- the quota view with its default alert rule.
--
-- Money types, and why they are this wide:
--   * billing_prices.unit_price NUMERIC(20,10): a price per unit-hour; ten
--     decimals keep per-second equivalents of cheap resources exact enough to
--     state (0.05 per core-hour is 0.0000138.. per second; seed 004's
--     DECIMAL(10,4) cannot even hold that per second, and we never store it:
--     seconds x price / 3600 is evaluated exactly, see below).
--   * billing_records.quantity becomes unconstrained NUMERIC: memory is
--     billed in GiB and an environment's bytes / 2^30 can need up to 30
--     decimals; NUMERIC(20,6) would round a quantity before any money rule.
--   * billing_records.amount becomes an unconstrained NUMERIC generated from
--     quantity x usage_seconds x unit_price / 3600 (to the 20-odd decimals
--     PostgreSQL's numeric division yields), for people reading rows. Invoice
--     lines are NOT the sum of these: they are computed from the exact
--     products (see gpuwatch_round_money), so no record-level rounding
--     reaches an invoice.
--   * invoices keep NUMERIC(20,2): rounded money, up to 10^18 per invoice.
--
-- The one rounding rule: gpuwatch_round_money(numerator, denominator) rounds
-- numerator / denominator to 2 decimals, half away from zero, with exact
-- integer arithmetic (div/mod on NUMERIC, no intermediate rounding). It is
-- applied once per invoice line; an invoice total is the exact sum of its
-- rounded lines. Rust code never rounds money (rust_decimal's round_dp is
-- banker's rounding: not our rule). SQL round() is never used on money.

CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE FUNCTION gpuwatch_round_money(numerator numeric, denominator numeric)
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

-- Status history: what the meter bills from. One row per change of status or
-- allocation, written by the trigger below (and by control planes reporting a
-- change late, with valid_from in the past). No CHECKs on the allocation on
-- purpose: the meter validates and reports bad rows by environment, resource
-- and period instead of a late report being lost to a constraint.
CREATE TABLE environment_status_history (
    id           BIGSERIAL PRIMARY KEY,
    env_id       VARCHAR(64) NOT NULL,
    customer_id  BIGINT NOT NULL,
    workspace_id BIGINT,
    status       VARCHAR(20) NOT NULL,
    cpu          INT NOT NULL,
    memory       BIGINT NOT NULL,
    gpu          INT NOT NULL,
    gpu_model    VARCHAR(128),
    valid_from   timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chk_environment_status_history_second
        CHECK (valid_from = date_trunc('second', valid_from))
);

CREATE INDEX idx_environment_status_history_env
    ON environment_status_history (env_id, valid_from, id);
CREATE INDEX idx_environment_status_history_valid_from
    ON environment_status_history (valid_from);

COMMENT ON TABLE environment_status_history IS
    'Every status and allocation change of environments, to the second; the meter bills from it.';

-- Late changes to metered time queue a recomputation (corrections). The meter
-- holds billing_meter_state FOR UPDATE while it meters; taking it FOR SHARE
-- here orders each history insert against a meter run, so a change is either
-- seen by that run or finds the advanced watermark and is queued.
CREATE TABLE billing_meter_state (
    id         SMALLINT PRIMARY KEY DEFAULT 1,
    watermark  timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chk_billing_meter_state_single CHECK (id = 1)
);
INSERT INTO billing_meter_state (id) VALUES (1);

COMMENT ON TABLE billing_meter_state IS
    'The meter''s watermark: every period before it is metered; advanced in the same transaction as the records.';

CREATE TABLE billing_recompute_queue (
    id        BIGSERIAL PRIMARY KEY,
    env_id    VARCHAR(64) NOT NULL,
    from_time timestamptz NOT NULL,
    queued_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_billing_recompute_queue_env ON billing_recompute_queue (env_id);

COMMENT ON TABLE billing_recompute_queue IS
    'Environments whose history changed behind the meter''s watermark; the meter writes corrections for them.';

CREATE FUNCTION gpuwatch_history_late_change() RETURNS trigger
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

CREATE TRIGGER trg_environment_status_history_late AFTER INSERT ON environment_status_history
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_history_late_change();

-- environments -> history. valid_from is now, truncated to the second, unless
-- the session says when the change really happened
-- (SET LOCAL gpuwatch.changed_at = '...'), which is how a control plane
-- reports a change it learnt late.
CREATE FUNCTION gpuwatch_environment_history() RETURNS trigger
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

CREATE TRIGGER trg_environments_history AFTER INSERT OR UPDATE OR DELETE ON environments
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_environment_history();

-- Environments that exist before this migration start their history now.
INSERT INTO environment_status_history
    (env_id, customer_id, workspace_id, status, cpu, memory, gpu, gpu_model, valid_from)
SELECT id, customer_id, workspace_id, status, cpu, memory, gpu, gpu_model,
       date_trunc('second', now())
FROM environments;

-- Effective-dated prices per unit-hour: cpu per core-hour, memory per
-- GiB-hour, gpu per GPU-hour of one model. One price in force per resource
-- and model at any instant (the exclusion constraint). currency is checked
-- for shape here; the meter rejects codes it does not know.
CREATE TABLE billing_prices (
    id            BIGSERIAL PRIMARY KEY,
    resource_type VARCHAR(32) NOT NULL,
    gpu_model     VARCHAR(128) NOT NULL DEFAULT '',
    unit_price    NUMERIC(20,10) NOT NULL,
    currency      CHAR(3) NOT NULL,
    valid_from    timestamptz NOT NULL,
    valid_to      timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chk_billing_prices_resource_type CHECK (resource_type IN ('cpu', 'memory', 'gpu')),
    CONSTRAINT chk_billing_prices_model CHECK ((resource_type = 'gpu') = (gpu_model <> '')),
    CONSTRAINT chk_billing_prices_unit_price CHECK (unit_price >= 0),
    CONSTRAINT chk_billing_prices_currency CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT chk_billing_prices_period CHECK (valid_to IS NULL OR valid_to > valid_from),
    CONSTRAINT ex_billing_prices_overlap EXCLUDE USING gist (
        resource_type WITH =, gpu_model WITH =, tstzrange(valid_from, valid_to, '[)') WITH &&)
);

COMMENT ON TABLE billing_prices IS
    'Effective-dated prices per unit-hour (core, GiB, GPU of a model) with currency.';

-- Periods the meter could not bill (bad input): kept until a later run bills
-- them, so nothing is lost and the error stays visible.
CREATE TABLE billing_meter_errors (
    id            BIGSERIAL PRIMARY KEY,
    env_id        VARCHAR(64) NOT NULL,
    period_start  timestamptz NOT NULL,
    period_end    timestamptz NOT NULL,
    message       TEXT NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz
);
CREATE UNIQUE INDEX uq_billing_meter_errors_open
    ON billing_meter_errors (env_id, period_start) WHERE resolved_at IS NULL;

COMMENT ON TABLE billing_meter_errors IS
    'Environment periods the meter skipped for bad input, retried every run until billed.';

-- billing_records: wider money, workspace for reports, and the guards.
-- amount becomes a generated column: it can never disagree with quantity x
-- usage_seconds x unit_price / 3600, for usage rows and corrections alike.
ALTER TABLE billing_records DROP COLUMN amount;
ALTER TABLE billing_records
    ALTER COLUMN quantity TYPE numeric,
    ADD COLUMN amount numeric GENERATED ALWAYS AS (quantity * usage_seconds * unit_price / 3600) STORED,
    ADD COLUMN workspace_id BIGINT,
    ADD CONSTRAINT chk_billing_records_non_negative
        CHECK (is_correction OR (quantity >= 0 AND usage_seconds >= 0)),
    ADD CONSTRAINT chk_billing_records_env_id CHECK (env_id IS NOT NULL),
    -- The database forbids billing an interval twice: one usage row per
    -- environment, resource and start, and no two usage rows of one
    -- environment and resource overlapping in time, whatever the grid of the
    -- meter that wrote them. Corrections are exempt: they reverse or replace
    -- usage rows explicitly (a reversal names the row it reverses, once).
    --
    -- The exclusion constraint keys on a 64-bit hash of (env_id, resource)
    -- rather than the two text columns: GiST over btree_gist text keys cost
    -- ~80 us per inserted row here, over a bigint ~20 us. Rows of one
    -- environment and resource always share the hash, so an overlap is
    -- always refused; the only effect of a hash collision between two
    -- different keys (odds ~N^2/2^65 for N keys, 3e-8 for a million) would
    -- be a refused legitimate row, reported by the meter by constraint name,
    -- never a double bill.
    ADD COLUMN billing_key bigint GENERATED ALWAYS AS (
        hashtextextended(env_id::text || '/' || resource_type::text, 0)) STORED,
    ADD CONSTRAINT ex_billing_records_no_overlap EXCLUDE USING gist (
        billing_key WITH =, tstzrange(start_time, end_time, '[)') WITH &&)
        WHERE (NOT is_correction);

CREATE UNIQUE INDEX uq_billing_records_usage
    ON billing_records (env_id, resource_type, start_time) WHERE NOT is_correction;
CREATE UNIQUE INDEX uq_billing_records_reversal
    ON billing_records (corrects_id) WHERE corrects_id IS NOT NULL;
CREATE INDEX idx_billing_records_env_time ON billing_records (env_id, start_time);
-- Covered by idx_billing_records_env_time; one index less for every row written.
DROP INDEX idx_billing_records_env_id;

-- Append-only: the only update allowed is attaching a record to an invoice
-- (invoice_id NULL -> id), or releasing it from a draft that is voided.
CREATE FUNCTION gpuwatch_billing_records_append_only() RETURNS trigger
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
        NEW.is_correction, NEW.corrects_id, NEW.created_at)
       IS DISTINCT FROM
       (OLD.id, OLD.customer_id, OLD.env_id, OLD.workspace_id, OLD.resource_type, OLD.gpu_model,
        OLD.quantity, OLD.usage_seconds, OLD.unit_price, OLD.currency, OLD.start_time, OLD.end_time,
        OLD.is_correction, OLD.corrects_id, OLD.created_at) THEN
        RAISE EXCEPTION 'billing_records are append-only: record % cannot be changed; write a correction instead', OLD.id
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

CREATE TRIGGER trg_billing_records_append_only BEFORE UPDATE OR DELETE ON billing_records
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_billing_records_append_only();

-- Invoices: draft -> issued -> paid | void, draft -> void. Once issued,
-- nothing but the status (and its timestamp) changes, and no invoice that
-- left draft is ever deleted.
CREATE FUNCTION gpuwatch_invoices_immutable() RETURNS trigger
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

CREATE TRIGGER trg_invoices_immutable BEFORE UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_invoices_immutable();

-- A draft may be voided without ever being issued.
ALTER TABLE invoices DROP CONSTRAINT chk_invoices_issued_at;
ALTER TABLE invoices ADD CONSTRAINT chk_invoices_issued_at
    CHECK (status IN ('draft', 'void') OR issued_at IS NOT NULL);

-- An invoice's subtotal is exactly the sum of its lines' amounts (strings in
-- the lines JSON, so no float ever touches them).
CREATE FUNCTION gpuwatch_invoice_lines_sum(lines jsonb) RETURNS numeric
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT coalesce(sum((l ->> 'amount')::numeric), 0) FROM jsonb_array_elements(lines) AS l
$$;

ALTER TABLE invoices
    ADD CONSTRAINT chk_invoices_lines_sum CHECK (subtotal = gpuwatch_invoice_lines_sum(lines));

-- Quotas: what a customer holds now (running environments' allocations and
-- the count of live environments) against its customer-wide quota. The
-- alerter evaluates metric quota.used_pct from this view.
CREATE VIEW gpuwatch_quota_usage AS
WITH used AS (
    SELECT e.customer_id,
           sum(e.cpu) FILTER (WHERE e.status = 'running')::numeric AS cpu,
           sum(e.memory) FILTER (WHERE e.status = 'running')::numeric AS memory,
           sum(e.gpu) FILTER (WHERE e.status = 'running')::numeric AS gpu,
           count(*) FILTER (WHERE e.status <> 'deleted')::numeric AS environments
    FROM environments e
    WHERE e.deleted_at IS NULL
    GROUP BY e.customer_id
), pairs AS (
    SELECT q.customer_id, r.resource_type,
           CASE r.resource_type
               WHEN 'cpu' THEN coalesce(u.cpu, 0)
               WHEN 'memory' THEN coalesce(u.memory, 0)
               WHEN 'gpu' THEN coalesce(u.gpu, 0)
               ELSE coalesce(u.environments, 0)
           END AS used,
           CASE r.resource_type
               WHEN 'cpu' THEN q.max_cpu::numeric
               WHEN 'memory' THEN q.max_memory::numeric
               WHEN 'gpu' THEN q.max_gpu::numeric
               ELSE q.max_environments::numeric
           END AS quota_limit
    FROM resource_quotas q
    CROSS JOIN (VALUES ('cpu'), ('memory'), ('gpu'), ('environments')) AS r (resource_type)
    LEFT JOIN used u ON u.customer_id = q.customer_id
    WHERE q.workspace_id IS NULL
)
SELECT customer_id::bigint AS customer_id,
       resource_type::text AS resource_type,
       used,
       quota_limit,
       CASE WHEN quota_limit > 0 THEN used * 100 / quota_limit
            WHEN used > 0 THEN 100::numeric
            ELSE 0::numeric END AS used_pct
FROM pairs
WHERE quota_limit IS NOT NULL;

COMMENT ON VIEW gpuwatch_quota_usage IS
    'Per customer and resource: allocation held now vs the customer quota (NULL quota = unlimited, not listed).';

INSERT INTO alert_rules (name, description, metric, scope, reduction, window_seconds,
                         comparison, threshold, for_seconds, severity, labels, annotations)
VALUES ('quota nearly used',
        'A customer holds 90% or more of a resource quota (gpuwatch_quota_usage).',
        'quota.used_pct', '[]', 'last', 300, '>=', 90, 0, 'warning',
        '{"team": "billing"}',
        '{"summary": "customer {{ $labels.customer_id }} uses {{ $value }}% of its {{ $labels.resource_type }} quota", "runbook": "raise the quota in resource_quotas or ask the customer to release resources"}');
