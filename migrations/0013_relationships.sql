-- 13 · relationships and artifacts: artifacts, dataset_usage.
--
-- artifacts are the outputs of training jobs (checkpoints, logs, exported
-- models). They belong to the customer (CASCADE, like datasets); the job
-- link is SET NULL so an artifact outlives the job row it came from. env_id
-- is a logical reference. An artifact is written once, so no updated_at.
--
-- dataset_usage records each mount of a dataset into an environment, kept
-- after unmount (unmounted_at) so storage billing and "who used this data"
-- can look back. Both sides cascade, as the mount means nothing without
-- either. dataset_version_id NULL means the dataset's latest content; a
-- deleted version turns into NULL rather than erasing the mount history.
-- customer_id is denormalised from the environment for per-customer queries.

CREATE TABLE artifacts (
    id              BIGSERIAL PRIMARY KEY,
    uuid            VARCHAR(64) NOT NULL DEFAULT gen_random_uuid()::text,
    customer_id     BIGINT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    training_job_id BIGINT REFERENCES training_jobs (id) ON DELETE SET NULL,
    env_id          VARCHAR(64),
    name            VARCHAR(256) NOT NULL,
    artifact_type   VARCHAR(20) NOT NULL DEFAULT 'other',
    storage_path    VARCHAR(512) NOT NULL,
    size            BIGINT NOT NULL DEFAULT 0,
    checksum        VARCHAR(128),
    metadata        JSONB NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uq_artifacts_uuid UNIQUE (uuid),
    CONSTRAINT chk_artifacts_artifact_type
        CHECK (artifact_type IN ('checkpoint', 'model', 'log', 'other')),
    CONSTRAINT chk_artifacts_size CHECK (size >= 0)
);

CREATE INDEX idx_artifacts_training_job_id ON artifacts (training_job_id);
CREATE INDEX idx_artifacts_customer ON artifacts (customer_id, created_at DESC);
CREATE INDEX idx_artifacts_env_id ON artifacts (env_id);

COMMENT ON TABLE artifacts IS 'Outputs of training jobs: checkpoints, logs, exported models.';

CREATE TABLE dataset_usage (
    id                 BIGSERIAL PRIMARY KEY,
    dataset_id         BIGINT NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    dataset_version_id BIGINT REFERENCES dataset_versions (id) ON DELETE SET NULL,
    env_id             VARCHAR(64) NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    customer_id        BIGINT NOT NULL,
    mount_path         VARCHAR(512) NOT NULL,
    access_mode        VARCHAR(2) NOT NULL DEFAULT 'ro',
    mounted_at         timestamptz NOT NULL DEFAULT now(),
    unmounted_at       timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chk_dataset_usage_access_mode CHECK (access_mode IN ('ro', 'rw')),
    CONSTRAINT chk_dataset_usage_unmounted_at
        CHECK (unmounted_at IS NULL OR unmounted_at >= mounted_at)
);

CREATE INDEX idx_dataset_usage_env_id ON dataset_usage (env_id);
CREATE INDEX idx_dataset_usage_dataset_id ON dataset_usage (dataset_id);
CREATE INDEX idx_dataset_usage_dataset_version_id ON dataset_usage (dataset_version_id);
CREATE INDEX idx_dataset_usage_customer_id ON dataset_usage (customer_id);

COMMENT ON TABLE dataset_usage IS 'Mounts of datasets into environments, current and past.';
