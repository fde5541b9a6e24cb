-- Schema version 5: how many active tasks each group has, kept by triggers, so the
-- per-group task limit that every task an agent creates is checked against costs one
-- row, not a walk over the group's tasks. Whatever changes a task (IPC, CLI,
-- scheduler, a hand-written UPDATE) keeps the count right.
CREATE TABLE group_active_tasks (
    group_folder TEXT PRIMARY KEY,
    active       INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO group_active_tasks (group_folder, active)
    SELECT group_folder, COUNT(*) FROM scheduled_tasks WHERE status = 'active' GROUP BY group_folder;

CREATE TRIGGER group_active_tasks_insert AFTER INSERT ON scheduled_tasks
WHEN NEW.status = 'active'
BEGIN
    INSERT INTO group_active_tasks (group_folder, active) VALUES (NEW.group_folder, 1)
        ON CONFLICT (group_folder) DO UPDATE SET active = active + 1;
END;

CREATE TRIGGER group_active_tasks_delete AFTER DELETE ON scheduled_tasks
WHEN OLD.status = 'active'
BEGIN
    UPDATE group_active_tasks SET active = active - 1 WHERE group_folder = OLD.group_folder;
END;

CREATE TRIGGER group_active_tasks_update AFTER UPDATE OF status, group_folder ON scheduled_tasks
WHEN (OLD.status = 'active') != (NEW.status = 'active') OR OLD.group_folder != NEW.group_folder
BEGIN
    UPDATE group_active_tasks SET active = active - 1
        WHERE OLD.status = 'active' AND group_folder = OLD.group_folder;
    INSERT INTO group_active_tasks (group_folder, active)
        SELECT NEW.group_folder, 1 WHERE NEW.status = 'active'
        ON CONFLICT (group_folder) DO UPDATE SET active = active + 1;
END;
