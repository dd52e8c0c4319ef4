"""Run jobs in worker processes that each hold one shared state (the model), one thread each.

NUTS on a small model is latency-bound, so validators score many independent tasks in
parallel, one process per core. `map_in_workers(fn, jobs, workers=..., init_state=...)`
returns ``[fn(init_state, job) for job in jobs]``, in job order. Each worker receives
`init_state` once when it starts (not once per job) and keeps it in a local variable of its
own loop, so no module-level state is involved. Every worker, and the caller's own process
while ``workers == 1``, runs torch on one thread: two workers with torch's default thread
pool each oversubscribe the cores many times over.

Jobs and seeds do not depend on `workers`, so neither do the results; only wall times do.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import torch

__all__ = ["map_in_workers", "one_torch_thread"]

S = TypeVar("S")
J = TypeVar("J")
R = TypeVar("R")

_POLL_SECONDS = 1.0  # how often the caller checks that its workers are still alive


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run the block with torch on one thread, then restore the previous thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def map_in_workers(
    fn: Callable[[S, J], R],
    jobs: Iterable[J],
    *,
    workers: int = 1,
    init_state: S,
    progress: bool = False,
    description: str = "working",
) -> list[R]:
    """``[fn(init_state, job) for job in jobs]``, run by `workers` processes.

    Args:
        fn: a module-level (picklable) function of the state and one job.
        jobs: picklable job descriptions; results come back in their order.
        workers: processes to use; 1 runs every job in this process (still one thread).
        init_state: what every job needs (e.g. the model and the prior), sent to each
            worker once when it starts; it must pickle when ``workers > 1``.
        progress: show a rich progress bar over the jobs.
        description: the progress bar's label.

    Raises:
        ValueError: `workers` is not positive.
        RuntimeError: a job raised in a worker (the worker's traceback is in the message),
            or a worker process died.
    """
    if workers < 1:
        raise ValueError(f"workers must be positive, got {workers}")
    jobs = list(jobs)
    with one_torch_thread():
        if workers == 1 or len(jobs) <= 1:
            results: Iterable[R] = (fn(init_state, job) for job in jobs)
        else:
            results = _in_processes(fn, init_state, jobs, min(workers, len(jobs)))
        if progress:
            from rich.progress import track

            results = track(results, total=len(jobs), description=description)
        return list(results)


def _serve(fn: Callable[[S, J], R], state: S, todo: Any, done: Any) -> None:
    """A worker's loop: take (index, job) until the None sentinel, send back the result."""
    torch.set_num_threads(1)
    while (item := todo.get()) is not None:
        index, job = item
        try:
            done.put((index, True, fn(state, job)))
        except Exception:  # noqa: BLE001 - sent to the caller, which raises it
            done.put((index, False, traceback.format_exc()))


def _in_processes(
    fn: Callable[[S, J], R], state: S, jobs: Sequence[J], workers: int
) -> Iterator[R]:
    """Yield the results in job order while `workers` spawned processes compute them."""
    context = multiprocessing.get_context("spawn")
    todo, done = context.Queue(), context.Queue()
    for item in enumerate(jobs):
        todo.put(item)
    for _ in range(workers):
        todo.put(None)
    processes = [
        context.Process(target=_serve, args=(fn, state, todo, done), daemon=True)
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        finished: dict[int, R] = {}
        for index in range(len(jobs)):
            while index not in finished:
                got, ok, value = _next_result(done, processes)
                if not ok:
                    raise RuntimeError(f"job {got} failed in a worker process:\n{value}")
                finished[got] = value
            yield finished.pop(index)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()


def _next_result(done: Any, processes: list[Any]) -> tuple[int, bool, Any]:
    """The next (index, ok, value) from the workers; raises if one of them died."""
    while True:
        try:
            return done.get(timeout=_POLL_SECONDS)
        except queue.Empty:
            codes = [p.exitcode for p in processes]
            if any(code not in (None, 0) for code in codes) or None not in codes:
                raise RuntimeError(
                    f"worker processes exited (exit codes {codes}) before finishing their jobs"
                ) from None
