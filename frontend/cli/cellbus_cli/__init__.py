"""cellbus command-line client: speaks only JSON-RPC (POST {url}/rpc) and the feed WebSocket
({url}/ws) to a cellbus server, and imports nothing from the server's packages.

```
main.py        argparse: global options, subcommands, errors -> one stderr line + exit status
commands/      account.py (register, login, logout, whoami), worksheets.py (ls, new, show,
               share, export, import), running.py (run, exec, tail, repl)
repl.py        the interactive prompt (prompt_toolkit), and piped scripts
context.py     Context: the server URL, the stored token (sent only to its own server)
config.py      the config dir (0700) and config.json (0600, replaced atomically)
client.py      RpcClient: JSON-RPC 2.0 over aiohttp with a bearer token
feed.py        FeedSocket: the feed WebSocket, reconnecting and resuming from the last cursor
follow.py      one request's outputs until its idle; everything, for tail
render.py      feed messages and saved outputs as text (pure functions)
terminal.py    Printer: stdout/stderr, ANSI kept on a tty and stripped otherwise
resolve.py     WORKSHEET / SESSION arguments: id, id prefix, title
errors.py      RpcError, ServerUnreachable, CliError; the exit statuses
```

For tests and scripts: every command takes `--url` and `--config-dir` (or
$CELLBUS_CONFIG_DIR), `--password-stdin` logs in without a terminal, and `main(argv)` returns
the exit status instead of exiting.
"""
