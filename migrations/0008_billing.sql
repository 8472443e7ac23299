-- 08 · billing: invoices, billing_records.
--
-- Money is NUMERIC, never a float. Seed 004 gives unit_price and amount as
-- DECIMAL(10,4) and quantity as FLOAT; that is too coarse: a CPU core-hour
-- at 0.05 is 0.0000138... per second, and amount = seconds x price / 3600
-- must be kept at full precision until the one rounding step on the invoice.
-- So unit_price is NUMERIC(20,10) per unit-hour, amount NUMERIC(24,10)
-- (never rounded here), quantity NUMERIC(20,6) units (e.g. 4 GPUs, memory in
-- GiB), usage_seconds NUMERIC(20,3). Invoices hold the rounded figures,
-- NUMERIC(20,2).
--
-- billing_records is append-only: the meter writes one row per environment,
-- resource and closed period; the only later write is setting invoice_id when
-- the record is invoiced. A change to an already invoiced period is a new row
-- with is_correction = true (pointing at the row it corrects through
-- corrects_id) that lands on the next invoice; only correction rows may carry
-- negative quantities or amounts. The guard against double billing (a unique
-- key and an exclusion constraint on overlapping [start_time, end_time) per
-- environment and resource, needing btree_gist) is added by a later billing
-- migration, not here.
--
-- env_id is a logical reference (no physical FK, as 004 lists none): a
-- billing record must survive whatever happens to the environment row.
-- customer_id keeps 004's ON DELETE CASCADE; invoices use RESTRICT, so a
-- customer with invoices cannot be deleted at all (customers are soft-deleted).

CREATE TABLE invoices (
    id             BIGSERIAL PRIMARY KEY,
    invoice_number VARCHAR(64) NOT NULL,
    customer_id    BIGINT NOT NULL REFERENCES customers (id) ON DELETE RESTRICT,
    period_start   timestamptz NOT NULL,
    period_end     timestamptz NOT NULL,
    currency       CHAR(3) NOT NULL DEFAULT 'CNY',
    subtotal       NUMERIC(20,2) NOT NULL DEFAULT 0,
    tax            NUMERIC(20,2) NOT NULL DEFAULT 0,
    total          NUMERIC(20,2) NOT NULL DEFAULT 0,
    status         VARCHAR(20) NOT NULL DEFAULT 'draft',
    issued_at      timestamptz,
    due_at         timestamptz,
    paid_at        timestamptz,
    lines          JSONB NOT NULL DEFAULT '[]',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uq_invoices_invoice_number UNIQUE (invoice_number),
    CONSTRAINT uq_invoices_customer_period UNIQUE (customer_id, period_start, period_end, currency),
    CONSTRAINT chk_invoices_status CHECK (status IN ('draft', 'issued', 'paid', 'void')),
    CONSTRAINT chk_invoices_period CHECK (period_end > period_start),
    CONSTRAINT chk_invoices_currency CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT chk_invoices_total CHECK (total = subtotal + tax),
    CONSTRAINT chk_invoices_issued_at CHECK (status = 'draft' OR issued_at IS NOT NULL),
    CONSTRAINT chk_invoices_paid_at CHECK (status <> 'paid' OR paid_at IS NOT NULL),
    CONSTRAINT chk_invoices_lines_array CHECK (jsonb_typeof(lines) = 'array')
);

CREATE INDEX idx_invoices_status ON invoices (status);
CREATE INDEX idx_invoices_period_start ON invoices (period_start DESC);

CREATE TRIGGER trg_invoices_updated_at BEFORE UPDATE ON invoices
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE invoices IS 'Monthly invoices per customer and currency, with rounded totals and lines.';

CREATE TABLE billing_records (
    id            BIGSERIAL PRIMARY KEY,
    customer_id   BIGINT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    env_id        VARCHAR(64),
    resource_type VARCHAR(32) NOT NULL,
    gpu_model     VARCHAR(128),
    quantity      NUMERIC(20,6) NOT NULL,
    usage_seconds NUMERIC(20,3) NOT NULL,
    unit_price    NUMERIC(20,10) NOT NULL,
    amount        NUMERIC(24,10) NOT NULL,
    currency      CHAR(3) NOT NULL DEFAULT 'CNY',
    start_time    timestamptz NOT NULL,
    end_time      timestamptz NOT NULL,
    invoice_id    BIGINT REFERENCES invoices (id),
    is_correction BOOLEAN NOT NULL DEFAULT false,
    corrects_id   BIGINT REFERENCES billing_records (id),
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chk_billing_records_resource_type
        CHECK (resource_type IN ('cpu', 'memory', 'gpu', 'storage')),
    CONSTRAINT chk_billing_records_period CHECK (end_time > start_time),
    CONSTRAINT chk_billing_records_currency CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT chk_billing_records_unit_price CHECK (unit_price >= 0),
    CONSTRAINT chk_billing_records_non_negative
        CHECK (is_correction OR (quantity >= 0 AND usage_seconds >= 0 AND amount >= 0)),
    CONSTRAINT chk_billing_records_corrects CHECK (corrects_id IS NULL OR is_correction)
);

CREATE INDEX idx_billing_records_customer_id ON billing_records (customer_id);
CREATE INDEX idx_billing_records_env_id ON billing_records (env_id);
CREATE INDEX idx_billing_records_start_time ON billing_records (start_time DESC);
-- Serves the invoice run ("this customer's records not yet invoiced") ...
CREATE INDEX idx_billing_records_uninvoiced
    ON billing_records (customer_id, start_time) WHERE invoice_id IS NULL;
-- ... an invoice's lines, and the FK check when an invoice row is deleted.
CREATE INDEX idx_billing_records_invoice_id
    ON billing_records (invoice_id) WHERE invoice_id IS NOT NULL;
CREATE INDEX idx_billing_records_corrects_id
    ON billing_records (corrects_id) WHERE corrects_id IS NOT NULL;

COMMENT ON TABLE billing_records IS 'Append-only metered usage per environment, resource and period, at full precision.';
