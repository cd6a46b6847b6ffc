-- Named checkpoints of worksheets' documents (JupyterLab's "Save and create checkpoint"):
-- each row is the document's cells and metadata as of update `seq`, encoded as one Yjs update
-- (v1) of a document holding just that (no history), with its name, who saved it and when.
-- Restoring one is a new edit of the document (history is never rewritten); a worksheet keeps
-- at most 100 of them, the oldest dropped (store/checkpoints.py). Deleting the worksheet
-- deletes them; a user deleted leaves their checkpoints without an author.

CREATE TABLE document_checkpoints (
    id           uuid PRIMARY KEY,
    worksheet_id uuid NOT NULL REFERENCES worksheets (id) ON DELETE CASCADE,
    name         text NOT NULL,
    data         bytea NOT NULL,         -- the document's state as one Yjs update (v1)
    seq          bigint NOT NULL,        -- the document's last update it includes
    user_id      uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL
);
CREATE INDEX document_checkpoints_worksheet ON document_checkpoints (worksheet_id, created_at);
