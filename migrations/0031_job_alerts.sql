-- 31 · DLWorkspace jobs in alerting and billing.
--
-- Alerts: the shipped rules on the job series of the alerter
-- (alerter/src/dlworkspace.rs). job.status is 1 while a job's entry into
-- failed, killed or error lies within the rule's window (a day here) and
-- the job is still in that status, 0 for a day after: an alert fires once
-- per entry, also for a job that failed while the alerter was down (if it
-- is back within the window), and resolves when the entry ages out. Its
-- repeat interval equals the window, so one entry is notified once.

INSERT INTO alert_rules (name, description, metric, scope, reduction, window_seconds, comparison,
                         threshold, for_seconds, severity, annotations, group_by,
                         repeat_interval_seconds, created_by)
VALUES
    ('JobFailed', 'A DLWorkspace job entered failed, killed or error (within the last day).',
     'job.status', '[{"name": "status", "op": "=~", "value": "failed|killed|error"}]',
     'last', 86400, '>', 0, 0, 'warning',
     '{"summary": "job {{ $labels.job_name }} ({{ $labels.job }}) of {{ $labels.owner }} is {{ $labels.status }} on cluster {{ $labels.cluster }}", "error_msg": "{{ $details.error_msg }}", "status_detail": "{{ $details.status_detail }}"}',
     '["alertname", "cluster", "status"]', 86400, 'migration'),
    ('JobStuckQueued', 'A DLWorkspace job has waited in queued or scheduling for more than 30 minutes.',
     'job.queued_seconds', '[]', 'last', 3600, '>', 1800, 0, 'warning',
     '{"summary": "job {{ $labels.job_name }} ({{ $labels.job }}) of {{ $labels.owner }} has waited {{ $value }} s on cluster {{ $labels.cluster }} (now {{ $details.current_status }})", "runbook": "check the virtual cluster''s quota and free GPUs of the job''s type (clusterstatus), and the job manager''s log"}',
     '["alertname", "cluster"]', 14400, 'migration'),
    ('DlworkspaceClusterStatusStale', 'A DLWorkspace cluster''s latest clusterstatus row is more than 5 minutes old: its cluster manager is not reporting, or the sync cannot read it.',
     'dlworkspace.cluster_status_age_seconds', '[]', 'last', 60, '>', 300, 0, 'critical',
     '{"summary": "clusterstatus of cluster {{ $labels.cluster }} is {{ $value }} s old (last at {{ $details.status_time }})", "runbook": "check the cluster manager of the cluster and the last_error of its dlworkspace_clusters row"}',
     '["alertname", "cluster"]', 14400, 'migration');

-- Metering: a DLWorkspace job's GPU-hours, from its status history (running
-- intervals × its GPU count), are billing records of their own resource
-- class, job_gpu, priced per GPU type like environments' GPUs (and by the
-- job_gpu price without a model for a type that has none of its own).
-- Per cluster, `billing` says whether its jobs are billed (records go on
-- invoices), only reported (records with billed = false: in usage reports,
-- never on an invoice) or not metered at all.
ALTER TABLE dlworkspace_clusters ADD COLUMN billing VARCHAR(8) NOT NULL DEFAULT 'report'
    CONSTRAINT chk_dlworkspace_clusters_billing CHECK (billing IN ('bill', 'report', 'off'));
UPDATE dlworkspace_clusters SET billing = CASE WHEN bill THEN 'bill' ELSE 'report' END;
ALTER TABLE dlworkspace_clusters DROP COLUMN bill;

ALTER TABLE billing_prices DROP CONSTRAINT chk_billing_prices_resource_type;
ALTER TABLE billing_prices ADD CONSTRAINT chk_billing_prices_resource_type
    CHECK (resource_type IN ('cpu', 'memory', 'gpu', 'job_gpu'));
ALTER TABLE billing_prices DROP CONSTRAINT chk_billing_prices_model;
ALTER TABLE billing_prices ADD CONSTRAINT chk_billing_prices_model
    CHECK (resource_type = 'job_gpu' OR (resource_type = 'gpu') = (gpu_model <> ''));

ALTER TABLE billing_records DROP CONSTRAINT chk_billing_records_resource_type;
ALTER TABLE billing_records ADD CONSTRAINT chk_billing_records_resource_type
    CHECK (resource_type IN ('cpu', 'memory', 'gpu', 'storage', 'job_gpu'));
-- false: a report-only cluster's job; the append-only trigger refuses to
-- put such a record on an invoice.
ALTER TABLE billing_records ADD COLUMN billed BOOLEAN NOT NULL DEFAULT true;

-- What the meter reads: every environment's history, and the history of the
-- jobs of clusters that are metered, keyed job:<training_jobs.id> (a job id
-- is unique per cluster only, and both together may pass env_id's 64
-- characters). ids are per table; (env_id, id) is unique.
CREATE VIEW billing_history AS
SELECT 'environment'::text AS subject, h.env_id::text AS env_id, h.id, h.customer_id, h.workspace_id,
       h.status::text AS status, h.cpu, h.memory, h.gpu, h.gpu_model::text AS gpu_model, h.valid_from,
       true AS billed
FROM environment_status_history h
UNION ALL
SELECT 'job', 'job:' || t.id, h.id, h.customer_id, NULL::bigint,
       h.status::text, 0, 0::bigint, h.gpu_count, h.gpu_type::text, h.valid_from,
       c.billing = 'bill'
FROM training_job_status_history h
JOIN training_jobs t ON t.cluster_id = h.cluster_id AND t.job_id = h.job_id
JOIN dlworkspace_clusters c ON c.cluster_id = h.cluster_id
WHERE c.billing <> 'off';

COMMENT ON VIEW billing_history IS
    'The meter''s input: environment_status_history and the status history of metered DLWorkspace jobs.';

-- A job's status reported behind the meter's watermark (a sync that was
-- down, a cluster added late) queues a recomputation, as a late
-- environment change does. The upsert writes the job row and its history
-- in one statement, so the job row is there when this runs.
CREATE FUNCTION gpuwatch_job_history_late_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    wm timestamptz;
BEGIN
    SELECT watermark INTO wm FROM billing_meter_state WHERE id = 1 FOR SHARE;
    IF wm IS NOT NULL AND NEW.valid_from < wm THEN
        INSERT INTO billing_recompute_queue (env_id, from_time)
        SELECT 'job:' || t.id, NEW.valid_from FROM training_jobs t
        WHERE t.cluster_id = NEW.cluster_id AND t.job_id = NEW.job_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_training_job_status_history_late AFTER INSERT ON training_job_status_history
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_job_history_late_change();
