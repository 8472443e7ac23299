-- 32 · ready for Citus, with host_id as the distribution column.
--
-- The layout (which tables are distributed on host_id, which are reference
-- tables, which stay on the coordinator) is declared once, in
-- store/src/citus.rs; tests/suite/citus.rs reads the catalogue after every
-- migration and checks what Citus would refuse. For the nine distributed
-- tables that means:
--
--  * host_id is NOT NULL. environment_metrics.host_id was nullable (an
--    agent's one-host batch may leave it out); the ingest path now fills it
--    from the batch's host, and rows stored without it take their
--    environment's host ('' where the environment is unknown).
--  * every primary key includes host_id. It is appended, not prepended, so
--    the key's prefix (series, time) still serves every per-series range
--    read as before; on TimescaleDB the time column stays in it as the
--    hypertable needs. host_metrics and its tiers are keyed by host already.
--  * a tier row is one (series, bucket, host): a GPU moved to another host
--    (POST /api/v1/gpus/{id}/move) inside a bucket has two rows for it, and
--    the reads combine them (gpuwatch_series sums counts and sums and takes
--    min/max per bucket; gpuwatch_counter_series orders a bucket's rows by
--    their last sample). Buckets still inside raw retention are queued for
--    recomputation so that such hours are split the same way.
--
-- The metric tables have no foreign keys, so none crosses distributed tables.

UPDATE environment_metrics m SET host_id = e.host_id
  FROM environments e
 WHERE m.host_id IS NULL AND e.id = m.env_id;
UPDATE environment_metrics SET host_id = '' WHERE host_id IS NULL;
ALTER TABLE environment_metrics ALTER COLUMN host_id SET NOT NULL;

ALTER TABLE gpu_metrics DROP CONSTRAINT gpu_metrics_pkey;
ALTER TABLE gpu_metrics ADD CONSTRAINT gpu_metrics_pkey PRIMARY KEY (gpu_id, collected_at, host_id);
ALTER TABLE environment_metrics DROP CONSTRAINT environment_metrics_pkey;
ALTER TABLE environment_metrics ADD CONSTRAINT environment_metrics_pkey PRIMARY KEY (env_id, collected_at, host_id);

UPDATE environment_metrics_1h m SET host_id = e.host_id
  FROM environments e
 WHERE m.host_id IS NULL AND e.id = m.env_id;
UPDATE environment_metrics_1h SET host_id = '' WHERE host_id IS NULL;
UPDATE environment_metrics_1d m SET host_id = e.host_id
  FROM environments e
 WHERE m.host_id IS NULL AND e.id = m.env_id;
UPDATE environment_metrics_1d SET host_id = '' WHERE host_id IS NULL;

-- The aggregator always carried a GPU's host; a row written some other way may lack one.
UPDATE gpu_metrics_1h SET host_id = '' WHERE host_id IS NULL;
UPDATE gpu_metrics_1d SET host_id = '' WHERE host_id IS NULL;

ALTER TABLE gpu_metrics_1h ALTER COLUMN host_id SET NOT NULL;
ALTER TABLE gpu_metrics_1h DROP CONSTRAINT gpu_metrics_1h_pkey;
ALTER TABLE gpu_metrics_1h ADD CONSTRAINT gpu_metrics_1h_pkey PRIMARY KEY (gpu_id, bucket, host_id);
ALTER TABLE gpu_metrics_1d ALTER COLUMN host_id SET NOT NULL;
ALTER TABLE gpu_metrics_1d DROP CONSTRAINT gpu_metrics_1d_pkey;
ALTER TABLE gpu_metrics_1d ADD CONSTRAINT gpu_metrics_1d_pkey PRIMARY KEY (gpu_id, bucket, host_id);
ALTER TABLE environment_metrics_1h ALTER COLUMN host_id SET NOT NULL;
ALTER TABLE environment_metrics_1h DROP CONSTRAINT environment_metrics_1h_pkey;
ALTER TABLE environment_metrics_1h ADD CONSTRAINT environment_metrics_1h_pkey PRIMARY KEY (env_id, bucket, host_id);
ALTER TABLE environment_metrics_1d ALTER COLUMN host_id SET NOT NULL;
ALTER TABLE environment_metrics_1d DROP CONSTRAINT environment_metrics_1d_pkey;
ALTER TABLE environment_metrics_1d ADD CONSTRAINT environment_metrics_1d_pkey PRIMARY KEY (env_id, bucket, host_id);

-- Recompute what raw rows still cover, so a bucket with a move is split by host.
INSERT INTO gpuwatch_tier_invalidations (source, tier, lo, hi)
SELECT s.source, s.tier, now() - make_interval(days => gpuwatch_retention_days('retention.raw_days', 7)), s.watermark
  FROM gpuwatch_tier_state s
 WHERE s.source IN ('gpu_metrics', 'environment_metrics')
   AND s.watermark > now() - make_interval(days => gpuwatch_retention_days('retention.raw_days', 7));

COMMENT ON TABLE gpu_metrics_1h IS 'Hourly tier of gpu_metrics: one row per GPU, hour and host (two for an hour in which the GPU moved).';
COMMENT ON TABLE gpu_metrics_1d IS 'Daily tier of gpu_metrics: one row per GPU, UTC day and host (two for a day in which the GPU moved).';
