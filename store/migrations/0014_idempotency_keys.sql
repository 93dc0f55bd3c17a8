-- Idempotency-Key (transport/idempotency.py): a POST's first answer, per account and
-- key, kept 24 h and replayed to a retry with the same request.
CREATE TABLE idempotency_keys (
    account_id   text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    key          text NOT NULL,
    request_hash bytea NOT NULL,
    status       integer,  -- null while the first request runs
    response     bytea,    -- null: the answer was a stream (its effects happened once; it is not kept)
    created_at   bigint NOT NULL,
    PRIMARY KEY (account_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
