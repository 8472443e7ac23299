-- Alerts, webhooks and deliveries relative to current_setting('gpuwatch.now'),
-- using only the seed columns of those tables (migrations 0011).
CREATE TEMP VIEW fixture_now AS SELECT current_setting('gpuwatch.now')::timestamptz AS now;

INSERT INTO alert_rules (name, metric, comparison, threshold, for_seconds, severity, labels, annotations)
VALUES ('GPU too hot', 'gpu.temperature', '>', 85, 60, 'critical', '{"team": "infra"}', '{"summary": "GPU above 85 °C"}'),
       ('GPU warm', 'gpu.temperature', '>', 80, 300, 'warning', '{}', '{"summary": "GPU above 80 °C"}'),
       ('Host silent', 'host.heartbeat_age', '>', 60, 0, 'critical', '{}', '{"summary": "no heartbeat"}'),
       ('Disk filling', 'host.disk_usage_percent', '>', 90, 600, 'info', '{}', '{"summary": "disk above 90 %"}');

-- Open alerts: firing (critical and warning), pending, nodata.
INSERT INTO alert_records (rule_id, fingerprint, state, severity, value, labels, annotations, started_at, fired_at, last_evaluated_at)
SELECT r.id, md5(r.name || x.fp), x.state, r.severity, x.value, x.labels::jsonb, r.annotations,
       n.now - x.age, CASE WHEN x.state = 'firing' THEN n.now - x.age + interval '1 minute' END, n.now
FROM fixture_now n, alert_rules r
JOIN (VALUES ('GPU too hot', 'a', 'firing', 87.4, '{"host": "sim-host-000", "gpu": "0"}', interval '3 days'),
             ('GPU warm', 'b', 'firing', 81.2, '{"host": "sim-host-001", "gpu": "1"}', interval '20 minutes'),
             ('Disk filling', 'c', 'pending', 90.5, '{"host": "sim-host-001"}', interval '5 minutes'),
             ('Host silent', 'd', 'nodata', NULL, '{"host": "sim-host-002"}', interval '2 hours'))
     AS x(rule, fp, state, value, labels, age) ON x.rule = r.name;

-- Resolved history: one every 6 hours for 40 days, lasting 10-70 minutes.
INSERT INTO alert_records (rule_id, fingerprint, state, severity, value, labels, annotations, started_at, fired_at, resolved_at)
SELECT r.id, md5(r.name || i), 'resolved', r.severity, 80 + i % 7, jsonb_build_object('host', 'sim-host-00' || i % 3),
       r.annotations, n.now - i * interval '6 hours' - interval '75 minutes',
       n.now - i * interval '6 hours' - interval '74 minutes',
       n.now - i * interval '6 hours' - interval '75 minutes' + (10 + i % 60) * interval '1 minute'
FROM fixture_now n, generate_series(0, 160) AS i
JOIN alert_rules r ON r.name = (ARRAY['GPU too hot', 'GPU warm', 'Disk filling'])[1 + i % 3];

INSERT INTO webhooks (name, url, secret) VALUES
    ('on-call bridge', 'https://oncall.example.com/hooks/gpuwatch', 's3cret'),
    ('chat', 'https://chat.example.com/hooks/alerts', NULL);

-- A delivery every 10 minutes for 40 days to each webhook; the chat
-- webhook fails one attempt in nine (then a retry succeeds), and one
-- notification an hour ago failed for good.
INSERT INTO webhook_logs (webhook_id, notification_id, attempt, request_url, status_code, latency_ms, error, succeeded, created_at)
SELECT w.id, md5(w.id || '-' || i)::uuid, 1, w.url,
       CASE WHEN w.name = 'chat' AND i % 9 = 0 THEN 503 ELSE 200 END,
       40 + (i * 37) % 400 + CASE WHEN w.name = 'chat' THEN 150 ELSE 0 END,
       CASE WHEN w.name = 'chat' AND i % 9 = 0 THEN 'HTTP 503' END,
       NOT (w.name = 'chat' AND i % 9 = 0),
       n.now - i * interval '10 minutes'
FROM fixture_now n, webhooks w, generate_series(0, 40 * 144) AS i;
INSERT INTO webhook_logs (webhook_id, notification_id, attempt, request_url, status_code, latency_ms, succeeded, created_at)
SELECT w.id, md5(w.id || '-' || i)::uuid, 2, w.url, 200, 95, true, n.now - i * interval '10 minutes' + interval '30 seconds'
FROM fixture_now n, webhooks w, generate_series(9, 40 * 144, 9) AS i
WHERE w.name = 'chat';
INSERT INTO webhook_logs (webhook_id, notification_id, attempt, request_url, latency_ms, error, succeeded, created_at)
SELECT w.id, '00000000-0000-0000-0000-00000000dead', a, w.url, 10000, 'timed out after 10000 ms', false,
       n.now - interval '1 hour' + a * interval '1 minute'
FROM fixture_now n, webhooks w, generate_series(1, 3) AS a
WHERE w.name = 'chat';

-- DLWorkspace: two clusters and a job every 30 minutes for 40 days, queued,
-- then running, then finished, failed, killed or error; the latest ones are
-- still queued or running, and one failed ten minutes ago, so every range of
-- the Jobs dashboard has rows.
INSERT INTO dlworkspace_clusters (cluster_id, billing, status, status_time, last_sync_at)
SELECT c, 'report', '{"gpu_capacity": {"A100": 32}}', n.now - interval '45 seconds', n.now - interval '20 seconds'
FROM fixture_now n, (VALUES ('dlws-a'), ('dlws-b')) AS v(c);

CREATE TEMP TABLE fixture_jobs AS
SELECT i, (ARRAY['dlws-a', 'dlws-b'])[1 + i % 2] AS cluster_id, 'job-' || i AS job_id,
       (ARRAY['alice', 'bob', 'carol', 'dave'])[1 + i % 4] AS user_name,
       (ARRAY['training', 'inference'])[1 + (i / 3) % 2] AS job_type,
       (ARRAY[1, 2, 4, 8])[1 + (i / 4) % 4] AS gpu_count,
       date_trunc('second', n.now - i * interval '30 minutes') AS queued_at,
       date_trunc('second', n.now - i * interval '30 minutes') + (2 + i % 18) * interval '1 minute' AS running_at,
       date_trunc('second', n.now - i * interval '30 minutes') + (2 + i % 18) * interval '1 minute'
           + CASE WHEN i = 3 THEN 73 ELSE 20 + i % 120 END * interval '1 minute' AS ended_at,
       CASE WHEN i = 0 THEN 'queued' WHEN i < 3 THEN 'running' WHEN i = 3 OR i % 7 = 0 THEN 'failed'
            WHEN i % 11 = 0 THEN 'killed' WHEN i % 13 = 0 THEN 'error' ELSE 'finished' END AS status
FROM fixture_now n, generate_series(0, 40 * 48) AS i;

INSERT INTO training_jobs (cluster_id, source_id, job_id, job_name, user_name, vc_name, job_status, job_type,
                           job_params, error_message, job_time, last_updated, gpu_count, gpu_type,
                           started_at, finished_at)
SELECT cluster_id, i + 1, job_id, job_type || '-run-' || i, user_name, 'platform', status, job_type,
       jsonb_build_object('resourcegpu', gpu_count, 'gpuType', 'A100'),
       CASE status WHEN 'failed' THEN 'CUDA error: an illegal memory access was encountered'
                   WHEN 'error' THEN 'pod evicted: node lost' END,
       queued_at, CASE WHEN status IN ('queued', 'running') THEN running_at ELSE ended_at END, gpu_count, 'A100',
       CASE WHEN status <> 'queued' THEN running_at END,
       CASE WHEN status NOT IN ('queued', 'running') THEN ended_at END
FROM fixture_jobs;

INSERT INTO training_job_status_history (cluster_id, job_id, status, user_name, gpu_count, gpu_type, valid_from)
SELECT cluster_id, job_id, 'queued', user_name, gpu_count, 'A100', queued_at FROM fixture_jobs
UNION ALL
SELECT cluster_id, job_id, 'running', user_name, gpu_count, 'A100', running_at FROM fixture_jobs WHERE status <> 'queued'
UNION ALL
SELECT cluster_id, job_id, status, user_name, gpu_count, 'A100', ended_at FROM fixture_jobs
WHERE status NOT IN ('queued', 'running');
DROP TABLE fixture_jobs;

DROP VIEW fixture_now;
