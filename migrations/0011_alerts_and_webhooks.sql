-- 11 · alerts and webhooks: alert_rules, alert_records, webhooks,
-- webhook_logs.
--
-- alert_rules: one rule is metric + scope (a JSON array of label matchers on
-- host, GPU, environment, customer) + reduction over window_seconds +
-- comparison with threshold, held for for_seconds before firing. Names are
-- unique among live rules only, so a deleted rule's name can be reused. No
-- default rules are inserted here; a later migration does that.
--
-- alert_records persists the state machine (pending -> firing -> resolved,
-- and nodata for a silent series) so a restart neither re-fires nor forgets.
-- One row per alert instance; a series is (rule_id, fingerprint of its
-- labels). The partial unique index allows at most one open row (pending,
-- firing or nodata) per series, so two alerter replicas cannot both open the
-- same alert: the loser gets a unique violation, and an upsert
-- (ON CONFLICT (rule_id, fingerprint) WHERE state IN (...)) can target it.
-- Resolved rows are history and may repeat. CHECKs tie the timestamps to
-- the state: a firing row has fired_at, a resolved row has resolved_at.
--
-- webhooks.secret is stored as given, not hashed: HMAC-SHA256 signing
-- (Standard Webhooks headers) needs the raw secret, and a hash cannot sign.
-- The API must never return it.
--
-- webhook_logs has no FK to webhooks: delivery logs must outlive the webhook
-- (and its hard deletion). notification_id is the outbox notification's
-- idempotency id (sent to the receiver as the webhook-id header), not
-- notifications.id; every attempt of one delivery shares it.

CREATE TABLE alert_rules (
    id                      BIGSERIAL PRIMARY KEY,
    name                    VARCHAR(128) NOT NULL,
    description             TEXT,
    metric                  VARCHAR(64) NOT NULL,
    scope                   JSONB NOT NULL DEFAULT '[]',
    reduction               VARCHAR(8) NOT NULL DEFAULT 'avg',
    window_seconds          INT NOT NULL DEFAULT 60,
    comparison              VARCHAR(2) NOT NULL,
    threshold               double precision NOT NULL,
    for_seconds             INT NOT NULL DEFAULT 0,
    keep_firing_for_seconds INT NOT NULL DEFAULT 0,
    severity                VARCHAR(16) NOT NULL DEFAULT 'warning',
    labels                  JSONB NOT NULL DEFAULT '{}',
    annotations             JSONB NOT NULL DEFAULT '{}',
    repeat_interval_seconds INT NOT NULL DEFAULT 14400,
    channels                JSONB NOT NULL DEFAULT '[]',
    enabled                 BOOLEAN NOT NULL DEFAULT true,
    created_by              VARCHAR(128),
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    deleted_at              timestamptz,
    CONSTRAINT chk_alert_rules_reduction CHECK (reduction IN ('avg', 'min', 'max', 'last')),
    CONSTRAINT chk_alert_rules_comparison CHECK (comparison IN ('>', '>=', '<', '<=', '==', '!=')),
    CONSTRAINT chk_alert_rules_severity CHECK (severity IN ('info', 'warning', 'critical')),
    CONSTRAINT chk_alert_rules_durations CHECK (
        window_seconds > 0 AND for_seconds >= 0 AND keep_firing_for_seconds >= 0
        AND repeat_interval_seconds > 0
    ),
    CONSTRAINT chk_alert_rules_json_shapes CHECK (
        jsonb_typeof(scope) = 'array' AND jsonb_typeof(channels) = 'array'
        AND jsonb_typeof(labels) = 'object' AND jsonb_typeof(annotations) = 'object'
    )
);

CREATE UNIQUE INDEX uq_alert_rules_name_live ON alert_rules (name) WHERE deleted_at IS NULL;
-- What the evaluator loads every cycle.
CREATE INDEX idx_alert_rules_enabled ON alert_rules (metric) WHERE enabled AND deleted_at IS NULL;
CREATE INDEX idx_alert_rules_labels ON alert_rules USING GIN (labels);

CREATE TRIGGER trg_alert_rules_updated_at BEFORE UPDATE ON alert_rules
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE alert_rules IS 'Alert rules: metric, scope, reduction, threshold, for-duration, severity, channels.';

CREATE TABLE alert_records (
    id                BIGSERIAL PRIMARY KEY,
    rule_id           BIGINT NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
    fingerprint       VARCHAR(64) NOT NULL,
    state             VARCHAR(16) NOT NULL,
    severity          VARCHAR(16) NOT NULL,
    value             double precision,
    labels            JSONB NOT NULL DEFAULT '{}',
    annotations       JSONB NOT NULL DEFAULT '{}',
    started_at        timestamptz NOT NULL,
    fired_at          timestamptz,
    resolved_at       timestamptz,
    last_evaluated_at timestamptz,
    last_notified_at  timestamptz,
    acknowledged_by   VARCHAR(128),
    acknowledged_at   timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chk_alert_records_state CHECK (state IN ('pending', 'firing', 'resolved', 'nodata')),
    CONSTRAINT chk_alert_records_severity CHECK (severity IN ('info', 'warning', 'critical')),
    CONSTRAINT chk_alert_records_fired_at CHECK (state <> 'firing' OR fired_at IS NOT NULL),
    CONSTRAINT chk_alert_records_resolved_at CHECK (state <> 'resolved' OR resolved_at IS NOT NULL),
    CONSTRAINT chk_alert_records_json_shapes CHECK (
        jsonb_typeof(labels) = 'object' AND jsonb_typeof(annotations) = 'object'
    )
);

CREATE UNIQUE INDEX uq_alert_records_open
    ON alert_records (rule_id, fingerprint) WHERE state IN ('pending', 'firing', 'nodata');
CREATE INDEX idx_alert_records_state ON alert_records (state, started_at DESC);
-- A rule's history, and the cascade when a rule is hard-deleted.
CREATE INDEX idx_alert_records_rule_id ON alert_records (rule_id, started_at DESC);
CREATE INDEX idx_alert_records_labels ON alert_records USING GIN (labels);

CREATE TRIGGER trg_alert_records_updated_at BEFORE UPDATE ON alert_records
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE alert_records IS 'Alert instances per rule and series, with their persisted state.';

CREATE TABLE webhooks (
    id           BIGSERIAL PRIMARY KEY,
    name         VARCHAR(128) NOT NULL,
    url          VARCHAR(2048) NOT NULL,
    secret       VARCHAR(256),
    headers      JSONB NOT NULL DEFAULT '{}',
    filters      JSONB NOT NULL DEFAULT '{}',
    enabled      BOOLEAN NOT NULL DEFAULT true,
    timeout_ms   INT NOT NULL DEFAULT 10000,
    max_attempts INT NOT NULL DEFAULT 8,
    created_by   VARCHAR(128),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    CONSTRAINT chk_webhooks_timeout_ms CHECK (timeout_ms > 0),
    CONSTRAINT chk_webhooks_max_attempts CHECK (max_attempts >= 1),
    CONSTRAINT chk_webhooks_json_shapes CHECK (
        jsonb_typeof(headers) = 'object' AND jsonb_typeof(filters) = 'object'
    )
);

CREATE INDEX idx_webhooks_live ON webhooks (name) WHERE deleted_at IS NULL;

CREATE TRIGGER trg_webhooks_updated_at BEFORE UPDATE ON webhooks
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE webhooks IS 'Webhook endpoints that receive alert notifications, signed with HMAC-SHA256.';

CREATE TABLE webhook_logs (
    id              BIGSERIAL PRIMARY KEY,
    webhook_id      BIGINT,
    notification_id UUID NOT NULL,
    attempt         INT NOT NULL,
    request_url     VARCHAR(2048),
    request_body    JSONB,
    status_code     INT,
    response_body   TEXT,
    latency_ms      INT,
    error           TEXT,
    succeeded       BOOLEAN NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chk_webhook_logs_attempt CHECK (attempt >= 1),
    CONSTRAINT chk_webhook_logs_latency_ms CHECK (latency_ms IS NULL OR latency_ms >= 0)
);

CREATE INDEX idx_webhook_logs_webhook ON webhook_logs (webhook_id, created_at DESC);
CREATE INDEX idx_webhook_logs_notification_id ON webhook_logs (notification_id);

COMMENT ON TABLE webhook_logs IS 'One row per webhook delivery attempt, kept after the webhook is gone.';
