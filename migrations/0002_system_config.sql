-- 02 · system configuration: system_configs, global key/value settings.
--
-- Columns follow seed 004 §3.1. Every column that 004 gives a default is also
-- NOT NULL, so a NULL can never stand in for "use the default" and row types
-- need no Option. 004's idx_config_key is not created: the UNIQUE constraint
-- on config_key already builds the same index, a second one would only cost
-- writes.

CREATE TABLE system_configs (
    id           BIGSERIAL PRIMARY KEY,
    config_key   VARCHAR(128) NOT NULL,
    config_value TEXT NOT NULL,
    config_type  VARCHAR(32) NOT NULL,
    description  TEXT,
    is_public    BOOLEAN NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uq_system_configs_config_key UNIQUE (config_key),
    CONSTRAINT chk_system_configs_config_type
        CHECK (config_type IN ('integer', 'string', 'json'))
);

CREATE TRIGGER trg_system_configs_updated_at BEFORE UPDATE ON system_configs
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE system_configs IS 'Global platform settings as typed key/value pairs.';
