"""cellbus against Jupyter, measured in one run on one machine (``make bench``).

- `systems`: each system started as its users start it, and driven over the browser's path
  (`CellbusSystem`: ``cellbus serve`` or the separate services; `JupyterSystem`:
  jupyter_server with ipykernel, in a virtual environment of its own; `ZmqFloor`: a kernel
  over raw ZMQ, no web server).
- `jupyter`: also `JupyterLabSystem`, JupyterLab with jupyter-collaboration in an
  environment of its own (``bench/.jupyterlab-venv``), for the browser workloads.
- `browser`: the browser workloads' parts (issue 15): Chromium through Playwright, each
  system as two people use it in the browser (`CellbusSide`, `JupyterLabSide`), a keystroke
  timed from one page to the other (`Typing`), a notebook's opening (`open_notebook`).
- `workloads`: one function per workload, the same for every system, taking turns.
- `measure`: percentiles, memory from ``/proc/PID/smaps_rollup``, the machine.
- `report`: the JSON of every figure, the Markdown table and the latency plot.

Run it as ``.venv/bin/python -m bench.cellbus_bench [--quick | --smoke] [--out DIR]`` from
the checkout (``make bench``, ``make bench-quick``); docs/performance.md explains the figures.
"""
