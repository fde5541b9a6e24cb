-- Schema version 1. Times are INTEGER milliseconds since the Unix epoch (UTC), so
-- they sort and compare as numbers; the CLI renders them as RFC 3339.

-- Every chat the daemon has seen, registered or not (metadata only).
CREATE TABLE chats (
    jid             TEXT PRIMARY KEY,
    name            TEXT,
    channel         TEXT NOT NULL,           -- 'discord' | 'local'
    last_message_at INTEGER
);

-- Inbound and outbound chat messages. `id` only ever grows (AUTOINCREMENT never
-- reuses a value), so it serves as the router's cursor.
CREATE TABLE messages (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_jid     TEXT NOT NULL,
    external_id  TEXT,                        -- the platform's message id, for de-duplication
    sender_id    TEXT NOT NULL,
    sender_name  TEXT NOT NULL,
    content      TEXT NOT NULL,
    sent_at      INTEGER NOT NULL,
    is_from_bot  INTEGER NOT NULL DEFAULT 0,  -- the assistant's own messages never trigger it
    mentions_bot INTEGER NOT NULL DEFAULT 0   -- a real @mention of the bot
);
CREATE UNIQUE INDEX messages_external ON messages(chat_jid, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX messages_chat ON messages(chat_jid, id);

CREATE TABLE registered_groups (
    jid              TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    folder           TEXT NOT NULL UNIQUE,
    trigger_word     TEXT NOT NULL,
    requires_trigger INTEGER NOT NULL DEFAULT 1,
    is_main          INTEGER NOT NULL DEFAULT 0,
    container_config TEXT,                    -- JSON, NULL for the defaults
    added_at         INTEGER NOT NULL
);
-- At most one main group.
CREATE UNIQUE INDEX registered_groups_one_main ON registered_groups(is_main) WHERE is_main = 1;

CREATE TABLE scheduled_tasks (
    id             TEXT PRIMARY KEY,
    group_folder   TEXT NOT NULL,
    chat_jid       TEXT NOT NULL,
    prompt         TEXT NOT NULL,
    schedule_type  TEXT NOT NULL CHECK (schedule_type IN ('cron', 'interval', 'once')),
    schedule_value TEXT NOT NULL,
    context_mode   TEXT NOT NULL CHECK (context_mode IN ('group', 'isolated')),
    timezone       TEXT NOT NULL,
    next_run       INTEGER,
    last_run       INTEGER,
    last_result    TEXT,
    status         TEXT NOT NULL CHECK (status IN ('active', 'paused', 'completed', 'failed')),
    created_by     TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE INDEX scheduled_tasks_due ON scheduled_tasks(status, next_run);
CREATE INDEX scheduled_tasks_group ON scheduled_tasks(group_folder);

-- One row per run: inserted as 'running' when the run is claimed, finished in place.
CREATE TABLE task_run_logs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id     TEXT NOT NULL REFERENCES scheduled_tasks(id) ON DELETE CASCADE,
    due_at      INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    duration_ms INTEGER,
    status      TEXT NOT NULL CHECK (status IN ('running', 'success', 'error', 'interrupted')),
    result      TEXT,
    error       TEXT
);
CREATE INDEX task_run_logs_task ON task_run_logs(task_id, id);

-- The agent thread each group resumes (context_mode = group).
CREATE TABLE sessions (
    group_folder TEXT PRIMARY KEY,
    thread_id    TEXT NOT NULL,
    updated_at   INTEGER NOT NULL
);

CREATE TABLE group_skills (
    group_folder TEXT NOT NULL,
    skill_name   TEXT NOT NULL,
    enabled      INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (group_folder, skill_name)
);

-- How far the router has answered each chat: the last message id handed to an agent
-- whose reply is durably queued.
CREATE TABLE router_cursors (
    chat_jid        TEXT PRIMARY KEY,
    last_message_id INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);

-- Replies waiting to be sent. A sent row is marked, not deleted: a crash between
-- "sent" and "marked" re-sends with the same nonce, which the channel de-duplicates.
CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_jid   TEXT NOT NULL,
    text       TEXT NOT NULL,
    nonce      TEXT NOT NULL UNIQUE,
    origin     TEXT NOT NULL,                 -- 'reply' | 'task:<id>' | 'ipc:<folder>' | 'error'
    created_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    sent_at    INTEGER
);
CREATE INDEX outbox_pending ON outbox(id) WHERE sent_at IS NULL;

-- Every IPC request ever applied, keyed by the sending folder and the request id:
-- the effect and this row commit together, so a request is applied exactly once.
CREATE TABLE ipc_ledger (
    group_folder TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    request_type TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('ok', 'denied', 'invalid', 'error')),
    response     TEXT NOT NULL,               -- the JSON response written for the agent
    applied_at   INTEGER NOT NULL,
    PRIMARY KEY (group_folder, request_id)
);
