-- Channel messages (resources/channel.py): kept so that a subscriber can replay the
-- recent ones (historyLength) and a listener in another process can read what it was
-- notified of; pruned by age on publish (BOTKIT_CHANNEL_RETENTION_SECONDS).
CREATE TABLE channel_messages (
    id         text COLLATE "C" PRIMARY KEY,
    account_id text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    channel_id text COLLATE "C" NOT NULL,
    data       jsonb NOT NULL,
    created_at bigint NOT NULL
);
CREATE INDEX channel_messages_channel ON channel_messages (account_id, channel_id, id);
