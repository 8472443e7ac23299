-- 05 · environments: environments, port_mappings.
--
-- Columns follow seed 004 §6; columns with a default are also NOT NULL.
-- environments.id is the string id that metric rows and billing records
-- carry ("env-abc123"). Additions:
--   * workspace_id (004 lists it but gives no action): SET NULL, because an
--     environment belongs to its customer first and outlives a workspace.
--   * updated_at, started_at, stopped_at, deleted_at: an environment's row
--     changes all its life. Billing does not trust these columns: it reads a
--     status history that a trigger on this table writes (added by a later
--     billing migration), so a running interval is known to the second.
--   * gpu_model (the billing price key), cgroup_path and container_id (how
--     the collector finds the container's cgroup), labels (alert scopes).
--
-- port_mappings: 004 makes external_port UNIQUE outright, which would keep a
-- released port taken forever (or force deleting the history row). The
-- uniqueness that matters is "one active mapping per port", so it is a
-- partial unique index WHERE status = 'active'; 004's plain index on
-- external_port stays for history lookups.

CREATE TABLE environments (
    id           VARCHAR(64) PRIMARY KEY,
    customer_id  BIGINT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    workspace_id BIGINT REFERENCES workspaces (id) ON DELETE SET NULL,
    host_id      VARCHAR(64) NOT NULL REFERENCES hosts (id) ON DELETE RESTRICT,
    name         VARCHAR(128) NOT NULL,
    image        VARCHAR(256) NOT NULL,
    status       VARCHAR(20) NOT NULL DEFAULT 'creating',
    cpu          INT NOT NULL,
    memory       BIGINT NOT NULL,
    gpu          INT NOT NULL DEFAULT 0,
    ssh_port     INT,
    gpu_model    VARCHAR(128),
    cgroup_path  VARCHAR(512),
    container_id VARCHAR(128),
    labels       JSONB NOT NULL DEFAULT '{}',
    started_at   timestamptz,
    stopped_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    CONSTRAINT chk_environments_status
        CHECK (status IN ('creating', 'running', 'stopping', 'stopped', 'error', 'deleted')),
    CONSTRAINT chk_environments_resources_non_negative
        CHECK (cpu >= 0 AND memory >= 0 AND gpu >= 0),
    CONSTRAINT chk_environments_ssh_port
        CHECK (ssh_port IS NULL OR ssh_port BETWEEN 1 AND 65535),
    CONSTRAINT chk_environments_labels_object CHECK (jsonb_typeof(labels) = 'object')
);

CREATE INDEX idx_environments_customer_id ON environments (customer_id);
CREATE INDEX idx_environments_host_id ON environments (host_id);
CREATE INDEX idx_environments_status ON environments (status);
CREATE INDEX idx_environments_workspace_id ON environments (workspace_id);
CREATE INDEX idx_environments_labels ON environments USING GIN (labels);
-- The customer's environment list and the per-host "what runs here" lookup.
CREATE INDEX idx_environments_customer_live
    ON environments (customer_id, status) WHERE deleted_at IS NULL;
CREATE INDEX idx_environments_host_live
    ON environments (host_id, status) WHERE deleted_at IS NULL;

CREATE TRIGGER trg_environments_updated_at BEFORE UPDATE ON environments
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE environments IS 'Customer development environments (containers) placed on a host.';

CREATE TABLE port_mappings (
    id            BIGSERIAL PRIMARY KEY,
    env_id        VARCHAR(64) NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    service_type  VARCHAR(32) NOT NULL,
    external_port INT NOT NULL,
    internal_port INT NOT NULL,
    status        VARCHAR(20) NOT NULL DEFAULT 'active',
    allocated_at  timestamptz NOT NULL DEFAULT now(),
    released_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chk_port_mappings_service_type CHECK (service_type IN ('ssh', 'rdp', 'jupyter')),
    CONSTRAINT chk_port_mappings_status CHECK (status IN ('active', 'released')),
    CONSTRAINT chk_port_mappings_ports CHECK (
        external_port BETWEEN 1 AND 65535 AND internal_port BETWEEN 1 AND 65535
    )
);

CREATE UNIQUE INDEX uq_port_mappings_external_port_active
    ON port_mappings (external_port) WHERE status = 'active';
CREATE INDEX idx_port_mappings_env_id ON port_mappings (env_id);
CREATE INDEX idx_port_mappings_external_port ON port_mappings (external_port);

CREATE TRIGGER trg_port_mappings_updated_at BEFORE UPDATE ON port_mappings
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE port_mappings IS 'External ports mapped to SSH, RDP or JupyterLab inside an environment.';
