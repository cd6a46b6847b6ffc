"""Parallel cells: run a session's small calculations on many cores, across kernel workers.

    from cellbus import parallel
    results = parallel.map(simulate, range(1000))   # ordered results, a live progress bar
    futures = [parallel.submit(fit, chunk) for chunk in chunks]
    client = parallel.client()                      # Dask's own client (dask.dataframe...)

The work runs on Dask workers started for this session, in its sandbox (its workspace and
nothing else), on this kernel worker's cores first and then on other kernel workers'. Functions,
lambdas, closures and classes defined in cells travel to the workers by value (cloudpickle;
dill for what it cannot carry). Interrupting the cell cancels what waits and stops what runs.
See docs/parallel.md.
"""

from __future__ import annotations

import builtins
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from cellbus_kernel.cluster import CLUSTER, ParallelUnavailable
from cellbus_kernel.progress import MapState, Progress

if TYPE_CHECKING:
    from distributed import Client, Future

__all__ = ["ParallelUnavailable", "client", "map", "shutdown", "submit", "workers"]

CANCEL_GRACE = 2.0
"""Seconds running tasks get to stop after an interrupt before their workers are restarted
(a cancelled Dask task that runs goes on running otherwise)."""
WAIT_STEP = 0.2
"""Seconds between two looks at a map's progress."""


def client() -> Client:
    """The session's Dask client, its workers started: for ``dask.dataframe``, ``dask.array``
    and everything else Dask runs (it is also Dask's default client in this session)."""
    return CLUSTER.client()


def workers() -> int:
    """How many Dask workers the session has now (0 before the first use)."""
    return CLUSTER.workers


def submit(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
    """Run ``func(*args, **kwargs)`` on a worker; returns a Dask future (``.result()``)."""
    return CLUSTER.client().submit(_shippable(func), *args, pure=False, **kwargs)


def map(func: Callable[..., Any], *iterables: Iterable[Any], progress: bool = True) -> list[Any]:
    """``[func(*args) for args in zip(*iterables)]``, on the workers: the results in order.

    A live progress bar shows while it runs (``progress=False``: none), to everyone watching
    the session. An exception in a task is raised here with the worker's traceback and the
    input that failed; the other tasks are cancelled. An interrupt cancels every task."""
    inputs = [list(iterable) for iterable in iterables]
    total = min((len(items) for items in inputs), default=0)
    if total == 0:
        return []
    dask = CLUSTER.client()
    bar = Progress("parallel.map", total, CLUSTER.dashboard)
    bar.note = CLUSTER.note
    if progress:
        bar.show()
    futures = dask.map(_shippable(func), *(items[:total] for items in inputs), pure=False)
    try:
        finished = _wait(futures, bar)
    except BaseException:
        bar.finish(MapState.CANCELLED, sum(f.done() for f in futures), CLUSTER.workers)
        _cancel(futures)
        raise
    failed = next((i for i, future in enumerate(futures) if future.status == "error"), None)
    if failed is not None:
        bar.finish(MapState.FAILED, finished, CLUSTER.workers)
        error, traceback = futures[failed].exception(), futures[failed].traceback()
        dask.cancel(futures)
        _raise_remote(error, traceback, failed, [items[failed] for items in inputs])
    results = dask.gather(futures)
    bar.finish(MapState.DONE, total, CLUSTER.workers)
    return list(results)


def shutdown() -> None:
    """Stop the session's scheduler and workers now (the next use starts new ones)."""
    CLUSTER.shutdown()


def _wait(futures: list[Future], bar: Progress) -> int:
    """Wait for every future (or the first error), updating the bar; returns how many are
    done. Each future says when it is done (a callback in Dask's thread): asking Dask about
    all of them again and again cost its loop as much as the tasks (1,000 trivial ones)."""
    all_done = threading.Event()
    lock = threading.Lock()
    finished = 0

    def one_done(future: Future) -> None:
        nonlocal finished
        with lock:
            finished += 1
            if finished == len(futures) or future.status == "error":
                all_done.set()

    for future in futures:
        future.add_done_callback(one_done)
    while not all_done.wait(WAIT_STEP):
        bar.update(finished, CLUSTER.workers)
        CLUSTER.top_up()  # a worker lost with its kernel worker: ask for another
    return finished


def _cancel(futures: list[Future]) -> None:
    """Cancel every task; restart the workers still running one after `CANCEL_GRACE` (Dask
    forgets a cancelled task at once, but its thread runs on)."""
    dask = CLUSTER.client()
    keys = {future.key for future in futures}
    dask.cancel(futures, force=True)
    deadline = time.monotonic() + CANCEL_GRACE
    busy: list[str] = []
    while time.monotonic() < deadline:
        running = dask.run(_running_keys)
        busy = [worker for worker, active in running.items() if keys & set(active)]
        if not busy:
            return
        time.sleep(0.05)
    CLUSTER.restart_workers(busy)


def _running_keys(dask_worker: Any) -> list[Any]:
    """On a worker (``Client.run``): the keys of the tasks its threads run now."""
    return list(dask_worker.active_keys)


def _raise_remote(error: BaseException, traceback: Any, index: int, args: list[Any]) -> None:
    """Raise a task's exception with the worker's traceback, naming the input that failed."""
    shown = ", ".join(_short_repr(arg) for arg in args)
    error.add_note(f"parallel.map: the task for input #{index} ({shown}) failed on a Dask worker")
    raise error.with_traceback(traceback)


def _short_repr(value: Any, limit: int = 80) -> str:
    text = builtins.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Dilled:
    """A function cloudpickle cannot carry, carried by dill (``recurse``: with the cell's
    globals it uses), loaded on the worker at its first call."""

    def __init__(self, func: Callable[..., Any]) -> None:
        import dill

        self._data = dill.dumps(func, recurse=True)
        self._func: Callable[..., Any] | None = None
        self.__name__ = getattr(func, "__name__", "function")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._func is None:
            import dill

            self._func = dill.loads(self._data)
        return self._func(*args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        return {"_data": self._data, "_func": None, "__name__": self.__name__}


def _shippable(func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` as it can travel: itself when cloudpickle carries it (what cells define goes by
    value: the cell namespace is ``__main__``), else wrapped for dill."""
    import cloudpickle

    try:
        cloudpickle.dumps(func)
    except Exception:
        return _Dilled(func)
    return func
