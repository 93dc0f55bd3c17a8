-- maxCalls: the tool calls a task's execution may make across all its iterations
-- (0 or null: unbounded), and the count an execution has made (a resumed one goes on).
ALTER TABLE tasks ADD COLUMN max_calls double precision;
ALTER TABLE task_executions ADD COLUMN calls integer NOT NULL DEFAULT 0;
-- resumeAt (the reference's field): when a paused execution is expected to go on.
ALTER TABLE task_executions ADD COLUMN resume_at timestamptz;
