-- Named checkpoints of worksheets' documents: see postgres/0006_document_checkpoints.sql, the
-- same table.

CREATE TABLE document_checkpoints (
    id           TEXT PRIMARY KEY,
    worksheet_id TEXT NOT NULL REFERENCES worksheets (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    data         BLOB NOT NULL,
    seq          INTEGER NOT NULL,
    user_id      TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at   TEXT NOT NULL
);
CREATE INDEX document_checkpoints_worksheet ON document_checkpoints (worksheet_id, created_at);
