-- Sessions started on their own (session.create), with no worksheet: who owns each.

CREATE TABLE bare_sessions (
    session    TEXT PRIMARY KEY,
    owner_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL
);
CREATE INDEX bare_sessions_owner ON bare_sessions (owner_id);
