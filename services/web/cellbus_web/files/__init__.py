"""A worksheet's files: its workspace (``<CELLBUS_WORKSPACES_DIR>/<session>``), served by the
web service straight from the volume it shares with the kernel workers.

- `confine`: a user's path, walked inside the workspace without following anything;
- `ops`: list, stat, usage, small text files, folders, moves and deletes;
- `access`: who may do what (the worksheet's roles), and ``files_changed`` on the feed;
- `http`: ``GET`` and ``PUT /files/{worksheet}/{path}``, streamed and resumable.

The JSON-RPC methods (``files.*``) are in `cellbus_web.methods.files`. Why the web service
serves files itself rather than asking a kernel worker over the bus: docs/architecture.md.
"""
