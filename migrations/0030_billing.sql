-- 30 · billing: credit notes, tax, and where corrections of invoiced months go.
--
-- A correction of a month already invoiced goes on the customer's next
-- regular invoice. A customer with no regular invoice in the run that would
-- carry it, and money to get back, gets a credit note instead: the same
-- table (one immutability and lines-sum rule for every document), its own
-- document type and number series, a negative total and no due date.
--
-- invoiced_through is the end of the last month the invoice run has cut:
-- records before it that are not on a document yet are carried by the next
-- month, so a report of a month that was cut never changes.

ALTER TABLE invoices
    ADD COLUMN document_type VARCHAR(16) NOT NULL DEFAULT 'invoice',
    ADD COLUMN tax_rate NUMERIC(9,6) NOT NULL DEFAULT 0,
    ADD CONSTRAINT chk_invoices_document_type CHECK (document_type IN ('invoice', 'credit_note')),
    ADD CONSTRAINT chk_invoices_tax_rate CHECK (tax_rate >= 0 AND tax_rate < 1);

-- NOT VALID: documents cut before this migration keep what they were.
ALTER TABLE invoices
    ADD CONSTRAINT chk_invoices_credit_note CHECK (
        (document_type = 'invoice' AND total >= 0)
        OR (document_type = 'credit_note' AND total <= 0 AND due_at IS NULL)) NOT VALID;

-- One regular invoice per customer, month and currency; credit notes are
-- numbered, not keyed by month (a month may need more than one).
ALTER TABLE invoices DROP CONSTRAINT uq_invoices_customer_period;
CREATE UNIQUE INDEX uq_invoices_customer_period
    ON invoices (customer_id, period_start, period_end, currency) WHERE document_type = 'invoice';

CREATE SEQUENCE billing_credit_note_number_seq;

COMMENT ON COLUMN invoices.document_type IS
    'invoice (a bill, due on due_at) or credit_note (money owed to the customer: negative total, no due date, CN- numbers).';
COMMENT ON COLUMN invoices.tax_rate IS
    'The tax rate applied once to the subtotal by gpuwatch_round_money (0.06 = 6%).';

-- Tax per customer; customers without a row pay billing.default_tax_rate.
CREATE TABLE billing_customer_settings (
    customer_id BIGINT PRIMARY KEY REFERENCES customers (id) ON DELETE CASCADE,
    tax_rate    NUMERIC(9,6),
    currency    CHAR(3),
    CONSTRAINT chk_billing_customer_settings_tax_rate CHECK (tax_rate IS NULL OR (tax_rate >= 0 AND tax_rate < 1)),
    CONSTRAINT chk_billing_customer_settings_currency CHECK (currency IS NULL OR currency ~ '^[A-Z]{3}$')
);

COMMENT ON TABLE billing_customer_settings IS
    'Per customer: tax rate and currency of its invoices, where they differ from the [billing] defaults.';

ALTER TABLE billing_meter_state ADD COLUMN invoiced_through timestamptz;
COMMENT ON COLUMN billing_meter_state.invoiced_through IS
    'End of the last month the invoice run cut; records before it not yet on a document are carried by the next month.';
UPDATE billing_meter_state SET invoiced_through =
    (SELECT max(period_end) FROM invoices WHERE status <> 'void');

-- A price may leave its currency to the customer (billing_customer_settings)
-- or billing.default_currency.
ALTER TABLE billing_prices ALTER COLUMN currency DROP NOT NULL;
