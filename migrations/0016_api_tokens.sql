-- 16 · API bearer tokens.
--
-- Only a SHA-256 hash of each token is stored; the token itself is shown
-- once, by `gpuwatch token create`. An agent token may be bound to the one
-- host it reports for (host_id); an unbound agent token may report for any
-- host (a gateway, or the simulated fleet). Roles follow DESIGN.md.

CREATE TABLE api_tokens (
    id           BIGSERIAL PRIMARY KEY,
    name         VARCHAR(128) NOT NULL,
    role         VARCHAR(16)  NOT NULL CHECK (role IN ('admin', 'operator', 'finance', 'viewer', 'agent')),
    host_id      VARCHAR(64),
    token_hash   CHAR(64)     NOT NULL UNIQUE,
    token_prefix VARCHAR(16)  NOT NULL,
    created_at   timestamptz  NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    CHECK (host_id IS NULL OR role = 'agent')
);

COMMENT ON TABLE api_tokens IS 'Bearer tokens of the API, stored as SHA-256 hashes, with a role and (agents) an optional host binding.';
