-- The event log (resources/event.py): what happened in an account, written in the
-- transaction of the change it records. Pruned by age (BOTKIT_EVENT_RETENTION_DAYS).
CREATE TABLE events (
    id              text COLLATE "C" PRIMARY KEY,
    account_id      text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    type            text NOT NULL,
    name            text,
    description     text,
    meta            jsonb NOT NULL DEFAULT '{}',
    conversation_id text COLLATE "C",
    task_id         text COLLATE "C",
    contact_id      text COLLATE "C",
    bot_id          text COLLATE "C",
    dataset_id      text COLLATE "C",
    record_id       text COLLATE "C",
    skillset_id     text COLLATE "C",
    ability_id      text COLLATE "C",
    file_id         text COLLATE "C",
    secret_id       text COLLATE "C",
    created_at      bigint NOT NULL,
    updated_at      bigint NOT NULL
);
CREATE INDEX events_account ON events (account_id, id);
CREATE INDEX events_type ON events (account_id, type, id);
CREATE INDEX events_meta ON events USING gin (meta jsonb_path_ops);

-- Accounts whose event log someone is subscribed to, by which process, until when: a
-- write NOTIFYs its event only for these (a NOTIFY serialises commits, so events that
-- nobody watches live are not announced).
CREATE TABLE event_taps (
    account_id text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    process    text COLLATE "C" NOT NULL,
    expires_at bigint NOT NULL,
    PRIMARY KEY (account_id, process)
);

-- The job queue (store/queue.py): background work that survives the process running it.
-- A job is due when queued and its run_at has come, or running and its lease expired
-- (the holder died): `due_at` is the one of the two that applies.
CREATE TABLE jobs (
    id         text COLLATE "C" PRIMARY KEY,
    account_id text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind       text NOT NULL,
    key        text COLLATE "C",
    payload    jsonb NOT NULL,
    state      text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed', 'canceled')),
    attempts   integer NOT NULL DEFAULT 0,
    due_at     bigint NOT NULL,
    holder     text,
    error      text,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    UNIQUE (account_id, kind, key)
);
CREATE INDEX jobs_due ON jobs (due_at) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_finished ON jobs (updated_at) WHERE state IN ('done', 'failed', 'canceled');
