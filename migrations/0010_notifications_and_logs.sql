-- 10 · notifications and logs: notifications, audit_logs.
--
-- notifications are in-app messages shown to a customer (quota reached,
-- environment failed, invoice issued). They are not the alerter's outbox:
-- alert deliveries to on-call staff are queued elsewhere and logged in
-- webhook_logs. A message changes once, when it is read, and read_at records
-- that, so the table has no updated_at.
--
-- audit_logs has no foreign keys on purpose: the audit trail must outlive
-- the customers, hosts and rules it describes, and must never block or
-- cascade with their deletion. actor_id and resource_id are strings because
-- the platform's ids are both serials and strings ("env-abc123").

CREATE TABLE notifications (
    id           BIGSERIAL PRIMARY KEY,
    customer_id  BIGINT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    type         VARCHAR(64) NOT NULL,
    level        VARCHAR(20) NOT NULL DEFAULT 'info',
    title        VARCHAR(256) NOT NULL,
    content      TEXT,
    related_type VARCHAR(64),
    related_id   VARCHAR(64),
    is_read      BOOLEAN NOT NULL DEFAULT false,
    read_at      timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chk_notifications_level CHECK (level IN ('info', 'warning', 'error')),
    CONSTRAINT chk_notifications_read_at CHECK (is_read OR read_at IS NULL)
);

CREATE INDEX idx_notifications_customer_unread
    ON notifications (customer_id, is_read, created_at DESC);

COMMENT ON TABLE notifications IS 'In-app messages to customers, with read state.';

CREATE TABLE audit_logs (
    id            BIGSERIAL PRIMARY KEY,
    actor_type    VARCHAR(20) NOT NULL,
    actor_id      VARCHAR(128),
    action        VARCHAR(128) NOT NULL,
    resource_type VARCHAR(64) NOT NULL,
    resource_id   VARCHAR(128),
    details       JSONB NOT NULL DEFAULT '{}',
    ip_address    VARCHAR(64),
    user_agent    TEXT,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chk_audit_logs_actor_type CHECK (actor_type IN ('customer', 'admin', 'system', 'token'))
);

CREATE INDEX idx_audit_logs_resource ON audit_logs (resource_type, resource_id);
CREATE INDEX idx_audit_logs_created_at ON audit_logs (created_at DESC);
CREATE INDEX idx_audit_logs_actor ON audit_logs (actor_type, actor_id);
CREATE INDEX idx_audit_logs_details ON audit_logs USING GIN (details);

COMMENT ON TABLE audit_logs IS 'Append-only record of who did what to which resource.';
