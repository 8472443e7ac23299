-- 09 · training and inference: training_jobs, inference_services.
--
-- training_jobs is modelled on DLWorkspace's MySQL `jobs` table (seed 002),
-- which the collector's dlworkspace source mirrors: same fields in
-- snake_case, job_status with DLWorkspace's values, LONGTEXT JSON columns as
-- JSONB. job_time is DLWorkspace's submit time and last_updated its last
-- status change, whereas created_at/updated_at are this row's own times.
-- Added: the platform's owners (customer_id, workspace_id) and placement
-- (env_id, host_id, gpu_count), started_at/finished_at for on-call and
-- billing. All references here are logical, no physical FKs: jobs are
-- imported from a scheduler that may report a job before its customer,
-- environment or host is known here, and the import must not fail on that.
--
-- inference_services are few and created by the platform itself, so they
-- keep physical FKs: customer (CASCADE, like environments) and the model and
-- version served (SET NULL: deleting a model must not delete the service's
-- history). env_id and host_id are placement and change on redeploy, so
-- they stay logical. Soft delete via deleted_at.

CREATE TABLE training_jobs (
    id                BIGSERIAL PRIMARY KEY,
    job_id            VARCHAR(64) NOT NULL,
    job_name          VARCHAR(1024) NOT NULL,
    user_name         VARCHAR(255) NOT NULL,
    vc_name           VARCHAR(255),
    job_status        VARCHAR(20) NOT NULL DEFAULT 'unapproved',
    job_status_detail JSONB,
    job_type          VARCHAR(255) NOT NULL,
    priority          INT NOT NULL DEFAULT 100,
    job_params        JSONB NOT NULL DEFAULT '{}',
    job_meta          JSONB,
    error_message     TEXT,
    retries           INT NOT NULL DEFAULT 0,
    job_time          timestamptz NOT NULL DEFAULT now(),
    last_updated      timestamptz,
    customer_id       BIGINT,
    workspace_id      BIGINT,
    env_id            VARCHAR(64),
    host_id           VARCHAR(64),
    gpu_count         INT NOT NULL DEFAULT 0,
    started_at        timestamptz,
    finished_at       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uq_training_jobs_job_id UNIQUE (job_id),
    CONSTRAINT chk_training_jobs_job_status CHECK (job_status IN (
        'unapproved', 'queued', 'scheduling', 'running', 'finished', 'failed',
        'pausing', 'paused', 'killing', 'killed', 'error'
    )),
    CONSTRAINT chk_training_jobs_non_negative CHECK (gpu_count >= 0 AND retries >= 0),
    CONSTRAINT chk_training_jobs_finished
        CHECK (finished_at IS NULL OR started_at IS NULL OR finished_at >= started_at)
);

CREATE INDEX idx_training_jobs_job_status ON training_jobs (job_status);
CREATE INDEX idx_training_jobs_customer_id ON training_jobs (customer_id);
CREATE INDEX idx_training_jobs_user_name ON training_jobs (user_name);
CREATE INDEX idx_training_jobs_job_time ON training_jobs (job_time DESC);
CREATE INDEX idx_training_jobs_env_id ON training_jobs (env_id);

CREATE TRIGGER trg_training_jobs_updated_at BEFORE UPDATE ON training_jobs
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE training_jobs IS 'Training jobs mirrored from the cluster scheduler (DLWorkspace jobs table).';

CREATE TABLE inference_services (
    id               BIGSERIAL PRIMARY KEY,
    uuid             VARCHAR(64) NOT NULL DEFAULT gen_random_uuid()::text,
    customer_id      BIGINT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    model_id         BIGINT REFERENCES models (id) ON DELETE SET NULL,
    model_version_id BIGINT REFERENCES model_versions (id) ON DELETE SET NULL,
    env_id           VARCHAR(64),
    host_id          VARCHAR(64),
    name             VARCHAR(128) NOT NULL,
    image            VARCHAR(256),
    status           VARCHAR(20) NOT NULL DEFAULT 'deploying',
    replicas         INT NOT NULL DEFAULT 1,
    gpu_per_replica  INT NOT NULL DEFAULT 0,
    endpoint_url     VARCHAR(512),
    port             INT,
    config           JSONB NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    CONSTRAINT uq_inference_services_uuid UNIQUE (uuid),
    CONSTRAINT chk_inference_services_status
        CHECK (status IN ('deploying', 'running', 'stopped', 'failed')),
    CONSTRAINT chk_inference_services_non_negative
        CHECK (replicas >= 0 AND gpu_per_replica >= 0),
    CONSTRAINT chk_inference_services_port CHECK (port IS NULL OR port BETWEEN 1 AND 65535)
);

CREATE INDEX idx_inference_services_customer_live
    ON inference_services (customer_id, status) WHERE deleted_at IS NULL;
CREATE INDEX idx_inference_services_customer_id ON inference_services (customer_id);
CREATE INDEX idx_inference_services_model_id ON inference_services (model_id);
CREATE INDEX idx_inference_services_model_version_id ON inference_services (model_version_id);

CREATE TRIGGER trg_inference_services_updated_at BEFORE UPDATE ON inference_services
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE inference_services IS 'Model-serving deployments with their replicas and endpoint.';
