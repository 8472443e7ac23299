-- Alerting, round two: delivery that survives an outage and a crash.
--
-- An attempt is logged before it is sent: webhook_logs.succeeded is NULL
-- while the outcome is unknown (in flight, or the process died during it),
-- and `outcome` spells the three states out for dashboards and operators.
--
-- Delivery no longer holds the outbox row's lock across the network send.
-- A worker claims a row by committing a lease (next_attempt_at pushed past
-- the send's timeout) together with the attempt's log row, sends, then
-- records the outcome. A crash leaves the log row and, once the lease
-- expires, the row is sent again with the same id.
--
-- retry_since is when the current retry window opened (the first failed
-- attempt since the row was written or replayed): a notification is
-- dead-lettered only once alerter.webhook.retry_duration has passed since.
-- max_attempts is now a ceiling above that window; the old default of 8
-- dead-lettered within minutes, so webhooks still on it move to the new one.
--
-- alert_groups.dead_lettered_at marks a group one of whose notifications
-- was dead-lettered: its next flush re-sends while its alerts still fire,
-- instead of waiting for repeat_interval.

ALTER TABLE webhook_logs ALTER COLUMN succeeded DROP NOT NULL;
ALTER TABLE webhook_logs ADD COLUMN outcome VARCHAR(16) GENERATED ALWAYS AS (
    CASE WHEN succeeded IS NULL THEN 'unknown' WHEN succeeded THEN 'succeeded' ELSE 'failed' END
) STORED;
COMMENT ON COLUMN webhook_logs.outcome IS 'unknown (in flight, or the process died during the attempt), succeeded or failed.';

ALTER TABLE alert_outbox ADD COLUMN retry_since timestamptz;
COMMENT ON COLUMN alert_outbox.retry_since IS 'Start of the current retry window; dead-lettered once alerter.webhook.retry_duration has passed since.';

ALTER TABLE webhooks ALTER COLUMN max_attempts SET DEFAULT 1000;
UPDATE webhooks SET max_attempts = 1000 WHERE max_attempts = 8;

ALTER TABLE alert_groups ADD COLUMN dead_lettered_at timestamptz;
COMMENT ON COLUMN alert_groups.dead_lettered_at IS 'A notification of the group was dead-lettered: re-send at the next flush while it fires.';

-- Alertmanager as a channel: {"type": "alertmanager", "urls": [...]} in a
-- rule's channels. Each cycle posts the rule's firing alerts (at most every
-- alerter.alertmanager_resend) and each resolved one once, to every URL:
-- one outbox row per URL, its target in target_url. am_sent_at and
-- am_status record what Alertmanager was last told about an alert.
ALTER TABLE alert_outbox ADD COLUMN target_url VARCHAR(2048);
ALTER TABLE alert_outbox DROP CONSTRAINT chk_alert_outbox_channel;
ALTER TABLE alert_outbox ADD CONSTRAINT chk_alert_outbox_channel
    CHECK (channel IN ('webhook', 'email', 'alertmanager'));
ALTER TABLE alert_outbox DROP CONSTRAINT chk_alert_outbox_target;
ALTER TABLE alert_outbox ADD CONSTRAINT chk_alert_outbox_target CHECK (
    (channel = 'webhook' AND webhook_id IS NOT NULL)
    OR (channel = 'email' AND jsonb_typeof(email_to) = 'array' AND jsonb_array_length(email_to) > 0)
    OR (channel = 'alertmanager' AND target_url IS NOT NULL)
);

ALTER TABLE alert_records ADD COLUMN am_sent_at timestamptz;
ALTER TABLE alert_records ADD COLUMN am_status VARCHAR(16);
ALTER TABLE alert_records ADD CONSTRAINT chk_alert_records_am_status
    CHECK (am_status IS NULL OR am_status IN ('firing', 'resolved'));

-- Retention (alerter.retention) deletes by age: these are its lookups.
CREATE INDEX idx_webhook_logs_created_at ON webhook_logs (created_at);
CREATE INDEX idx_alert_outbox_delivered_at ON alert_outbox (delivered_at) WHERE status = 'delivered';
CREATE INDEX idx_alert_records_resolved_at ON alert_records (resolved_at) WHERE state = 'resolved';

-- Counters: increase (growth over the window, a reset read as a restart
-- from zero) and rate (that per second).
ALTER TABLE alert_rules DROP CONSTRAINT chk_alert_rules_reduction;
ALTER TABLE alert_rules ADD CONSTRAINT chk_alert_rules_reduction
    CHECK (reduction IN ('avg', 'min', 'max', 'last', 'increase', 'rate'));
