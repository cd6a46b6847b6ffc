-- Kernels started through the Jupyter Server API (/api/kernels, /api/sessions): each is the
-- session of a worksheet made for it, so it is an ordinary cellbus session (shared, watched,
-- checkpointed); this row says that the kernel API lists it, under which kernelspec, and the
-- Jupyter session (/api/sessions: path, name, type) attached to it, if any. Deleting the
-- kernel deletes the row (the worksheet stays); deleting the worksheet deletes the row.

CREATE TABLE jupyter_kernels (
    session         text PRIMARY KEY,       -- the worksheet's session: the kernel's id
    worksheet_id    uuid NOT NULL REFERENCES worksheets (id) ON DELETE CASCADE,
    name            text NOT NULL,          -- the kernelspec it was started as
    created_at      timestamptz NOT NULL,
    jupyter_session text UNIQUE,            -- the /api/sessions id attached, or NULL
    path            text NOT NULL DEFAULT '',
    session_name    text NOT NULL DEFAULT '',
    session_type    text NOT NULL DEFAULT ''
);
CREATE INDEX jupyter_kernels_worksheet ON jupyter_kernels (worksheet_id);
