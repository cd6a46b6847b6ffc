-- Worksheets become documents (Yjs, jupyter_ydoc's YNotebook schema): docs/protocol.md,
-- "The worksheet document". The document is the one source of truth for the cells' ids, types,
-- sources, metadata and order; `cell_records` keeps what lives beside it, per cell id: its
-- version, saved outputs and last run. The old `cells` table is read once per worksheet by
-- the conversion into a document (documents.py: Documents.convert_legacy) and no longer
-- written; a later migration drops it.

CREATE TABLE document_updates (
    worksheet_id uuid NOT NULL REFERENCES worksheets (id) ON DELETE CASCADE,
    seq          bigint NOT NULL,        -- 1, 2, ... per worksheet: the order of commits
    data         bytea NOT NULL,         -- a Yjs update (v1 encoding)
    user_id      uuid REFERENCES users (id) ON DELETE SET NULL,  -- NULL: cellbus itself
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (worksheet_id, seq)
);

CREATE TABLE document_snapshots (
    worksheet_id uuid PRIMARY KEY REFERENCES worksheets (id) ON DELETE CASCADE,
    seq          bigint NOT NULL,        -- the last update it includes
    data         bytea NOT NULL,         -- the whole document as one update
    created_at   timestamptz NOT NULL
);

CREATE TABLE cell_records (
    worksheet_id    uuid NOT NULL REFERENCES worksheets (id) ON DELETE CASCADE,
    cell_id         text NOT NULL,              -- the cell's id in the document
    version         integer NOT NULL DEFAULT 1, -- committed updates that changed the cell
    outputs         jsonb NOT NULL DEFAULT '[]',
    execution_count integer,
    run_msg_id      text,                       -- the execute_request the outputs belong to
    outputs_seq     bigint NOT NULL DEFAULT 0,  -- feed cursor of the last output saved
    run_by          text,
    run_at          timestamptz,
    PRIMARY KEY (worksheet_id, cell_id)
);
CREATE INDEX cell_records_cell ON cell_records (cell_id);
CREATE INDEX cell_records_run ON cell_records (run_msg_id);

INSERT INTO cell_records (worksheet_id, cell_id, version, outputs, execution_count, run_msg_id,
                          outputs_seq, run_by, run_at)
SELECT worksheet_id, id::text, version, outputs, execution_count, run_msg_id, outputs_seq,
       run_by, run_at
FROM cells;
