-- Scheduled tasks: each process running jobs looks for due ones by this index
-- (resources/task.py fire_due), SELECT ... FOR UPDATE SKIP LOCKED, so one fires each.
CREATE INDEX tasks_due ON tasks (next_run_at) WHERE next_run_at IS NOT NULL;
