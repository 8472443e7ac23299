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

DROP VIEW fixture_now;
