-- 04 · hosts and devices: hosts, gpus.
--
-- Columns follow seed 004 §4.1 and §4.2; columns with a default are also
-- NOT NULL (a NULL status would slip past its CHECK), except ssh_port: a
-- Windows host may have no SSH at all. hosts.id is the agent-chosen string
-- id ("host-abc123"), so an agent can register itself idempotently without
-- a round trip for a serial.
--
-- Additions for the pipeline: labels and tags are NOT NULL with empty
-- defaults, so scope matchers in alert rules never meet NULL; gpus carry
-- labels, pci_bus_id and driver_version (dcgm-exporter's label set needs
-- them) and last_seen_at (the collector's latest sample, for "GPU fell off
-- the bus" alerts). 004's gpus.idx_host_id is not created: UNIQUE (host_id,
-- gpu_index) already has host_id as its leading column.
--
-- gpus.allocated_to names an environment but is a logical reference only:
-- environments are created after this file, and a GPU row must not block
-- or cascade with an environment's lifecycle.

CREATE TABLE hosts (
    id              VARCHAR(64) PRIMARY KEY,
    name            VARCHAR(128) NOT NULL,
    hostname        VARCHAR(256),
    ip_address      VARCHAR(64) NOT NULL,
    public_ip       VARCHAR(64),
    os_type         VARCHAR(20) NOT NULL,
    os_version      VARCHAR(64),
    arch            VARCHAR(20) NOT NULL DEFAULT 'x86_64',
    deployment_mode VARCHAR(20) NOT NULL DEFAULT 'traditional',
    k8s_node_name   VARCHAR(128),
    status          VARCHAR(20) NOT NULL DEFAULT 'offline',
    health_status   VARCHAR(20) NOT NULL DEFAULT 'unknown',
    total_cpu       INT NOT NULL,
    total_memory    BIGINT NOT NULL,
    total_disk      BIGINT,
    total_gpu       INT NOT NULL DEFAULT 0,
    used_cpu        INT NOT NULL DEFAULT 0,
    used_memory     BIGINT NOT NULL DEFAULT 0,
    used_disk       BIGINT NOT NULL DEFAULT 0,
    used_gpu        INT NOT NULL DEFAULT 0,
    ssh_port        INT DEFAULT 22,
    winrm_port      INT,
    agent_port      INT NOT NULL DEFAULT 8080,
    labels          JSONB NOT NULL DEFAULT '{}',
    tags            TEXT[] NOT NULL DEFAULT '{}',
    last_heartbeat  timestamptz,
    registered_at   timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chk_hosts_os_type CHECK (os_type IN ('linux', 'windows')),
    CONSTRAINT chk_hosts_deployment_mode CHECK (deployment_mode IN ('traditional', 'kubernetes')),
    CONSTRAINT chk_hosts_status CHECK (status IN ('online', 'offline', 'maintenance')),
    CONSTRAINT chk_hosts_health_status
        CHECK (health_status IN ('healthy', 'degraded', 'unhealthy', 'unknown')),
    CONSTRAINT chk_hosts_resources_non_negative CHECK (
        total_cpu >= 0 AND total_memory >= 0 AND (total_disk IS NULL OR total_disk >= 0)
        AND total_gpu >= 0 AND used_cpu >= 0 AND used_memory >= 0
        AND used_disk >= 0 AND used_gpu >= 0
    ),
    CONSTRAINT chk_hosts_ports CHECK (
        (ssh_port IS NULL OR ssh_port BETWEEN 1 AND 65535)
        AND (winrm_port IS NULL OR winrm_port BETWEEN 1 AND 65535)
        AND agent_port BETWEEN 1 AND 65535
    ),
    CONSTRAINT chk_hosts_labels_object CHECK (jsonb_typeof(labels) = 'object')
);

CREATE INDEX idx_hosts_os_type ON hosts (os_type);
CREATE INDEX idx_hosts_status ON hosts (status);
CREATE INDEX idx_hosts_deployment_mode ON hosts (deployment_mode);
CREATE INDEX idx_hosts_labels ON hosts USING GIN (labels);

CREATE TRIGGER trg_hosts_updated_at BEFORE UPDATE ON hosts
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE hosts IS 'Physical or virtual GPU hosts (Linux or Windows), one agent each.';

CREATE TABLE gpus (
    id                 BIGSERIAL PRIMARY KEY,
    host_id            VARCHAR(64) NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
    gpu_index          INT NOT NULL,
    uuid               VARCHAR(128),
    name               VARCHAR(128),
    brand              VARCHAR(64),
    architecture       VARCHAR(64),
    memory_total       BIGINT,
    cuda_cores         INT,
    compute_capability VARCHAR(32),
    status             VARCHAR(20) NOT NULL DEFAULT 'available',
    health_status      VARCHAR(20) NOT NULL DEFAULT 'healthy',
    allocated_to       VARCHAR(64),
    allocated_at       timestamptz,
    power_limit        INT,
    temperature_limit  INT,
    labels             JSONB NOT NULL DEFAULT '{}',
    pci_bus_id         VARCHAR(32),
    driver_version     VARCHAR(64),
    last_seen_at       timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uq_gpus_uuid UNIQUE (uuid),
    CONSTRAINT uq_gpus_host_index UNIQUE (host_id, gpu_index),
    CONSTRAINT chk_gpus_status CHECK (status IN ('available', 'allocated', 'maintenance', 'error')),
    CONSTRAINT chk_gpus_health_status CHECK (health_status IN ('healthy', 'degraded', 'error', 'unknown')),
    CONSTRAINT chk_gpus_non_negative CHECK (
        gpu_index >= 0
        AND (memory_total IS NULL OR memory_total >= 0)
        AND (cuda_cores IS NULL OR cuda_cores >= 0)
        AND (power_limit IS NULL OR power_limit >= 0)
    ),
    CONSTRAINT chk_gpus_labels_object CHECK (jsonb_typeof(labels) = 'object')
);

CREATE INDEX idx_gpus_status ON gpus (status);
CREATE INDEX idx_gpus_allocated_to ON gpus (allocated_to);
CREATE INDEX idx_gpus_labels ON gpus USING GIN (labels);

CREATE TRIGGER trg_gpus_updated_at BEFORE UPDATE ON gpus
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE gpus IS 'GPU devices installed in hosts, identified by host and index or by UUID.';
