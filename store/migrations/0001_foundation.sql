-- The foundation: accounts, API tokens and the core resources.
-- Ids are time-ordered text compared byte-wise (COLLATE "C"), so keyset pages are
-- `id < $cursor ORDER BY id DESC`, served by the (owner, id) index of each table.
-- Timestamps are epoch milliseconds, the wire's unit.

CREATE FUNCTION botkit_now_ms() RETURNS bigint LANGUAGE sql STABLE AS
$$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint $$;

-- RFC 7386 JSON merge patch: objects merge recursively, null deletes a key,
-- anything else replaces.
CREATE FUNCTION botkit_merge_patch(target jsonb, patch jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    result jsonb;
    k text;
    v jsonb;
BEGIN
    IF patch IS NULL OR jsonb_typeof(patch) <> 'object' THEN
        RETURN patch;
    END IF;
    IF target IS NULL OR jsonb_typeof(target) <> 'object' THEN
        result := '{}'::jsonb;
    ELSE
        result := target;
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(patch) LOOP
        IF jsonb_typeof(v) = 'null' THEN
            result := result - k;
        ELSE
            result := jsonb_set(result, ARRAY[k], botkit_merge_patch(result -> k, v));
        END IF;
    END LOOP;
    RETURN result;
END $$;

-- A merged meta may grow past the key limit that each request obeys on its own;
-- this refuses it inside the UPDATE (SQLSTATE BK400 → 400 BAD_REQUEST).
CREATE FUNCTION botkit_meta_limit(meta jsonb, max_keys integer) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    n integer;
BEGIN
    SELECT count(*) INTO n FROM jsonb_object_keys(meta);
    IF n > max_keys THEN
        RAISE EXCEPTION 'meta: at most % keys are allowed (the merge would give %)', max_keys, n
            USING ERRCODE = 'BK400';
    END IF;
    RETURN meta;
END $$;

CREATE TABLE accounts (
    id          text COLLATE "C" PRIMARY KEY,
    parent_id   text COLLATE "C" REFERENCES accounts (id) ON DELETE CASCADE,
    name        text,
    description text,
    email       text,
    role        text NOT NULL DEFAULT 'user',
    meta        jsonb NOT NULL DEFAULT '{}',
    created_at  bigint NOT NULL DEFAULT botkit_now_ms(),
    updated_at  bigint NOT NULL DEFAULT botkit_now_ms()
);
CREATE INDEX accounts_parent ON accounts (parent_id, id);

-- API tokens: only a SHA-256 digest of the secret is stored.
CREATE TABLE tokens (
    id          text COLLATE "C" PRIMARY KEY,
    account_id  text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    secret_hash bytea NOT NULL UNIQUE,
    name        text,
    description text,
    scopes      jsonb,
    expires_at  bigint,
    revoked_at  bigint,
    meta        jsonb NOT NULL DEFAULT '{}',
    created_at  bigint NOT NULL DEFAULT botkit_now_ms(),
    updated_at  bigint NOT NULL DEFAULT botkit_now_ms()
);
CREATE INDEX tokens_account ON tokens (account_id, id);

CREATE TABLE bots (
    id           text COLLATE "C" PRIMARY KEY,
    account_id   text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    alias        text,
    name         text,
    description  text,
    meta         jsonb NOT NULL DEFAULT '{}',
    model        text,
    backstory    text,
    dataset_id   text COLLATE "C",
    skillset_id  text COLLATE "C",
    privacy      boolean,
    moderation   boolean,
    blueprint_id text COLLATE "C",
    visibility   text,
    created_at   bigint NOT NULL,
    updated_at   bigint NOT NULL
);
CREATE INDEX bots_account ON bots (account_id, id);
CREATE INDEX bots_meta ON bots USING gin (meta jsonb_path_ops);

CREATE TABLE contacts (
    id          text COLLATE "C" PRIMARY KEY,
    account_id  text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name        text,
    description text,
    meta        jsonb NOT NULL DEFAULT '{}',
    fingerprint text NOT NULL,
    email       text,
    phone       text,
    nick        text,
    preferences text,
    verified_at bigint,
    created_at  bigint NOT NULL,
    updated_at  bigint NOT NULL,
    UNIQUE (account_id, fingerprint)
);
CREATE INDEX contacts_account ON contacts (account_id, id);
CREATE INDEX contacts_meta ON contacts USING gin (meta jsonb_path_ops);

CREATE TABLE conversations (
    id          text COLLATE "C" PRIMARY KEY,
    account_id  text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name        text,
    description text,
    meta        jsonb NOT NULL DEFAULT '{}',
    contact_id  text COLLATE "C",
    task_id     text COLLATE "C",
    space_id    text COLLATE "C",
    -- the bot it talks to: a bot, or an inline configuration
    bot_id      text COLLATE "C",
    model       text,
    backstory   text,
    dataset_id  text COLLATE "C",
    skillset_id text COLLATE "C",
    privacy     boolean,
    moderation  boolean,
    created_at  bigint NOT NULL,
    updated_at  bigint NOT NULL
);
CREATE INDEX conversations_account ON conversations (account_id, id);
CREATE INDEX conversations_contact ON conversations (contact_id, id);
CREATE INDEX conversations_meta ON conversations USING gin (meta jsonb_path_ops);

CREATE TABLE messages (
    id              text COLLATE "C" PRIMARY KEY,
    account_id      text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    conversation_id text COLLATE "C" NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    name            text,
    description     text,
    meta            jsonb NOT NULL DEFAULT '{}',
    type            text NOT NULL,
    text            text NOT NULL,
    entities        jsonb NOT NULL DEFAULT '[]',
    created_at      bigint NOT NULL,
    updated_at      bigint NOT NULL
);
CREATE INDEX messages_conversation ON messages (conversation_id, id);
CREATE INDEX messages_meta ON messages USING gin (meta jsonb_path_ops);

CREATE TABLE datasets (
    id                   text COLLATE "C" PRIMARY KEY,
    account_id           text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    alias                text,
    name                 text,
    description          text,
    meta                 jsonb NOT NULL DEFAULT '{}',
    blueprint_id         text COLLATE "C",
    store                text NOT NULL,
    reranker             text,
    record_max_tokens    double precision,
    search_min_score     double precision,
    search_max_records   double precision,
    search_max_tokens    double precision,
    match_instruction    text,
    mismatch_instruction text,
    separators           text,
    visibility           text,
    created_at           bigint NOT NULL,
    updated_at           bigint NOT NULL
);
CREATE INDEX datasets_account ON datasets (account_id, id);
CREATE INDEX datasets_meta ON datasets USING gin (meta jsonb_path_ops);

CREATE TABLE records (
    id         text COLLATE "C" PRIMARY KEY,
    account_id text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    dataset_id text COLLATE "C" NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    text       text NOT NULL,
    source     text,
    meta       jsonb NOT NULL DEFAULT '{}',
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL
);
CREATE INDEX records_dataset ON records (dataset_id, id);
CREATE INDEX records_meta ON records USING gin (meta jsonb_path_ops);

CREATE TABLE skillsets (
    id           text COLLATE "C" PRIMARY KEY,
    account_id   text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    alias        text,
    name         text,
    description  text,
    meta         jsonb NOT NULL DEFAULT '{}',
    blueprint_id text COLLATE "C",
    visibility   text,
    created_at   bigint NOT NULL,
    updated_at   bigint NOT NULL
);
CREATE INDEX skillsets_account ON skillsets (account_id, id);
CREATE INDEX skillsets_meta ON skillsets USING gin (meta jsonb_path_ops);

CREATE TABLE abilities (
    id           text COLLATE "C" PRIMARY KEY,
    account_id   text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    skillset_id  text COLLATE "C" NOT NULL REFERENCES skillsets (id) ON DELETE CASCADE,
    name         text NOT NULL,
    description  text NOT NULL,
    meta         jsonb NOT NULL DEFAULT '{}',
    blueprint_id text COLLATE "C",
    secret_id    text COLLATE "C",
    file_id      text COLLATE "C",
    bot_id       text COLLATE "C",
    space_id     text COLLATE "C",
    instruction  text NOT NULL,
    created_at   bigint NOT NULL,
    updated_at   bigint NOT NULL
);
CREATE INDEX abilities_skillset ON abilities (skillset_id, id);
CREATE INDEX abilities_meta ON abilities USING gin (meta jsonb_path_ops);

-- A secret's value is write-only: no query that feeds a response selects it.
CREATE TABLE secrets (
    id           text COLLATE "C" PRIMARY KEY,
    account_id   text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    alias        text,
    name         text,
    description  text,
    meta         jsonb NOT NULL DEFAULT '{}',
    blueprint_id text COLLATE "C",
    kind         text,
    type         text,
    value        text,
    config       jsonb,
    visibility   text,
    contact_id   text COLLATE "C",
    created_at   bigint NOT NULL,
    updated_at   bigint NOT NULL
);
CREATE INDEX secrets_account ON secrets (account_id, id);
CREATE INDEX secrets_contact ON secrets (contact_id, id);
CREATE INDEX secrets_meta ON secrets USING gin (meta jsonb_path_ops);

CREATE TABLE memories (
    id          text COLLATE "C" PRIMARY KEY,
    account_id  text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name        text,
    description text,
    meta        jsonb NOT NULL DEFAULT '{}',
    contact_id  text COLLATE "C",
    bot_id      text COLLATE "C",
    text        text NOT NULL,
    created_at  bigint NOT NULL,
    updated_at  bigint NOT NULL
);
CREATE INDEX memories_account ON memories (account_id, id);
CREATE INDEX memories_contact ON memories (contact_id, id);
CREATE INDEX memories_meta ON memories USING gin (meta jsonb_path_ops);

CREATE TABLE files (
    id           text COLLATE "C" PRIMARY KEY,
    account_id   text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    alias        text,
    name         text,
    description  text,
    meta         jsonb NOT NULL DEFAULT '{}',
    blueprint_id text COLLATE "C",
    visibility   text,
    type         text,
    size         bigint,
    created_at   bigint NOT NULL,
    updated_at   bigint NOT NULL
);
CREATE INDEX files_account ON files (account_id, id);
CREATE INDEX files_meta ON files USING gin (meta jsonb_path_ops);

CREATE TABLE tasks (
    id               text COLLATE "C" PRIMARY KEY,
    account_id       text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name             text,
    description      text,
    meta             jsonb NOT NULL DEFAULT '{}',
    contact_id       text COLLATE "C",
    bot_id           text COLLATE "C",
    schedule         text,
    timezone         text,
    session_duration double precision,
    max_iterations   double precision,
    max_time         double precision,
    status           text NOT NULL DEFAULT 'idle',
    outcome          text NOT NULL DEFAULT 'pending',
    last_run_at      bigint,
    next_run_at      bigint,
    created_at       bigint NOT NULL,
    updated_at       bigint NOT NULL
);
CREATE INDEX tasks_account ON tasks (account_id, id);
CREATE INDEX tasks_contact ON tasks (contact_id, id);
CREATE INDEX tasks_meta ON tasks USING gin (meta jsonb_path_ops);

-- Up- and down-votes on bots, conversations and messages.
CREATE TABLE ratings (
    id              text COLLATE "C" PRIMARY KEY,
    account_id      text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name            text,
    description     text,
    meta            jsonb NOT NULL DEFAULT '{}',
    contact_id      text COLLATE "C",
    bot_id          text COLLATE "C",
    conversation_id text COLLATE "C",
    message_id      text COLLATE "C",
    value           integer NOT NULL,
    reason          text,
    created_at      bigint NOT NULL,
    updated_at      bigint NOT NULL
);
CREATE INDEX ratings_contact ON ratings (contact_id, id);

-- Files attached to datasets as record sources.
CREATE TABLE dataset_files (
    dataset_id text COLLATE "C" NOT NULL REFERENCES datasets (id) ON DELETE CASCADE,
    file_id    text COLLATE "C" NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    account_id text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    type       text NOT NULL DEFAULT 'source',
    created_at bigint NOT NULL,
    PRIMARY KEY (dataset_id, file_id)
);
