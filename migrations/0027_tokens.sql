-- 27 · Token expiry, last use, and explicit any-host agent tokens.
--
-- An agent token is bound to one host unless it was created with
-- `--any-host` (a gateway, the simulated fleet); the database refuses an
-- agent token that is neither, so "unbound" is always a decision someone
-- made and `gpuwatch token list` shows. Agent tokens made before this
-- migration without a host did report for any host: they are marked so,
-- rather than silently cut off, and show up as such in the list.
--
-- last_used_at is written when the server looks a token up, which its
-- cache does at most once per token every few seconds.

ALTER TABLE api_tokens
    ADD COLUMN any_host     BOOLEAN     NOT NULL DEFAULT false,
    ADD COLUMN expires_at   timestamptz,
    ADD COLUMN last_used_at timestamptz;

UPDATE api_tokens SET any_host = true WHERE role = 'agent' AND host_id IS NULL;

ALTER TABLE api_tokens
    ADD CONSTRAINT api_tokens_agent_bound
        CHECK (role <> 'agent' OR host_id IS NOT NULL OR any_host),
    ADD CONSTRAINT api_tokens_any_host_unbound
        CHECK (NOT any_host OR (role = 'agent' AND host_id IS NULL)),
    ADD CONSTRAINT api_tokens_expiry_after_creation
        CHECK (expires_at IS NULL OR expires_at > created_at);

COMMENT ON COLUMN api_tokens.any_host IS 'Agent token allowed to report for any host (created with --any-host); otherwise host_id binds it.';
COMMENT ON COLUMN api_tokens.expires_at IS 'After this instant the token is refused (401); NULL never expires.';
COMMENT ON COLUMN api_tokens.last_used_at IS 'Last time the server looked the token up (at most once per cache period).';
