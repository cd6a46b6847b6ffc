-- Sessions started on their own (session.create), with no worksheet: who owns each.

CREATE TABLE bare_sessions (
    session    text PRIMARY KEY,
    owner_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL
);
CREATE INDEX bare_sessions_owner ON bare_sessions (owner_id);
