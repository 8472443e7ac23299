-- 18 · alerting: what the alerter needs beyond 0011's alert_rules,
-- alert_records, webhooks and webhook_logs.
--
-- alert_rules gains group_by (the labels its alerts are grouped on for
-- notification, as Alertmanager's route group_by). Channels stay 0011's
-- JSON array: {"type": "webhook", "webhook_id": N} or {"type": "email",
-- "to": ["a@b"]}; an empty array means every enabled webhook whose filters
-- match, plus the configured default e-mail recipients.
--
-- alert_records gains the notification bookkeeping: group_key (the group the
-- alert belongs to), notified_status (what the receivers were last told:
-- NULL never, 'firing' or 'resolved'; a resolved notice is due exactly when
-- state = 'resolved' and notified_status = 'firing'), keep_firing_since
-- (when the condition went false on a firing alert held by keep_firing_for)
-- and muted_by (the silence or inhibition rule suppressing it, for display).
--
-- alert_groups is the notification policy's persistent state, one row per
-- group: when it may flush next (group_wait, then group_interval) and when
-- it last notified (repeat_interval). Evaluation and flushing run in one
-- transaction under an advisory lock, so replicas take turns and a restart
-- resumes exactly where the last committed cycle left off.
--
-- alert_outbox holds one row per (group flush, channel), written in the same
-- transaction as the state change. Its id is the idempotency key: the
-- webhook-id header, the e-mail Message-ID and webhook_logs.notification_id.
-- Workers claim rows with FOR UPDATE SKIP LOCKED and hold the row lock while
-- sending, so replicas never send one row twice; attempts counts toward
-- max_attempts (reset by a replay), total_attempts numbers webhook_logs rows.
-- status 'dead' is the dead letter: out of attempts or refused with a final
-- 4xx; admin replay puts it back to 'pending'.
--
-- silences and inhibit_rules use matchers [{"name": .., "value": ..,
-- "op": "=" | "!="}] on alert labels.

ALTER TABLE alert_rules ADD COLUMN group_by JSONB NOT NULL DEFAULT '["alertname"]';
ALTER TABLE alert_rules ADD CONSTRAINT chk_alert_rules_group_by CHECK (jsonb_typeof(group_by) = 'array');

ALTER TABLE alert_records ADD COLUMN group_key TEXT;
ALTER TABLE alert_records ADD COLUMN notified_status VARCHAR(16);
ALTER TABLE alert_records ADD COLUMN keep_firing_since timestamptz;
ALTER TABLE alert_records ADD COLUMN muted_by TEXT;
ALTER TABLE alert_records ADD CONSTRAINT chk_alert_records_notified_status
    CHECK (notified_status IS NULL OR notified_status IN ('firing', 'resolved'));

-- What every flush reads: alerts that are, or must be told they no longer are, firing.
CREATE INDEX idx_alert_records_notifiable ON alert_records (group_key)
    WHERE state IN ('firing', 'nodata') OR (state = 'resolved' AND notified_status = 'firing');

CREATE TABLE alert_groups (
    group_key         TEXT PRIMARY KEY,
    group_labels      JSONB NOT NULL DEFAULT '{}',
    channels          JSONB NOT NULL DEFAULT '[]',
    next_flush_at     timestamptz NOT NULL,
    last_notified_at  timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chk_alert_groups_json_shapes CHECK (
        jsonb_typeof(group_labels) = 'object' AND jsonb_typeof(channels) = 'array'
    )
);

CREATE TRIGGER trg_alert_groups_updated_at BEFORE UPDATE ON alert_groups
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE alert_groups IS 'Notification groups of the alerter: group_wait/group_interval/repeat_interval state.';

CREATE TABLE alert_outbox (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    channel         VARCHAR(16) NOT NULL,
    webhook_id      BIGINT,
    email_to        JSONB NOT NULL DEFAULT '[]',
    group_key       TEXT NOT NULL,
    status          VARCHAR(16) NOT NULL DEFAULT 'pending',
    payload         JSONB NOT NULL,
    attempts        INT NOT NULL DEFAULT 0,
    total_attempts  INT NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      TEXT,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chk_alert_outbox_channel CHECK (channel IN ('webhook', 'email')),
    CONSTRAINT chk_alert_outbox_status CHECK (status IN ('pending', 'delivered', 'dead')),
    CONSTRAINT chk_alert_outbox_target CHECK (
        (channel = 'webhook' AND webhook_id IS NOT NULL)
        OR (channel = 'email' AND jsonb_typeof(email_to) = 'array' AND jsonb_array_length(email_to) > 0)
    ),
    CONSTRAINT chk_alert_outbox_delivered_at CHECK (status <> 'delivered' OR delivered_at IS NOT NULL)
);

-- The workers' claim query: due pending rows, oldest first.
CREATE INDEX idx_alert_outbox_due ON alert_outbox (next_attempt_at) WHERE status = 'pending';
CREATE INDEX idx_alert_outbox_status ON alert_outbox (status, created_at DESC);

CREATE TRIGGER trg_alert_outbox_updated_at BEFORE UPDATE ON alert_outbox
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE alert_outbox IS 'Alert notifications to deliver, one per group flush and channel; id is the idempotency key.';

CREATE TABLE silences (
    id         BIGSERIAL PRIMARY KEY,
    matchers   JSONB NOT NULL,
    starts_at  timestamptz NOT NULL DEFAULT now(),
    ends_at    timestamptz NOT NULL,
    created_by VARCHAR(128) NOT NULL,
    comment    TEXT NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz,
    CONSTRAINT chk_silences_matchers CHECK (jsonb_typeof(matchers) = 'array' AND jsonb_array_length(matchers) > 0),
    CONSTRAINT chk_silences_range CHECK (ends_at > starts_at)
);

CREATE INDEX idx_silences_live ON silences (ends_at) WHERE deleted_at IS NULL;

CREATE TRIGGER trg_silences_updated_at BEFORE UPDATE ON silences
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE silences IS 'Silences: alerts matching every matcher between starts_at and ends_at are not notified.';

CREATE TABLE inhibit_rules (
    id              BIGSERIAL PRIMARY KEY,
    name            VARCHAR(128) NOT NULL UNIQUE,
    source_matchers JSONB NOT NULL,
    target_matchers JSONB NOT NULL,
    equal           JSONB NOT NULL DEFAULT '[]',
    enabled         BOOLEAN NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chk_inhibit_rules_json_shapes CHECK (
        jsonb_typeof(source_matchers) = 'array' AND jsonb_typeof(target_matchers) = 'array'
        AND jsonb_typeof(equal) = 'array'
    )
);

CREATE TRIGGER trg_inhibit_rules_updated_at BEFORE UPDATE ON inhibit_rules
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE inhibit_rules IS 'While a firing alert matches source_matchers, alerts matching target_matchers with the same equal labels are not notified.';

-- Default rules: seed 004's temperature gauge (warning 80, danger 85 °C),
-- near-full GPU memory, XID errors, silent hosts, full disks.
INSERT INTO alert_rules (name, description, metric, reduction, window_seconds, comparison, threshold,
                         for_seconds, severity, annotations, created_by)
VALUES
    ('GpuTemperatureHigh', 'GPU temperature at or above the UI''s warning level (seed 004: 80 °C).',
     'gpu.temperature', 'avg', 60, '>=', 80, 60, 'warning',
     '{"summary": "GPU {{ $labels.gpu }} on {{ $labels.host }} is at {{ $value }} °C"}', 'migration'),
    ('GpuTemperatureCritical', 'GPU temperature at or above the UI''s danger level (seed 004: 85 °C).',
     'gpu.temperature', 'avg', 60, '>=', 85, 60, 'critical',
     '{"summary": "GPU {{ $labels.gpu }} on {{ $labels.host }} is at {{ $value }} °C"}', 'migration'),
    ('GpuMemoryFull', 'GPU framebuffer memory at or above 95 %.',
     'gpu.memory_usage_percent', 'avg', 60, '>=', 95, 120, 'warning',
     '{"summary": "GPU {{ $labels.gpu }} on {{ $labels.host }} memory is {{ $value }} % used"}', 'migration'),
    ('GpuXidError', 'The driver reported an XID error.',
     'gpu.xid_errors', 'max', 300, '>', 0, 0, 'critical',
     '{"summary": "GPU {{ $labels.gpu }} on {{ $labels.host }} reported {{ $value }} XID samples"}', 'migration'),
    ('HostSilent', 'No heartbeat from the host''s agent for two minutes.',
     'host.heartbeat_age', 'last', 60, '>=', 120, 0, 'critical',
     '{"summary": "host {{ $labels.host }} silent for {{ $value }} s"}', 'migration'),
    ('HostDiskFull', 'Host disk at or above 90 %.',
     'host.disk_usage_percent', 'avg', 300, '>=', 90, 300, 'warning',
     '{"summary": "disk of {{ $labels.host }} is {{ $value }} % used"}', 'migration');

-- A silent host explains its GPUs' alerts (and their no-data): notify the host.
INSERT INTO inhibit_rules (name, source_matchers, target_matchers, equal)
VALUES ('silent host inhibits its GPU alerts',
        '[{"name": "alertname", "op": "=", "value": "HostSilent"}]',
        '[{"name": "scope", "op": "=", "value": "gpu"}]',
        '["host"]'),
       -- One page per hot GPU: at 85 °C the critical alert stands for the warning.
       ('critical temperature inhibits the warning',
        '[{"name": "alertname", "op": "=", "value": "GpuTemperatureCritical"}]',
        '[{"name": "alertname", "op": "=", "value": "GpuTemperatureHigh"}]',
        '["host", "gpu"]');
