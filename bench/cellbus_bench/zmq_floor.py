"""One ipykernel over raw ZMQ with jupyter_client, no web server: the floor of any web path.

Run by the bench with the Jupyter environment's Python (not imported by the bench). It starts
a kernel, says ``{"ready": true}``, then reads one JSON command per line from stdin and
answers each with one line of JSON on stdout:

- ``{"op": "run", "code": C, "n": N}``: runs C N times in sequence, each until its
  ``execute_reply`` (shell) and its ``idle`` status (iopub) have arrived, and answers
  ``{"latencies": [seconds, ...]}``.
- ``{"op": "stop"}``: shuts the kernel down and exits.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

from jupyter_client.manager import KernelManager

if TYPE_CHECKING:
    from jupyter_client.blocking import BlockingKernelClient

TIMEOUT = 60.0


def run_once(client: BlockingKernelClient, code: str) -> float:
    start = time.perf_counter()
    msg_id = client.execute(code)
    replied = idle = False
    while not (replied and idle):
        if not replied:
            reply = client.get_shell_msg(timeout=TIMEOUT)
            replied = reply["parent_header"].get("msg_id") == msg_id
        if not idle:
            msg = client.get_iopub_msg(timeout=TIMEOUT)
            idle = (
                msg["parent_header"].get("msg_id") == msg_id
                and msg["msg_type"] == "status"
                and msg["content"]["execution_state"] == "idle"
            )
    return time.perf_counter() - start


def main() -> None:
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel()
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=TIMEOUT)
    print(json.dumps({"ready": True}), flush=True)
    try:
        for line in sys.stdin:
            command = json.loads(line)
            if command["op"] == "stop":
                break
            latencies = [run_once(client, command["code"]) for _ in range(command["n"])]
            print(json.dumps({"latencies": latencies}), flush=True)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


if __name__ == "__main__":
    main()
