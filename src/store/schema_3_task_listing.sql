-- Schema version 3: `list-tasks` walks this index in its display order (unscheduled
-- tasks last, then by next run, then by id), so listing needs no sort and can stream
-- one row at a time.
CREATE INDEX scheduled_tasks_listing ON scheduled_tasks(next_run IS NULL, next_run, id);
