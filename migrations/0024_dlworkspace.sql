-- 24 · DLWorkspace: training_jobs gets every column of seed 002's `jobs`
-- table (and of upstream DLWorkspace's later version: vcName, lastUpdated),
-- plus the bookkeeping of the sync that mirrors a cluster's MySQL into it.
--
-- A job is identified by (cluster_id, job_id): DLWorkspace's jobIds are
-- unique within one cluster database only. source_id is the MySQL `id`
-- (AUTO_INCREMENT), the cursor of new jobs.
--
-- JSON columns that DLWorkspace keeps as LONGTEXT (jobParams, jobMeta,
-- jobStatusDetail, endpoints) are JSONB where they parse; where they do not,
-- the JSONB column is NULL and the text is kept verbatim in the *_text
-- column beside it, so nothing the source wrote is lost. jobLog is a tail
-- (the sync keeps the last 64 KiB); job_log_bytes is the full length.

ALTER TABLE training_jobs
    ADD COLUMN cluster_id            VARCHAR(64) NOT NULL DEFAULT '',
    ADD COLUMN source_id             BIGINT,
    ADD COLUMN family_token          VARCHAR(64),
    ADD COLUMN is_parent             INT,
    ADD COLUMN job_description_path  TEXT,
    ADD COLUMN job_description       TEXT,
    ADD COLUMN endpoints             JSONB,
    ADD COLUMN endpoints_text        TEXT,
    ADD COLUMN job_params_text       TEXT,
    ADD COLUMN job_meta_text         TEXT,
    ADD COLUMN job_status_detail_text TEXT,
    ADD COLUMN job_log               TEXT,
    ADD COLUMN job_log_bytes         BIGINT,
    ADD COLUMN gpu_type              VARCHAR(128),
    ADD COLUMN job_training_type     VARCHAR(64);

ALTER TABLE training_jobs ALTER COLUMN cluster_id DROP DEFAULT;
-- A jobParams that is not JSON is kept in job_params_text instead.
ALTER TABLE training_jobs ALTER COLUMN job_params DROP NOT NULL;
ALTER TABLE training_jobs DROP CONSTRAINT uq_training_jobs_job_id;
ALTER TABLE training_jobs ADD CONSTRAINT uq_training_jobs_cluster_job UNIQUE (cluster_id, job_id);

-- Each cycle re-reads the jobs not yet final, found here: seed 002's table
-- has no lastUpdated, and upstream DLWorkspace changes jobStatus without
-- touching its lastUpdated.
CREATE INDEX idx_training_jobs_cluster_open ON training_jobs (cluster_id, source_id)
    WHERE job_status NOT IN ('finished', 'failed', 'error', 'killed');
CREATE INDEX idx_training_jobs_cluster_unmapped ON training_jobs (cluster_id, user_name)
    WHERE customer_id IS NULL;

-- Every status a job was seen in, once per change, like
-- environment_status_history. valid_from is the source's lastUpdated where
-- it moved with the status, else the time the sync first saw the status.
CREATE TABLE training_job_status_history (
    id          BIGSERIAL PRIMARY KEY,
    cluster_id  VARCHAR(64) NOT NULL,
    job_id      VARCHAR(64) NOT NULL,
    status      VARCHAR(20) NOT NULL,
    user_name   VARCHAR(255) NOT NULL,
    customer_id BIGINT,
    gpu_count   INT NOT NULL,
    gpu_type    VARCHAR(128),
    valid_from  timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chk_training_job_status_history_second
        CHECK (valid_from = date_trunc('second', valid_from)),
    CONSTRAINT chk_training_job_status_history_status CHECK (status IN (
        'unapproved', 'queued', 'scheduling', 'running', 'finished', 'failed',
        'pausing', 'paused', 'killing', 'killed', 'error'
    ))
);

CREATE INDEX idx_training_job_status_history_job
    ON training_job_status_history (cluster_id, job_id, valid_from, id);
CREATE INDEX idx_training_job_status_history_valid_from
    ON training_job_status_history (valid_from);

COMMENT ON TABLE training_job_status_history IS
    'Every status change of training_jobs the DLWorkspace sync saw, once.';

-- Where the sync of each cluster stands: the highest MySQL id read and the
-- highest lastUpdated read (upstream table version only).
CREATE TABLE dlworkspace_cursors (
    cluster_id    VARCHAR(64) PRIMARY KEY,
    table_version VARCHAR(16) NOT NULL,
    last_id       BIGINT NOT NULL DEFAULT 0,
    last_updated  timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT chk_dlworkspace_cursors_version CHECK (table_version IN ('seed', 'upstream'))
);

-- Rows that could not be mapped (an unknown status, a value the database
-- refused): re-read every cycle until they map, then removed.
CREATE TABLE dlworkspace_retry (
    cluster_id  VARCHAR(64) NOT NULL,
    source_id   BIGINT NOT NULL,
    job_id      VARCHAR(64),
    reason      TEXT NOT NULL,
    attempts    INT NOT NULL DEFAULT 1,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster_id, source_id)
);

-- One record per cluster: the latest clusterstatus row, the last sync, and
-- whether its jobs are billed (the `bill` setting, kept by every cycle so
-- the meter can read it where the configuration is not loaded).
CREATE TABLE dlworkspace_clusters (
    cluster_id       VARCHAR(64) PRIMARY KEY,
    bill             BOOLEAN NOT NULL DEFAULT false,
    status           JSONB,
    status_text      TEXT,
    status_time      timestamptz,
    status_source_id BIGINT,
    unmapped_owners  INT NOT NULL DEFAULT 0,
    last_sync_at     timestamptz,
    last_error       TEXT,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TRIGGER trg_dlworkspace_clusters_updated_at BEFORE UPDATE ON dlworkspace_clusters
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

-- How old each cluster's latest clusterstatus is, for /metrics and alerts.
CREATE VIEW dlworkspace_cluster_status_age AS
SELECT cluster_id, status_time,
       EXTRACT(EPOCH FROM now() - status_time)::double precision AS age_seconds
FROM dlworkspace_clusters;

-- owner_rule = "table": DLWorkspace userName -> customers.id, per cluster.
CREATE TABLE dlworkspace_owner_map (
    cluster_id  VARCHAR(64) NOT NULL,
    user_name   VARCHAR(255) NOT NULL,
    customer_id BIGINT NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cluster_id, user_name)
);

-- Owners whose jobs have no customer yet: reported, never dropped.
CREATE VIEW dlworkspace_unmapped_owners AS
SELECT cluster_id, user_name, count(*) AS jobs, max(job_time) AS last_job_time
FROM training_jobs
WHERE customer_id IS NULL
GROUP BY cluster_id, user_name;
