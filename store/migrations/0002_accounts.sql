-- Partner sub-accounts (their profile and limits), per-account message counting
-- for monthly limits, and the server's own keys (session-token signing).

ALTER TABLE accounts
    ADD COLUMN alias  text,
    ADD COLUMN image  text,
    ADD COLUMN limits jsonb;
CREATE INDEX accounts_meta ON accounts USING gin (meta jsonb_path_ops);

CREATE INDEX messages_account ON messages (account_id, id);

CREATE TABLE server_keys (
    name       text PRIMARY KEY,
    value      bytea NOT NULL,
    created_at bigint NOT NULL DEFAULT botkit_now_ms()
);

-- Token configuration as the reference has it (free-form), next to the scopes botkit checks.
ALTER TABLE tokens ADD COLUMN config jsonb;
