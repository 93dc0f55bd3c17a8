-- The conversation engine: usage rows, and full-text + trigram search on records.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- One row per completion (type 'token': count = input + output tokens), per account,
-- with the bot, conversation, message and model it was for. No foreign keys but the
-- account: usage outlives the conversation or bot it was spent on.
CREATE TABLE usage (
    id              text COLLATE "C" PRIMARY KEY,
    account_id      text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    type            text NOT NULL,
    count           bigint NOT NULL,
    model           text,
    input_tokens    bigint NOT NULL DEFAULT 0,
    output_tokens   bigint NOT NULL DEFAULT 0,
    name            text,
    description     text,
    meta            jsonb NOT NULL DEFAULT '{}',
    conversation_id text COLLATE "C",
    message_id      text COLLATE "C",
    task_id         text COLLATE "C",
    contact_id      text COLLATE "C",
    blueprint_id    text COLLATE "C",
    bot_id          text COLLATE "C",
    dataset_id      text COLLATE "C",
    skillset_id     text COLLATE "C",
    ability_id      text COLLATE "C",
    created_at      bigint NOT NULL,
    updated_at      bigint NOT NULL
);
CREATE INDEX usage_account ON usage (account_id, id);
CREATE INDEX usage_account_time ON usage (account_id, created_at) INCLUDE (count, type);
CREATE INDEX usage_bot ON usage (bot_id, created_at) INCLUDE (count) WHERE bot_id IS NOT NULL;
CREATE INDEX usage_conversation ON usage (conversation_id, created_at) INCLUDE (count)
    WHERE conversation_id IS NOT NULL;
CREATE INDEX usage_meta ON usage USING gin (meta jsonb_path_ops);

-- Records are searchable the moment their INSERT commits: the tsvector is a stored
-- generated column, and both indexes are maintained in the same transaction.
ALTER TABLE records ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('english', left(text, 200000))) STORED;
CREATE INDEX records_search ON records USING gin (search);
CREATE INDEX records_trgm ON records USING gin (text gin_trgm_ops);

-- Embeddings (engine/embeddings.py) come from pgvector.sql, run at every start.
