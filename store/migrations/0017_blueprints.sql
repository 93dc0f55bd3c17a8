-- Blueprints group resources that carry their blueprint_id; policies, portals and the
-- contexts a partner keeps per child account.
CREATE TABLE blueprints (
    id          text COLLATE "C" PRIMARY KEY,
    account_id  text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    alias       text,
    name        text,
    description text,
    meta        jsonb NOT NULL DEFAULT '{}',
    visibility  text,
    created_at  bigint NOT NULL,
    updated_at  bigint NOT NULL
);
CREATE INDEX blueprints_account ON blueprints (account_id, id);
CREATE INDEX blueprints_meta ON blueprints USING gin (meta jsonb_path_ops);

CREATE TABLE policies (
    id           text COLLATE "C" PRIMARY KEY,
    account_id   text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    alias        text,
    name         text,
    description  text,
    meta         jsonb NOT NULL DEFAULT '{}',
    blueprint_id text COLLATE "C",
    bot_id       text COLLATE "C",
    type         text NOT NULL,
    config       jsonb,
    created_at   bigint NOT NULL,
    updated_at   bigint NOT NULL
);
CREATE INDEX policies_account ON policies (account_id, id);
CREATE INDEX policies_meta ON policies USING gin (meta jsonb_path_ops);
-- the retention sweep finds the accounts that have a retention policy
CREATE INDEX policies_type ON policies (type, account_id);

CREATE TABLE portals (
    id           text COLLATE "C" PRIMARY KEY,
    account_id   text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    alias        text,
    name         text,
    description  text,
    meta         jsonb NOT NULL DEFAULT '{}',
    blueprint_id text COLLATE "C",
    slug         text,
    config       jsonb,
    created_at   bigint NOT NULL,
    updated_at   bigint NOT NULL
);
CREATE INDEX portals_account ON portals (account_id, id);
CREATE INDEX portals_meta ON portals USING gin (meta jsonb_path_ops);

-- A child account's context records: owned by the child, managed by its parent.
CREATE TABLE partner_contexts (
    id           text COLLATE "C" PRIMARY KEY,
    account_id   text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    user_id      text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name         text,
    description  text,
    meta         jsonb NOT NULL DEFAULT '{}',
    blueprint_id text COLLATE "C",
    bot_id       text COLLATE "C",
    dataset_id   text COLLATE "C",
    skillset_id  text COLLATE "C",
    payload      jsonb,
    created_at   bigint NOT NULL,
    updated_at   bigint NOT NULL
);
CREATE INDEX partner_contexts_user ON partner_contexts (user_id, id);

ALTER TABLE tasks ADD COLUMN blueprint_id text COLLATE "C";

-- an oauth secret's pending authorization: the one state its callback may complete (once)
ALTER TABLE secrets ADD COLUMN oauth_state text;

-- blueprint/{id}/resource/list and export read each kind by its blueprint
CREATE INDEX bots_blueprint ON bots (blueprint_id, id) WHERE blueprint_id IS NOT NULL;
CREATE INDEX datasets_blueprint ON datasets (blueprint_id, id) WHERE blueprint_id IS NOT NULL;
CREATE INDEX skillsets_blueprint ON skillsets (blueprint_id, id) WHERE blueprint_id IS NOT NULL;
CREATE INDEX secrets_blueprint ON secrets (blueprint_id, id) WHERE blueprint_id IS NOT NULL;
CREATE INDEX files_blueprint ON files (blueprint_id, id) WHERE blueprint_id IS NOT NULL;
CREATE INDEX tasks_blueprint ON tasks (blueprint_id, id) WHERE blueprint_id IS NOT NULL;
CREATE INDEX policies_blueprint ON policies (blueprint_id, id) WHERE blueprint_id IS NOT NULL;
CREATE INDEX portals_blueprint ON portals (blueprint_id, id) WHERE blueprint_id IS NOT NULL;
-- retention: an account's conversations by when they last changed
CREATE INDEX conversations_idle ON conversations (account_id, updated_at);
