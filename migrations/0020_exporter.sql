-- 20 · what /metrics reads on every refresh.
--
-- DCGM_FI_DEV_XID_ERRORS is the last XID seen. Samples carry an XID only in
-- the interval it happened, so the exporter scans recent rows for non-NULL
-- xid_last; this partial index holds only those rows (XIDs are rare) and
-- keeps the scan small however many GPUs report.
CREATE INDEX idx_gpu_metrics_xid ON gpu_metrics (collected_at) WHERE xid_last IS NOT NULL;
