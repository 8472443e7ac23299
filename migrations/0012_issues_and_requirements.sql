-- 12 · issues and requirements: issues, requirements, comments.
--
-- issues are support tickets raised by customers (or by staff for them);
-- env_id and host_id point at what the ticket is about, as logical
-- references, so a ticket survives the environment or host it describes.
-- requirements are feature requests; customer_id is nullable and SET NULL
-- on delete, because a request gathers other customers' votes and should
-- outlive its author. Both are soft-deleted.
--
-- comments hang off either kind through (target_type, target_id), a
-- polymorphic reference that no FK can express; the application checks it.

CREATE TABLE issues (
    id          BIGSERIAL PRIMARY KEY,
    uuid        VARCHAR(64) NOT NULL DEFAULT gen_random_uuid()::text,
    customer_id BIGINT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    title       VARCHAR(256) NOT NULL,
    description TEXT,
    status      VARCHAR(20) NOT NULL DEFAULT 'open',
    priority    VARCHAR(20) NOT NULL DEFAULT 'medium',
    category    VARCHAR(64),
    env_id      VARCHAR(64),
    host_id     VARCHAR(64),
    assignee    VARCHAR(128),
    labels      JSONB NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    closed_at   timestamptz,
    deleted_at  timestamptz,
    CONSTRAINT uq_issues_uuid UNIQUE (uuid),
    CONSTRAINT chk_issues_status CHECK (status IN ('open', 'in_progress', 'resolved', 'closed')),
    CONSTRAINT chk_issues_priority CHECK (priority IN ('low', 'medium', 'high', 'urgent')),
    CONSTRAINT chk_issues_labels_object CHECK (jsonb_typeof(labels) = 'object')
);

-- A customer's tickets, and the support queue by status and priority.
CREATE INDEX idx_issues_customer_live
    ON issues (customer_id, status, created_at DESC) WHERE deleted_at IS NULL;
CREATE INDEX idx_issues_queue_live
    ON issues (status, priority, created_at) WHERE deleted_at IS NULL;
CREATE INDEX idx_issues_customer_id ON issues (customer_id);
CREATE INDEX idx_issues_labels ON issues USING GIN (labels);

CREATE TRIGGER trg_issues_updated_at BEFORE UPDATE ON issues
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE issues IS 'Customer support tickets.';

CREATE TABLE requirements (
    id          BIGSERIAL PRIMARY KEY,
    uuid        VARCHAR(64) NOT NULL DEFAULT gen_random_uuid()::text,
    customer_id BIGINT REFERENCES customers (id) ON DELETE SET NULL,
    title       VARCHAR(256) NOT NULL,
    description TEXT,
    status      VARCHAR(20) NOT NULL DEFAULT 'proposed',
    priority    VARCHAR(20) NOT NULL DEFAULT 'medium',
    votes       INT NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    CONSTRAINT uq_requirements_uuid UNIQUE (uuid),
    CONSTRAINT chk_requirements_status
        CHECK (status IN ('proposed', 'accepted', 'in_progress', 'done', 'rejected')),
    CONSTRAINT chk_requirements_priority CHECK (priority IN ('low', 'medium', 'high', 'urgent')),
    CONSTRAINT chk_requirements_votes CHECK (votes >= 0)
);

-- The public board: live requests by status, most voted first.
CREATE INDEX idx_requirements_board_live
    ON requirements (status, votes DESC) WHERE deleted_at IS NULL;
CREATE INDEX idx_requirements_customer_id ON requirements (customer_id);

CREATE TRIGGER trg_requirements_updated_at BEFORE UPDATE ON requirements
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE requirements IS 'Feature requests from customers, with votes.';

CREATE TABLE comments (
    id          BIGSERIAL PRIMARY KEY,
    target_type VARCHAR(20) NOT NULL,
    target_id   BIGINT NOT NULL,
    author_type VARCHAR(20) NOT NULL,
    author_id   VARCHAR(128),
    content     TEXT NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    CONSTRAINT chk_comments_target_type CHECK (target_type IN ('issue', 'requirement')),
    CONSTRAINT chk_comments_author_type CHECK (author_type IN ('customer', 'admin', 'system'))
);

CREATE INDEX idx_comments_target ON comments (target_type, target_id, created_at);

CREATE TRIGGER trg_comments_updated_at BEFORE UPDATE ON comments
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE comments IS 'Comments on issues and requirements.';
