-- Schema version 2 (scheduler): run logs can record a 'skipped' occurrence (the task's
-- previous run was still in flight when the next one came due), and finding a task's
-- in-flight run is an index lookup. SQLite cannot alter a CHECK constraint, so the
-- table is rebuilt; its AUTOINCREMENT counter is carried over so a run id is never
-- reused (a late completion must never land on someone else's row).
CREATE TABLE task_run_logs_v2 (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id     TEXT NOT NULL REFERENCES scheduled_tasks(id) ON DELETE CASCADE,
    due_at      INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    duration_ms INTEGER,
    status      TEXT NOT NULL CHECK (status IN ('running', 'success', 'error', 'interrupted', 'skipped')),
    result      TEXT,
    error       TEXT
);
INSERT INTO task_run_logs_v2 (id, task_id, due_at, started_at, finished_at, duration_ms, status, result, error)
    SELECT id, task_id, due_at, started_at, finished_at, duration_ms, status, result, error FROM task_run_logs;
DELETE FROM sqlite_sequence WHERE name = 'task_run_logs_v2';
UPDATE sqlite_sequence SET name = 'task_run_logs_v2' WHERE name = 'task_run_logs';
DROP TABLE task_run_logs;
ALTER TABLE task_run_logs_v2 RENAME TO task_run_logs;
CREATE INDEX task_run_logs_task ON task_run_logs(task_id, id);
CREATE INDEX task_run_logs_in_flight ON task_run_logs(task_id) WHERE status = 'running';
