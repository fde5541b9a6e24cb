-- Schema version 4: an occurrence that comes due while the task's previous run is still
-- in flight is counted on that run (`skipped`), instead of a row of its own each: a
-- 1-second schedule behind a 10-minute run adds one number, not 600 rows.
ALTER TABLE task_run_logs ADD COLUMN skipped INTEGER NOT NULL DEFAULT 0;
