"""The per-task overhead workload's peer: plain Dask in a plain Python process.

Run by the bench (``python -m bench.cellbus_bench.dask_peer``, from the checkout, with the
bench's own Python: the same Dask as cellbus's sessions). It starts
``distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
dashboard_address=None)`` and a client, maps a few tasks (untimed, the workers' first use),
says ``{"ready": true, "start_s": S}`` and then reads one JSON command per line from stdin,
answering each with one line of JSON on stdout:

- ``{"op": "map", "n": N}``: times ``client.gather(client.map(inc, range(N), pure=False))``
  and answers ``{"seconds": S}`` (the results are checked).
- ``{"op": "stop"}``: closes the client and the cluster and exits.

`inc` is defined in this module, which runs as ``__main__``: cloudpickle sends it by value, as
it sends a function defined in a cell.
"""

from __future__ import annotations

import json
import sys
import time

WARMUP_TASKS = 10


def inc(x: int) -> int:
    return x + 1


def main() -> None:
    from distributed import Client, LocalCluster

    started = time.perf_counter()
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = Client(cluster)
    client.wait_for_workers(2)
    start_s = time.perf_counter() - started
    client.gather(client.map(inc, range(WARMUP_TASKS), pure=False))
    workers = len(client.scheduler_info()["workers"])
    print(json.dumps({"ready": True, "start_s": start_s, "workers": workers}), flush=True)
    try:
        for line in sys.stdin:
            command = json.loads(line)
            if command["op"] == "stop":
                break
            n = command["n"]
            clock = time.perf_counter()
            results = client.gather(client.map(inc, range(n), pure=False))
            seconds = time.perf_counter() - clock
            if results != list(range(1, n + 1)):
                raise RuntimeError("wrong results")
            print(json.dumps({"seconds": seconds}), flush=True)
    finally:
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
