-- 07 · monitoring: host_metrics, gpu_metrics, environment_metrics.
--
-- Seed 004's columns, with these deliberate changes:
--  * No `id BIGSERIAL`: a hypertable cannot keep a lone id primary key, and a
--    sequence call per row slows ingest. Identity is (series, collected_at),
--    which also makes a re-sent batch idempotent (ON CONFLICT DO NOTHING).
--    Seed 004's idx_gpu_id_time / idx_host_id_time / idx_env_id_time are
--    these primary keys (a btree scans backwards as cheaply as forwards).
--  * No physical foreign keys (seed 001: "few physical foreign keys"): a
--    per-row lookup into hosts/gpus would cost every COPY; the ingest path
--    validates hosts and GPUs instead.
--  * gpu_metrics carries what dcgm-exporter exports by default besides 004's
--    columns (copy-engine utilisation, free framebuffer, energy counter,
--    PCIe throughput, ECC counters, last XID, throttle reasons), so the
--    exporter can serve dcgm-exporter's names.
--  * Every table has a time index for range scans across all series (tier
--    materialisation, retention checks).
--
-- On TimescaleDB each table is a hypertable with 1-day chunks. On plain
-- PostgreSQL each is range-partitioned by day; gpuwatch_ensure_partitions()
-- creates partitions ahead (the batch writer and the aggregator call it), so
-- an insert never fails for want of one.

CREATE TABLE host_metrics (
    host_id              VARCHAR(64)      NOT NULL,
    cpu_usage_percent    double precision,
    cpu_load_1m          double precision,
    cpu_load_5m          double precision,
    cpu_load_15m         double precision,
    memory_used          BIGINT,
    memory_available     BIGINT,
    memory_usage_percent double precision,
    disk_used            BIGINT,
    disk_available       BIGINT,
    disk_usage_percent   double precision,
    disk_io_read_bytes   BIGINT,  -- counter since boot, like node_disk_read_bytes_total
    disk_io_write_bytes  BIGINT,  -- counter since boot
    network_rx_bytes     BIGINT,  -- counter since boot, like node_network_receive_bytes_total
    network_tx_bytes     BIGINT,  -- counter since boot
    network_rx_packets   BIGINT,  -- counter since boot
    network_tx_packets   BIGINT,  -- counter since boot
    gpu_avg_utilization  double precision,
    gpu_avg_memory_used  BIGINT,
    gpu_avg_temperature  double precision,
    gpu_avg_power        double precision,
    collected_at         timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT host_metrics_pkey PRIMARY KEY (host_id, collected_at)
) __PARTITION_CLAUSE__;

CREATE TABLE gpu_metrics (
    gpu_id                   BIGINT           NOT NULL,
    host_id                  VARCHAR(64)      NOT NULL,
    utilization_percent      double precision,
    memory_used              BIGINT,
    memory_usage_percent     double precision,
    temperature              double precision,
    power_draw               double precision,
    fan_speed_percent        double precision,
    sm_clock                 INT,
    memory_clock             INT,
    process_count            INT,
    memory_copy_util_percent double precision,  -- DCGM_FI_DEV_MEM_COPY_UTIL
    memory_free              BIGINT,            -- DCGM_FI_DEV_FB_FREE, bytes
    memory_temperature       double precision,  -- DCGM_FI_DEV_MEMORY_TEMP
    energy_consumed_mj       BIGINT,            -- counter since driver load, millijoules
    pcie_tx_bytes_per_sec    BIGINT,
    pcie_rx_bytes_per_sec    BIGINT,
    ecc_sbe_volatile         BIGINT,            -- counter since driver load
    ecc_dbe_volatile         BIGINT,            -- counter since driver load
    xid_last                 INT,               -- last XID seen in the interval, NULL if none
    throttle_reasons         BIGINT,            -- NVML clocks-event bitmask
    collected_at             timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT gpu_metrics_pkey PRIMARY KEY (gpu_id, collected_at)
) __PARTITION_CLAUSE__;

CREATE TABLE environment_metrics (
    env_id               VARCHAR(64)      NOT NULL,
    host_id              VARCHAR(64),
    cpu_usage_percent    double precision,
    memory_used          BIGINT,
    memory_usage_percent double precision,
    gpu_usage_percent    double precision,
    gpu_memory_used      BIGINT,
    network_rx_bytes     BIGINT,  -- counter since the environment started
    network_tx_bytes     BIGINT,  -- counter since the environment started
    collected_at         timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT environment_metrics_pkey PRIMARY KEY (env_id, collected_at)
) __PARTITION_CLAUSE__;

CREATE INDEX idx_host_metrics_time ON host_metrics (collected_at DESC);
CREATE INDEX idx_gpu_metrics_host_time ON gpu_metrics (host_id, collected_at DESC);
CREATE INDEX idx_gpu_metrics_time ON gpu_metrics (collected_at DESC);
CREATE INDEX idx_environment_metrics_time ON environment_metrics (collected_at DESC);
CREATE INDEX idx_environment_metrics_host_time ON environment_metrics (host_id, collected_at DESC);

COMMENT ON TABLE host_metrics IS 'Raw host samples (seed 004), one row per host and collection time; kept 7 days by default.';
COMMENT ON TABLE gpu_metrics IS 'Raw GPU samples (seed 004 plus dcgm-exporter''s default fields); kept 7 days by default.';
COMMENT ON TABLE environment_metrics IS 'Raw environment (container) samples (seed 004); kept 7 days by default.';

-- Daily partitions on plain PostgreSQL, named <table>_pYYYYMMDD, bounds in UTC.
-- Serialised by an advisory lock so concurrent writers can both call it.
CREATE FUNCTION gpuwatch_ensure_partitions(tbl text, from_day date, to_day date)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    d date := from_day;
    created integer := 0;
    part text;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = tbl::regclass) <> 'p' THEN
        RETURN 0;  -- a hypertable creates its chunks itself
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('gpuwatch_ensure_partitions'), hashtext(tbl));
    WHILE d <= to_day LOOP
        part := format('%s_p%s', tbl, to_char(d, 'YYYYMMDD'));
        IF to_regclass(part) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                part, tbl, (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC'));
            created := created + 1;
        END IF;
        d := d + 1;
    END LOOP;
    RETURN created;
END;
$$;

-- The two forms of __MAKE_TIME_SERIES__; `gpuwatch migrate` picks one.
CREATE FUNCTION gpuwatch_make_hypertable(tbl text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- Our own time index is created above on both backends, so no default ones.
    PERFORM create_hypertable(tbl::regclass, 'collected_at',
                              chunk_time_interval => interval '1 day',
                              create_default_indexes => false);
END;
$$;

CREATE FUNCTION gpuwatch_make_partitioned(tbl text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    today date := (now() AT TIME ZONE 'UTC')::date;
BEGIN
    PERFORM gpuwatch_ensure_partitions(tbl, today - 1, today + 7);
END;
$$;

SELECT __MAKE_TIME_SERIES__('host_metrics');
SELECT __MAKE_TIME_SERIES__('gpu_metrics');
SELECT __MAKE_TIME_SERIES__('environment_metrics');
