-- A read-only role for Grafana's gpuwatch data source: exactly what the
-- dashboards read, and nothing secret (no password hashes, API token
-- hashes or webhook secrets). Run as the database owner, e.g.
--   psql "$DATABASE_URL" -f dashboards/grafana_role.sql
--   psql "$DATABASE_URL" -c "ALTER ROLE gpuwatch_grafana LOGIN PASSWORD 'change-me'"
-- tests/dashboards.rs runs every panel query under this role.
CREATE ROLE gpuwatch_grafana NOLOGIN;
GRANT USAGE ON SCHEMA public TO gpuwatch_grafana;
GRANT SELECT ON
    hosts, gpus, environments, invoices, billing_records, alert_rules, alert_records, webhook_logs,
    gpu_metrics, host_metrics, environment_metrics,
    gpu_metrics_1h, gpu_metrics_1d, host_metrics_1h, host_metrics_1d,
    environment_metrics_1h, environment_metrics_1d,
    gpu_metrics_fleet_1h, gpu_metrics_fleet_1d, host_metrics_fleet_1h, host_metrics_fleet_1d,
    environment_metrics_fleet_1h, environment_metrics_fleet_1d,
    gpuwatch_tier_state, system_configs,
    training_jobs, training_job_status_history, dlworkspace_clusters, dlworkspace_cluster_status_age
TO gpuwatch_grafana;
GRANT SELECT (id, username, deleted_at) ON customers TO gpuwatch_grafana;
GRANT SELECT (id, name) ON webhooks TO gpuwatch_grafana;
