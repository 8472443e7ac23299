-- 06 · data and images: datasets, dataset_versions, models, model_versions,
-- images, image_versions.
--
-- datasets, models, images follow seed 004 §7 (columns with a default are
-- also NOT NULL) plus updated_at and deleted_at: their rows are edited and
-- soft-deleted. framework and category get no CHECK: they are open
-- vocabularies (onnx, jax, vllm ...), and a new one must not need a
-- migration. images.name stays unique across deleted rows, as 004 says,
-- because environments refer to images by name.
--
-- dataset_versions and model_versions are immutable snapshots (a new upload
-- is a new version), so they have no updated_at; version is unique per
-- parent. image_versions is one row per tag of an image: a tag can be
-- re-pushed to a new digest, so that row is updated in place (updated_at)
-- and digest is indexed for "which tags point at this digest".

CREATE TABLE datasets (
    id           BIGSERIAL PRIMARY KEY,
    uuid         VARCHAR(64) NOT NULL DEFAULT gen_random_uuid()::text,
    customer_id  BIGINT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    name         VARCHAR(256) NOT NULL,
    description  TEXT,
    storage_path VARCHAR(512) NOT NULL,
    total_size   BIGINT NOT NULL DEFAULT 0,
    status       VARCHAR(20) NOT NULL DEFAULT 'uploading',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    CONSTRAINT uq_datasets_uuid UNIQUE (uuid),
    CONSTRAINT chk_datasets_status CHECK (status IN ('uploading', 'ready')),
    CONSTRAINT chk_datasets_total_size CHECK (total_size >= 0)
);

CREATE INDEX idx_datasets_customer_id ON datasets (customer_id);
CREATE INDEX idx_datasets_status ON datasets (status);
CREATE INDEX idx_datasets_customer_live ON datasets (customer_id, name) WHERE deleted_at IS NULL;

CREATE TRIGGER trg_datasets_updated_at BEFORE UPDATE ON datasets
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE datasets IS 'Customer datasets stored on the platform, mountable into environments.';

CREATE TABLE dataset_versions (
    id           BIGSERIAL PRIMARY KEY,
    dataset_id   BIGINT NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    version      VARCHAR(64) NOT NULL,
    storage_path VARCHAR(512) NOT NULL,
    size         BIGINT NOT NULL DEFAULT 0,
    checksum     VARCHAR(128),
    description  TEXT,
    metadata     JSONB NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uq_dataset_versions_dataset_version UNIQUE (dataset_id, version),
    CONSTRAINT chk_dataset_versions_size CHECK (size >= 0)
);

COMMENT ON TABLE dataset_versions IS 'Immutable versions (snapshots) of a dataset.';

CREATE TABLE models (
    id           BIGSERIAL PRIMARY KEY,
    uuid         VARCHAR(64) NOT NULL DEFAULT gen_random_uuid()::text,
    customer_id  BIGINT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    name         VARCHAR(256) NOT NULL,
    framework    VARCHAR(64),
    storage_path VARCHAR(512) NOT NULL,
    total_size   BIGINT NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    CONSTRAINT uq_models_uuid UNIQUE (uuid),
    CONSTRAINT chk_models_total_size CHECK (total_size >= 0)
);

CREATE INDEX idx_models_customer_id ON models (customer_id);
CREATE INDEX idx_models_customer_live ON models (customer_id, name) WHERE deleted_at IS NULL;

CREATE TRIGGER trg_models_updated_at BEFORE UPDATE ON models
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE models IS 'Customer model files (weights) stored on the platform.';

CREATE TABLE model_versions (
    id           BIGSERIAL PRIMARY KEY,
    model_id     BIGINT NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    version      VARCHAR(64) NOT NULL,
    storage_path VARCHAR(512) NOT NULL,
    size         BIGINT NOT NULL DEFAULT 0,
    checksum     VARCHAR(128),
    description  TEXT,
    metadata     JSONB NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uq_model_versions_model_version UNIQUE (model_id, version),
    CONSTRAINT chk_model_versions_size CHECK (size >= 0)
);

COMMENT ON TABLE model_versions IS 'Immutable versions of a model.';

CREATE TABLE images (
    id          BIGSERIAL PRIMARY KEY,
    name        VARCHAR(256) NOT NULL,
    description TEXT,
    category    VARCHAR(64),
    is_official BOOLEAN NOT NULL DEFAULT false,
    size        BIGINT,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    CONSTRAINT uq_images_name UNIQUE (name),
    CONSTRAINT chk_images_size CHECK (size IS NULL OR size >= 0)
);

CREATE INDEX idx_images_category ON images (category);
CREATE INDEX idx_images_is_official ON images (is_official);
-- The image picker lists live images by category.
CREATE INDEX idx_images_live ON images (category, name) WHERE deleted_at IS NULL;

CREATE TRIGGER trg_images_updated_at BEFORE UPDATE ON images
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE images IS 'Container images offered for environments.';

CREATE TABLE image_versions (
    id          BIGSERIAL PRIMARY KEY,
    image_id    BIGINT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    tag         VARCHAR(128) NOT NULL,
    digest      VARCHAR(128),
    size        BIGINT,
    pushed_at   timestamptz,
    description TEXT,
    metadata    JSONB NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uq_image_versions_image_tag UNIQUE (image_id, tag),
    CONSTRAINT chk_image_versions_size CHECK (size IS NULL OR size >= 0)
);

CREATE INDEX idx_image_versions_digest ON image_versions (digest);

CREATE TRIGGER trg_image_versions_updated_at BEFORE UPDATE ON image_versions
    FOR EACH ROW EXECUTE FUNCTION gpuwatch_set_updated_at();

COMMENT ON TABLE image_versions IS 'Tags of an image and the digest each currently points to.';
