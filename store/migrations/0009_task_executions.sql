-- A task's executions (issue 13): each one a run of the task's bot on its description,
-- iteration after iteration, queued as a job (kind task.execution) and ended with an
-- outcome and a summary. The transcript is the conversation's messages.
CREATE TABLE task_executions (
    id              text COLLATE "C" PRIMARY KEY,
    account_id      text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    task_id         text COLLATE "C" NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    conversation_id text COLLATE "C",
    job_id          text COLLATE "C",
    name            text,
    description     text,
    meta            jsonb NOT NULL DEFAULT '{}',
    status          text NOT NULL DEFAULT 'idle' CHECK (status IN ('idle', 'running', 'canceled')),
    outcome         text NOT NULL DEFAULT 'pending' CHECK (outcome IN ('pending', 'success', 'failure')),
    summary         text,
    iterations      integer NOT NULL DEFAULT 0,  -- done so far (a resumed execution goes on from here)
    completed_at    timestamptz,
    created_at      bigint NOT NULL,
    updated_at      bigint NOT NULL
);
CREATE INDEX task_executions_task ON task_executions (task_id, id);
CREATE INDEX task_executions_meta ON task_executions USING gin (meta jsonb_path_ops);
