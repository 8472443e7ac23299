-- 31 · DLWorkspace jobs in alerting.
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
