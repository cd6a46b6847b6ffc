-- Worksheets become documents: see postgres/0004_documents.sql, the same tables.

CREATE TABLE document_updates (
    worksheet_id TEXT NOT NULL REFERENCES worksheets (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    data         BLOB NOT NULL,
    user_id      TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (worksheet_id, seq)
);

CREATE TABLE document_snapshots (
    worksheet_id TEXT PRIMARY KEY REFERENCES worksheets (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    data         BLOB NOT NULL,
    created_at   TEXT NOT NULL
);

CREATE TABLE cell_records (
    worksheet_id    TEXT NOT NULL REFERENCES worksheets (id) ON DELETE CASCADE,
    cell_id         TEXT NOT NULL,
    version         INTEGER NOT NULL DEFAULT 1,
    outputs         TEXT NOT NULL DEFAULT '[]',
    execution_count INTEGER,
    run_msg_id      TEXT,
    outputs_seq     INTEGER NOT NULL DEFAULT 0,
    run_by          TEXT,
    run_at          TEXT,
    PRIMARY KEY (worksheet_id, cell_id)
);
CREATE INDEX cell_records_cell ON cell_records (cell_id);
CREATE INDEX cell_records_run ON cell_records (run_msg_id);

INSERT INTO cell_records (worksheet_id, cell_id, version, outputs, execution_count, run_msg_id,
                          outputs_seq, run_by, run_at)
SELECT worksheet_id, id, version, outputs, execution_count, run_msg_id, outputs_seq,
       run_by, run_at
FROM cells;
