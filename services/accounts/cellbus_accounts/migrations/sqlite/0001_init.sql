-- Users, tokens, worksheets, sharing, cells and their saved outputs (the embedded store).
-- The same tables as migrations/postgres/0001_init.sql; uuids and times are TEXT here.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL
);

CREATE TABLE api_tokens (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash BLOB NOT NULL UNIQUE,
    label      TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE worksheets (
    id         TEXT PRIMARY KEY,
    title      TEXT NOT NULL,
    owner_id   TEXT NOT NULL REFERENCES users (id),
    session    TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE memberships (
    worksheet_id TEXT NOT NULL REFERENCES worksheets (id) ON DELETE CASCADE,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role         TEXT NOT NULL CHECK (role IN ('viewer', 'editor', 'owner')),
    PRIMARY KEY (worksheet_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE cells (
    id              TEXT PRIMARY KEY,
    worksheet_id    TEXT NOT NULL REFERENCES worksheets (id) ON DELETE CASCADE,
    position        TEXT NOT NULL,
    source          TEXT NOT NULL,
    version         INTEGER NOT NULL,
    outputs         TEXT NOT NULL DEFAULT '[]',
    execution_count INTEGER,
    run_msg_id      TEXT,
    outputs_seq     INTEGER NOT NULL DEFAULT 0,
    run_by          TEXT,
    run_at          TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (worksheet_id, position)
);
CREATE INDEX cells_run_msg ON cells (run_msg_id);
