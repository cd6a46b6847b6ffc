-- Kernels started through the Jupyter Server API (/api/kernels, /api/sessions): each is the
-- session of a worksheet made for it, so it is an ordinary cellbus session (shared, watched,
-- checkpointed); this row says that the kernel API lists it, under which kernelspec, and the
-- Jupyter session (/api/sessions: path, name, type) attached to it, if any. Deleting the
-- kernel deletes the row (the worksheet stays); deleting the worksheet deletes the row.

CREATE TABLE jupyter_kernels (
    session         TEXT PRIMARY KEY,
    worksheet_id    TEXT NOT NULL REFERENCES worksheets (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    jupyter_session TEXT UNIQUE,
    path            TEXT NOT NULL DEFAULT '',
    session_name    TEXT NOT NULL DEFAULT '',
    session_type    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX jupyter_kernels_worksheet ON jupyter_kernels (worksheet_id);
