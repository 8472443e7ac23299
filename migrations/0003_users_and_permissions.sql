-- 03 · users and permissions: customers, workspaces, workspace_members,
-- resource_quotas.
--
-- Columns follow seed 004 §5. Every column that 004 gives a default is also
-- NOT NULL (a NULL status would slip past its CHECK). 004's idx_username,
-- idx_email and workspace_members' idx_workspace_id are not created: the
-- UNIQUE constraints already index those columns (workspace_id as the leading
-- column of UNIQUE (workspace_id, customer_id)).
--
-- customers, workspaces: soft delete (deleted_at). username and email stay
-- unique across deleted rows too, as 004 says: a deleted account's name is
-- not handed to someone else.
--
-- uuid columns default to a random UUID so tests and tools can insert rows
-- without inventing one; the API may still supply its own ("cust-abc123").
--
-- resource_quotas: one row per customer (workspace_id NULL) and at most one
-- per (customer, workspace). A NULL limit means "no limit". UNIQUE NULLS NOT
-- DISTINCT would say this in one line but needs PostgreSQL 15, so two
-- partial unique indexes do it on 14 as well.

CREATE TABLE customers (
    id             BIGSERIAL PRIMARY KEY,
    uuid           VARCHAR(64) NOT NULL DEFAULT gen_random_uuid()::text,
    username       VARCHAR(128) NOT NULL,
    email          VARCHAR(256) NOT NULL,
    phone          VARCHAR(32),
    password_hash  VARCHAR(256) NOT NULL,
    full_name      VARCHAR(256),
    company        VARCHAR(256),
    account_type   VARCHAR(20) NOT NULL DEFAULT 'individual',
    status         VARCHAR(20) NOT NULL DEFAULT 'active',
    email_verified BOOLEAN NOT NULL DEFAULT false,
    phone_verified BOOLEAN NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz,
    CONSTRAINT uq_customers_uuid UNIQUE (uuid),
    CONSTRAINT uq_customers_username UNIQUE (username),
    CONSTRAINT uq_customers_email UNIQUE (email),
    CONSTRAINT chk_customers_account_type CHECK (account_type IN ('individual', 'enterprise')),
    CONSTRAINT chk_customers_status CHECK (status IN ('active', 'suspended', 'deleted'))
);

CREATE INDEX idx_customers_status ON customers (status);

CREATE TRIGGER trg_customers_updated_at BEFORE UPDATE ON customers
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE customers IS 'Customer accounts (individuals and enterprises) of the GPU cloud.';

CREATE TABLE workspaces (
    id           BIGSERIAL PRIMARY KEY,
    uuid         VARCHAR(64) NOT NULL DEFAULT gen_random_uuid()::text,
    owner_id     BIGINT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    name         VARCHAR(128) NOT NULL,
    description  TEXT,
    type         VARCHAR(20) NOT NULL DEFAULT 'team',
    status       VARCHAR(20) NOT NULL DEFAULT 'active',
    member_count INT NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    CONSTRAINT uq_workspaces_uuid UNIQUE (uuid),
    CONSTRAINT chk_workspaces_type CHECK (type IN ('personal', 'team', 'enterprise')),
    CONSTRAINT chk_workspaces_status CHECK (status IN ('active', 'archived')),
    CONSTRAINT chk_workspaces_member_count CHECK (member_count >= 0)
);

CREATE INDEX idx_workspaces_owner_id ON workspaces (owner_id);
CREATE INDEX idx_workspaces_owner_live ON workspaces (owner_id, name) WHERE deleted_at IS NULL;

CREATE TRIGGER trg_workspaces_updated_at BEFORE UPDATE ON workspaces
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE workspaces IS 'Team workspaces owned by a customer, grouping members and environments.';

CREATE TABLE workspace_members (
    id           BIGSERIAL PRIMARY KEY,
    workspace_id BIGINT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    customer_id  BIGINT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    role         VARCHAR(20) NOT NULL,
    status       VARCHAR(20) NOT NULL DEFAULT 'active',
    joined_at    timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uq_workspace_members_workspace_customer UNIQUE (workspace_id, customer_id),
    CONSTRAINT chk_workspace_members_role CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    CONSTRAINT chk_workspace_members_status CHECK (status IN ('active', 'invited', 'suspended'))
);

CREATE INDEX idx_workspace_members_customer_id ON workspace_members (customer_id);

CREATE TRIGGER trg_workspace_members_updated_at BEFORE UPDATE ON workspace_members
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE workspace_members IS 'Membership and role of a customer in a workspace.';

CREATE TABLE resource_quotas (
    id               BIGSERIAL PRIMARY KEY,
    customer_id      BIGINT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    workspace_id     BIGINT REFERENCES workspaces (id) ON DELETE CASCADE,
    max_cpu          INT,
    max_memory       BIGINT,
    max_gpu          INT,
    max_storage      BIGINT,
    max_environments INT,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chk_resource_quotas_non_negative CHECK (
        (max_cpu IS NULL OR max_cpu >= 0)
        AND (max_memory IS NULL OR max_memory >= 0)
        AND (max_gpu IS NULL OR max_gpu >= 0)
        AND (max_storage IS NULL OR max_storage >= 0)
        AND (max_environments IS NULL OR max_environments >= 0)
    )
);

CREATE UNIQUE INDEX uq_resource_quotas_customer
    ON resource_quotas (customer_id) WHERE workspace_id IS NULL;
CREATE UNIQUE INDEX uq_resource_quotas_customer_workspace
    ON resource_quotas (customer_id, workspace_id) WHERE workspace_id IS NOT NULL;
CREATE INDEX idx_resource_quotas_workspace_id ON resource_quotas (workspace_id);

CREATE TRIGGER trg_resource_quotas_updated_at BEFORE UPDATE ON resource_quotas
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE resource_quotas IS 'Resource limits per customer or per workspace; NULL means unlimited.';
