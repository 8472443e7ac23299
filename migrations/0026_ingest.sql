-- 26 · ingest: inventory churn and what NVML says about each GPU.
--
-- A GPU replaced at the same index (a new UUID) registers beside the old
-- one, which keeps its history and is marked removed; so the index is
-- unique only among the GPUs a host has now. A GPU missing from its host's
-- inventory is marked the same way, and comes back (removed_at cleared)
-- when it reappears on the same host. last_seen_at is the time of the
-- GPU's latest stored sample: one that stays behind its host's heartbeat
-- is a GPU gone silent (the shipped rule GpuSilent).
--
-- hosts.operator_labels are the labels an operator set through the API
-- (PATCH /api/v1/hosts/{id}); they win over the agent's on the same key and
-- survive its re-registrations, which rewrite the rest of hosts.labels.
ALTER TABLE gpus DROP CONSTRAINT uq_gpus_host_index;
ALTER TABLE gpus ADD COLUMN removed_at timestamptz;
ALTER TABLE gpus ADD COLUMN serial VARCHAR(64);
ALTER TABLE gpus ADD COLUMN vbios_version VARCHAR(64);
CREATE UNIQUE INDEX uq_gpus_host_index_present ON gpus (host_id, gpu_index) WHERE removed_at IS NULL;
ALTER TABLE hosts ADD COLUMN operator_labels JSONB NOT NULL DEFAULT '{}'
    CONSTRAINT chk_hosts_operator_labels_object CHECK (jsonb_typeof(operator_labels) = 'object');

INSERT INTO alert_rules (name, description, metric, reduction, window_seconds, comparison, threshold,
                         for_seconds, severity, annotations, created_by)
VALUES
    ('GpuSilent', 'A GPU has stored no sample for two minutes while its host reports (gpus.last_seen_at behind hosts.last_heartbeat): fallen off the bus, or NVML cannot read it.',
     'gpu.silent_seconds', 'last', 60, '>=', 120, 60, 'critical',
     '{"summary": "GPU {{ $labels.gpu }} on {{ $labels.host }} silent for {{ $value }} s while its host reports", "runbook": "check nvidia-smi and dmesg (XID 79: fallen off the bus) on the host; a GPU removed on purpose is marked removed at the next inventory"}', 'migration');
