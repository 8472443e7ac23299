-- 26 · ingest: inventory churn and what NVML says about each GPU.
--
-- A GPU replaced at the same index (a new UUID) registers beside the old
-- one, which keeps its history and is marked removed; so the index is
-- unique only among the GPUs a host has now. A GPU missing from its host's
-- inventory is marked the same way, and comes back (removed_at cleared)
-- when it reappears on the same host. last_seen_at is the time of the
-- GPU's latest stored sample: one that stays behind its host's heartbeat
-- is a GPU gone silent (the shipped rule GpuSilent).
ALTER TABLE gpus DROP CONSTRAINT uq_gpus_host_index;
ALTER TABLE gpus ADD COLUMN removed_at timestamptz;
ALTER TABLE gpus ADD COLUMN serial VARCHAR(64);
ALTER TABLE gpus ADD COLUMN vbios_version VARCHAR(64);
CREATE UNIQUE INDEX uq_gpus_host_index_present ON gpus (host_id, gpu_index) WHERE removed_at IS NULL;
