-- Acknowledging an alert, and the alerts each notification is about.
--
-- alert_records.acknowledged_by / acknowledged_at (0011) are set by
-- POST /api/v1/alerts/{id}/acknowledge and cleared by DELETE on it; the
-- notification policy reads them (an acknowledged firing alert is not
-- re-sent at repeat_interval). No schema change is needed for that.
--
-- alert_outbox.alert_ids names the alert_records a notification carries,
-- written by the flush that queues it, so the console can show and link
-- the alerts of a delivery or a dead letter. Rows queued before this
-- migration have none (NULL).

ALTER TABLE alert_outbox ADD COLUMN alert_ids BIGINT[];

COMMENT ON COLUMN alert_outbox.alert_ids IS 'alert_records.id of the alerts the notification carries (NULL before migration 0033).';
COMMENT ON COLUMN alert_records.acknowledged_by IS 'Name of the API token that acknowledged the alert; NULL when not acknowledged.';
