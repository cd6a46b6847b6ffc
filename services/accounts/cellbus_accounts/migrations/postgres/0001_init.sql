-- Users, tokens, worksheets, sharing, cells and their saved outputs.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    is_admin      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL
);

CREATE TABLE api_tokens (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash bytea NOT NULL UNIQUE,   -- sha256 of the token; the token itself is never stored
    label      text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE worksheets (
    id         uuid PRIMARY KEY,
    title      text NOT NULL,
    owner_id   uuid NOT NULL REFERENCES users (id),
    session    text NOT NULL UNIQUE,     -- the UID of the session that runs its code
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE TABLE memberships (
    worksheet_id uuid NOT NULL REFERENCES worksheets (id) ON DELETE CASCADE,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role         text NOT NULL CHECK (role IN ('viewer', 'editor', 'owner')),
    PRIMARY KEY (worksheet_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE cells (
    id              uuid PRIMARY KEY,
    worksheet_id    uuid NOT NULL REFERENCES worksheets (id) ON DELETE CASCADE,
    position        text COLLATE "C" NOT NULL,  -- fractional key: order is byte order
    source          text NOT NULL,
    version         integer NOT NULL,
    outputs         jsonb NOT NULL DEFAULT '[]',
    execution_count integer,
    run_msg_id      text,                       -- the execute_request the outputs belong to
    outputs_seq     bigint NOT NULL DEFAULT 0,  -- feed cursor of the last output saved
    run_by          text,
    run_at          timestamptz,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    UNIQUE (worksheet_id, position)
);
CREATE INDEX cells_run_msg ON cells (run_msg_id);
