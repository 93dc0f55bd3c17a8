-- Monthly limits (conversations, messages) as counters taken atomically with a
-- conditional upsert, so concurrent creates can never pass the limit together: a
-- month's quota counts what was created that month (deleting does not give it back).
-- The limits on what exists (bots, database.*) count rows under the account's row lock.
CREATE TABLE account_quotas (
    account_id text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name       text NOT NULL,
    month      bigint NOT NULL,  -- the month's first millisecond, UTC
    used       bigint NOT NULL,
    PRIMARY KEY (account_id, name, month)
);
