-- 22 · NVML's encoder and decoder utilisation (dcgm-exporter's
-- DCGM_FI_DEV_ENC_UTIL / DCGM_FI_DEV_DEC_UTIL): two gauges of gpu_metrics,
-- declared in store/src/catalogue/gpu.rs, with their tier columns.
--
-- The raw table and the fleet rollups only grow at the end. The hourly and
-- daily tier tables keep the spec's column order (gauges, then counters,
-- bitmasks, events, materialized_at last; tests/aggregator.rs compares the
-- migrated tables with aggregator/src/spec.rs), so they are rebuilt with
-- their rows copied over. They are small (see 0014).
--
-- The new *_count columns default to 0, so an aggregator replica not yet
-- upgraded (which names only the columns it knows) can still write rows
-- during a rolling upgrade.

ALTER TABLE gpu_metrics
    ADD COLUMN encoder_util_percent double precision,  -- DCGM_FI_DEV_ENC_UTIL
    ADD COLUMN decoder_util_percent double precision;  -- DCGM_FI_DEV_DEC_UTIL

CREATE TEMP TABLE gpu_metrics_1h_before ON COMMIT DROP AS SELECT * FROM gpu_metrics_1h;
DROP TABLE gpu_metrics_1h;
CREATE TABLE gpu_metrics_1h (
    gpu_id BIGINT NOT NULL,
    bucket timestamptz NOT NULL,
    host_id VARCHAR(64),
    sample_count integer NOT NULL,
    utilization_percent_count integer NOT NULL,
    utilization_percent_sum numeric,
    utilization_percent_avg double precision,
    utilization_percent_min double precision,
    utilization_percent_max double precision,
    utilization_percent_p95 double precision,
    memory_used_count integer NOT NULL,
    memory_used_sum numeric,
    memory_used_avg double precision,
    memory_used_min BIGINT,
    memory_used_max BIGINT,
    memory_usage_percent_count integer NOT NULL,
    memory_usage_percent_sum numeric,
    memory_usage_percent_avg double precision,
    memory_usage_percent_min double precision,
    memory_usage_percent_max double precision,
    temperature_count integer NOT NULL,
    temperature_sum numeric,
    temperature_avg double precision,
    temperature_min double precision,
    temperature_max double precision,
    power_draw_count integer NOT NULL,
    power_draw_sum numeric,
    power_draw_avg double precision,
    power_draw_min double precision,
    power_draw_max double precision,
    fan_speed_percent_count integer NOT NULL,
    fan_speed_percent_sum numeric,
    fan_speed_percent_avg double precision,
    fan_speed_percent_min double precision,
    fan_speed_percent_max double precision,
    sm_clock_count integer NOT NULL,
    sm_clock_sum numeric,
    sm_clock_avg double precision,
    sm_clock_min INT,
    sm_clock_max INT,
    memory_clock_count integer NOT NULL,
    memory_clock_sum numeric,
    memory_clock_avg double precision,
    memory_clock_min INT,
    memory_clock_max INT,
    process_count_count integer NOT NULL,
    process_count_sum numeric,
    process_count_avg double precision,
    process_count_min INT,
    process_count_max INT,
    memory_copy_util_percent_count integer NOT NULL,
    memory_copy_util_percent_sum numeric,
    memory_copy_util_percent_avg double precision,
    memory_copy_util_percent_min double precision,
    memory_copy_util_percent_max double precision,
    memory_free_count integer NOT NULL,
    memory_free_sum numeric,
    memory_free_avg double precision,
    memory_free_min BIGINT,
    memory_free_max BIGINT,
    memory_temperature_count integer NOT NULL,
    memory_temperature_sum numeric,
    memory_temperature_avg double precision,
    memory_temperature_min double precision,
    memory_temperature_max double precision,
    pcie_tx_bytes_per_sec_count integer NOT NULL,
    pcie_tx_bytes_per_sec_sum numeric,
    pcie_tx_bytes_per_sec_avg double precision,
    pcie_tx_bytes_per_sec_min BIGINT,
    pcie_tx_bytes_per_sec_max BIGINT,
    pcie_rx_bytes_per_sec_count integer NOT NULL,
    pcie_rx_bytes_per_sec_sum numeric,
    pcie_rx_bytes_per_sec_avg double precision,
    pcie_rx_bytes_per_sec_min BIGINT,
    pcie_rx_bytes_per_sec_max BIGINT,
    encoder_util_percent_count integer NOT NULL DEFAULT 0,
    encoder_util_percent_sum numeric,
    encoder_util_percent_avg double precision,
    encoder_util_percent_min double precision,
    encoder_util_percent_max double precision,
    decoder_util_percent_count integer NOT NULL DEFAULT 0,
    decoder_util_percent_sum numeric,
    decoder_util_percent_avg double precision,
    decoder_util_percent_min double precision,
    decoder_util_percent_max double precision,
    energy_consumed_mj_first BIGINT,
    energy_consumed_mj_last BIGINT,
    ecc_sbe_volatile_first BIGINT,
    ecc_sbe_volatile_last BIGINT,
    ecc_dbe_volatile_first BIGINT,
    ecc_dbe_volatile_last BIGINT,
    throttle_reasons_bitor BIGINT,
    xid_last_count integer NOT NULL,
    materialized_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT gpu_metrics_1h_pkey PRIMARY KEY (gpu_id, bucket)
);
CREATE INDEX idx_gpu_metrics_1h_bucket ON gpu_metrics_1h (bucket);
CREATE INDEX idx_gpu_metrics_1h_host_bucket ON gpu_metrics_1h (host_id, bucket);
COMMENT ON TABLE gpu_metrics_1h IS 'Hourly aggregates of gpu_metrics (UTC buckets), computed from raw rows; kept 90 days by default.';
INSERT INTO gpu_metrics_1h (gpu_id, bucket, host_id, sample_count, utilization_percent_count, utilization_percent_sum, utilization_percent_avg, utilization_percent_min, utilization_percent_max, utilization_percent_p95, memory_used_count, memory_used_sum, memory_used_avg, memory_used_min, memory_used_max, memory_usage_percent_count, memory_usage_percent_sum, memory_usage_percent_avg, memory_usage_percent_min, memory_usage_percent_max, temperature_count, temperature_sum, temperature_avg, temperature_min, temperature_max, power_draw_count, power_draw_sum, power_draw_avg, power_draw_min, power_draw_max, fan_speed_percent_count, fan_speed_percent_sum, fan_speed_percent_avg, fan_speed_percent_min, fan_speed_percent_max, sm_clock_count, sm_clock_sum, sm_clock_avg, sm_clock_min, sm_clock_max, memory_clock_count, memory_clock_sum, memory_clock_avg, memory_clock_min, memory_clock_max, process_count_count, process_count_sum, process_count_avg, process_count_min, process_count_max, memory_copy_util_percent_count, memory_copy_util_percent_sum, memory_copy_util_percent_avg, memory_copy_util_percent_min, memory_copy_util_percent_max, memory_free_count, memory_free_sum, memory_free_avg, memory_free_min, memory_free_max, memory_temperature_count, memory_temperature_sum, memory_temperature_avg, memory_temperature_min, memory_temperature_max, pcie_tx_bytes_per_sec_count, pcie_tx_bytes_per_sec_sum, pcie_tx_bytes_per_sec_avg, pcie_tx_bytes_per_sec_min, pcie_tx_bytes_per_sec_max, pcie_rx_bytes_per_sec_count, pcie_rx_bytes_per_sec_sum, pcie_rx_bytes_per_sec_avg, pcie_rx_bytes_per_sec_min, pcie_rx_bytes_per_sec_max, energy_consumed_mj_first, energy_consumed_mj_last, ecc_sbe_volatile_first, ecc_sbe_volatile_last, ecc_dbe_volatile_first, ecc_dbe_volatile_last, throttle_reasons_bitor, xid_last_count, materialized_at)
SELECT gpu_id, bucket, host_id, sample_count, utilization_percent_count, utilization_percent_sum, utilization_percent_avg, utilization_percent_min, utilization_percent_max, utilization_percent_p95, memory_used_count, memory_used_sum, memory_used_avg, memory_used_min, memory_used_max, memory_usage_percent_count, memory_usage_percent_sum, memory_usage_percent_avg, memory_usage_percent_min, memory_usage_percent_max, temperature_count, temperature_sum, temperature_avg, temperature_min, temperature_max, power_draw_count, power_draw_sum, power_draw_avg, power_draw_min, power_draw_max, fan_speed_percent_count, fan_speed_percent_sum, fan_speed_percent_avg, fan_speed_percent_min, fan_speed_percent_max, sm_clock_count, sm_clock_sum, sm_clock_avg, sm_clock_min, sm_clock_max, memory_clock_count, memory_clock_sum, memory_clock_avg, memory_clock_min, memory_clock_max, process_count_count, process_count_sum, process_count_avg, process_count_min, process_count_max, memory_copy_util_percent_count, memory_copy_util_percent_sum, memory_copy_util_percent_avg, memory_copy_util_percent_min, memory_copy_util_percent_max, memory_free_count, memory_free_sum, memory_free_avg, memory_free_min, memory_free_max, memory_temperature_count, memory_temperature_sum, memory_temperature_avg, memory_temperature_min, memory_temperature_max, pcie_tx_bytes_per_sec_count, pcie_tx_bytes_per_sec_sum, pcie_tx_bytes_per_sec_avg, pcie_tx_bytes_per_sec_min, pcie_tx_bytes_per_sec_max, pcie_rx_bytes_per_sec_count, pcie_rx_bytes_per_sec_sum, pcie_rx_bytes_per_sec_avg, pcie_rx_bytes_per_sec_min, pcie_rx_bytes_per_sec_max, energy_consumed_mj_first, energy_consumed_mj_last, ecc_sbe_volatile_first, ecc_sbe_volatile_last, ecc_dbe_volatile_first, ecc_dbe_volatile_last, throttle_reasons_bitor, xid_last_count, materialized_at FROM gpu_metrics_1h_before;

CREATE TEMP TABLE gpu_metrics_1d_before ON COMMIT DROP AS SELECT * FROM gpu_metrics_1d;
DROP TABLE gpu_metrics_1d;
CREATE TABLE gpu_metrics_1d (
    gpu_id BIGINT NOT NULL,
    bucket timestamptz NOT NULL,
    host_id VARCHAR(64),
    sample_count integer NOT NULL,
    utilization_percent_count integer NOT NULL,
    utilization_percent_sum numeric,
    utilization_percent_avg double precision,
    utilization_percent_min double precision,
    utilization_percent_max double precision,
    utilization_percent_p95 double precision,
    memory_used_count integer NOT NULL,
    memory_used_sum numeric,
    memory_used_avg double precision,
    memory_used_min BIGINT,
    memory_used_max BIGINT,
    memory_usage_percent_count integer NOT NULL,
    memory_usage_percent_sum numeric,
    memory_usage_percent_avg double precision,
    memory_usage_percent_min double precision,
    memory_usage_percent_max double precision,
    temperature_count integer NOT NULL,
    temperature_sum numeric,
    temperature_avg double precision,
    temperature_min double precision,
    temperature_max double precision,
    power_draw_count integer NOT NULL,
    power_draw_sum numeric,
    power_draw_avg double precision,
    power_draw_min double precision,
    power_draw_max double precision,
    fan_speed_percent_count integer NOT NULL,
    fan_speed_percent_sum numeric,
    fan_speed_percent_avg double precision,
    fan_speed_percent_min double precision,
    fan_speed_percent_max double precision,
    sm_clock_count integer NOT NULL,
    sm_clock_sum numeric,
    sm_clock_avg double precision,
    sm_clock_min INT,
    sm_clock_max INT,
    memory_clock_count integer NOT NULL,
    memory_clock_sum numeric,
    memory_clock_avg double precision,
    memory_clock_min INT,
    memory_clock_max INT,
    process_count_count integer NOT NULL,
    process_count_sum numeric,
    process_count_avg double precision,
    process_count_min INT,
    process_count_max INT,
    memory_copy_util_percent_count integer NOT NULL,
    memory_copy_util_percent_sum numeric,
    memory_copy_util_percent_avg double precision,
    memory_copy_util_percent_min double precision,
    memory_copy_util_percent_max double precision,
    memory_free_count integer NOT NULL,
    memory_free_sum numeric,
    memory_free_avg double precision,
    memory_free_min BIGINT,
    memory_free_max BIGINT,
    memory_temperature_count integer NOT NULL,
    memory_temperature_sum numeric,
    memory_temperature_avg double precision,
    memory_temperature_min double precision,
    memory_temperature_max double precision,
    pcie_tx_bytes_per_sec_count integer NOT NULL,
    pcie_tx_bytes_per_sec_sum numeric,
    pcie_tx_bytes_per_sec_avg double precision,
    pcie_tx_bytes_per_sec_min BIGINT,
    pcie_tx_bytes_per_sec_max BIGINT,
    pcie_rx_bytes_per_sec_count integer NOT NULL,
    pcie_rx_bytes_per_sec_sum numeric,
    pcie_rx_bytes_per_sec_avg double precision,
    pcie_rx_bytes_per_sec_min BIGINT,
    pcie_rx_bytes_per_sec_max BIGINT,
    encoder_util_percent_count integer NOT NULL DEFAULT 0,
    encoder_util_percent_sum numeric,
    encoder_util_percent_avg double precision,
    encoder_util_percent_min double precision,
    encoder_util_percent_max double precision,
    decoder_util_percent_count integer NOT NULL DEFAULT 0,
    decoder_util_percent_sum numeric,
    decoder_util_percent_avg double precision,
    decoder_util_percent_min double precision,
    decoder_util_percent_max double precision,
    energy_consumed_mj_first BIGINT,
    energy_consumed_mj_last BIGINT,
    ecc_sbe_volatile_first BIGINT,
    ecc_sbe_volatile_last BIGINT,
    ecc_dbe_volatile_first BIGINT,
    ecc_dbe_volatile_last BIGINT,
    throttle_reasons_bitor BIGINT,
    xid_last_count integer NOT NULL,
    materialized_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT gpu_metrics_1d_pkey PRIMARY KEY (gpu_id, bucket)
);
CREATE INDEX idx_gpu_metrics_1d_bucket ON gpu_metrics_1d (bucket);
CREATE INDEX idx_gpu_metrics_1d_host_bucket ON gpu_metrics_1d (host_id, bucket);
COMMENT ON TABLE gpu_metrics_1d IS 'Daily aggregates of gpu_metrics (UTC buckets), computed from raw rows; kept 1 year by default.';
INSERT INTO gpu_metrics_1d (gpu_id, bucket, host_id, sample_count, utilization_percent_count, utilization_percent_sum, utilization_percent_avg, utilization_percent_min, utilization_percent_max, utilization_percent_p95, memory_used_count, memory_used_sum, memory_used_avg, memory_used_min, memory_used_max, memory_usage_percent_count, memory_usage_percent_sum, memory_usage_percent_avg, memory_usage_percent_min, memory_usage_percent_max, temperature_count, temperature_sum, temperature_avg, temperature_min, temperature_max, power_draw_count, power_draw_sum, power_draw_avg, power_draw_min, power_draw_max, fan_speed_percent_count, fan_speed_percent_sum, fan_speed_percent_avg, fan_speed_percent_min, fan_speed_percent_max, sm_clock_count, sm_clock_sum, sm_clock_avg, sm_clock_min, sm_clock_max, memory_clock_count, memory_clock_sum, memory_clock_avg, memory_clock_min, memory_clock_max, process_count_count, process_count_sum, process_count_avg, process_count_min, process_count_max, memory_copy_util_percent_count, memory_copy_util_percent_sum, memory_copy_util_percent_avg, memory_copy_util_percent_min, memory_copy_util_percent_max, memory_free_count, memory_free_sum, memory_free_avg, memory_free_min, memory_free_max, memory_temperature_count, memory_temperature_sum, memory_temperature_avg, memory_temperature_min, memory_temperature_max, pcie_tx_bytes_per_sec_count, pcie_tx_bytes_per_sec_sum, pcie_tx_bytes_per_sec_avg, pcie_tx_bytes_per_sec_min, pcie_tx_bytes_per_sec_max, pcie_rx_bytes_per_sec_count, pcie_rx_bytes_per_sec_sum, pcie_rx_bytes_per_sec_avg, pcie_rx_bytes_per_sec_min, pcie_rx_bytes_per_sec_max, energy_consumed_mj_first, energy_consumed_mj_last, ecc_sbe_volatile_first, ecc_sbe_volatile_last, ecc_dbe_volatile_first, ecc_dbe_volatile_last, throttle_reasons_bitor, xid_last_count, materialized_at)
SELECT gpu_id, bucket, host_id, sample_count, utilization_percent_count, utilization_percent_sum, utilization_percent_avg, utilization_percent_min, utilization_percent_max, utilization_percent_p95, memory_used_count, memory_used_sum, memory_used_avg, memory_used_min, memory_used_max, memory_usage_percent_count, memory_usage_percent_sum, memory_usage_percent_avg, memory_usage_percent_min, memory_usage_percent_max, temperature_count, temperature_sum, temperature_avg, temperature_min, temperature_max, power_draw_count, power_draw_sum, power_draw_avg, power_draw_min, power_draw_max, fan_speed_percent_count, fan_speed_percent_sum, fan_speed_percent_avg, fan_speed_percent_min, fan_speed_percent_max, sm_clock_count, sm_clock_sum, sm_clock_avg, sm_clock_min, sm_clock_max, memory_clock_count, memory_clock_sum, memory_clock_avg, memory_clock_min, memory_clock_max, process_count_count, process_count_sum, process_count_avg, process_count_min, process_count_max, memory_copy_util_percent_count, memory_copy_util_percent_sum, memory_copy_util_percent_avg, memory_copy_util_percent_min, memory_copy_util_percent_max, memory_free_count, memory_free_sum, memory_free_avg, memory_free_min, memory_free_max, memory_temperature_count, memory_temperature_sum, memory_temperature_avg, memory_temperature_min, memory_temperature_max, pcie_tx_bytes_per_sec_count, pcie_tx_bytes_per_sec_sum, pcie_tx_bytes_per_sec_avg, pcie_tx_bytes_per_sec_min, pcie_tx_bytes_per_sec_max, pcie_rx_bytes_per_sec_count, pcie_rx_bytes_per_sec_sum, pcie_rx_bytes_per_sec_avg, pcie_rx_bytes_per_sec_min, pcie_rx_bytes_per_sec_max, energy_consumed_mj_first, energy_consumed_mj_last, ecc_sbe_volatile_first, ecc_sbe_volatile_last, ecc_dbe_volatile_first, ecc_dbe_volatile_last, throttle_reasons_bitor, xid_last_count, materialized_at FROM gpu_metrics_1d_before;

ALTER TABLE gpu_metrics_fleet_1h
    ADD COLUMN encoder_util_percent_count bigint NOT NULL DEFAULT 0,
    ADD COLUMN encoder_util_percent_sum numeric,
    ADD COLUMN encoder_util_percent_min double precision,
    ADD COLUMN encoder_util_percent_max double precision,
    ADD COLUMN decoder_util_percent_count bigint NOT NULL DEFAULT 0,
    ADD COLUMN decoder_util_percent_sum numeric,
    ADD COLUMN decoder_util_percent_min double precision,
    ADD COLUMN decoder_util_percent_max double precision;

ALTER TABLE gpu_metrics_fleet_1d
    ADD COLUMN encoder_util_percent_count bigint NOT NULL DEFAULT 0,
    ADD COLUMN encoder_util_percent_sum numeric,
    ADD COLUMN encoder_util_percent_min double precision,
    ADD COLUMN encoder_util_percent_max double precision,
    ADD COLUMN decoder_util_percent_count bigint NOT NULL DEFAULT 0,
    ADD COLUMN decoder_util_percent_sum numeric,
    ADD COLUMN decoder_util_percent_min double precision,
    ADD COLUMN decoder_util_percent_max double precision;

-- The rebuilt tables lost their grants; give Grafana's read-only role
-- (dashboards/grafana_role.sql) back what it had, where it exists.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gpuwatch_grafana') THEN
        GRANT SELECT ON gpu_metrics_1h, gpu_metrics_1d TO gpuwatch_grafana;
    END IF;
END;
$$;
