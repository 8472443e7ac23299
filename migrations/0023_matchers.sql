-- One matcher language (issue 12): a webhook's filters may be a list of
-- matchers [{"name", "op", "value"}] with op "=", "!=", "=~" or "!~", as rule
-- scopes, silences and inhibition rules are, besides the older object of
-- label -> value or [values], which is kept as it was given.

ALTER TABLE webhooks DROP CONSTRAINT chk_webhooks_json_shapes;
ALTER TABLE webhooks ADD CONSTRAINT chk_webhooks_json_shapes CHECK (
    jsonb_typeof(headers) = 'object' AND jsonb_typeof(filters) IN ('object', 'array')
);

COMMENT ON COLUMN webhooks.filters IS 'For rules without channels: matchers on the group labels, a list [{"name", "op", "value"}] (op =, !=, =~, !~; regexes anchored) or an object of label -> value or [values].';
COMMENT ON COLUMN silences.matchers IS 'Matchers [{"name", "op", "value"}] (op =, !=, =~, !~; regexes anchored); at least one.';
COMMENT ON COLUMN alert_rules.scope IS 'Matchers [{"name", "op", "value"}] (op =, !=, =~, !~; regexes anchored) on series labels; empty selects every series.';
