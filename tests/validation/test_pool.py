"""The worker pool: results in job order, one torch thread, failures raised in the caller."""

from __future__ import annotations

import os

import pytest
import torch

from pfnkit.validation.pool import map_in_workers


def _tag(state: str, job: int) -> tuple[str, int, int]:
    """The state, the job and the worker's torch thread count."""
    return state, job, torch.get_num_threads()


def _fail_on_three(state: str, job: int) -> int:
    if job == 3:
        raise ValueError(f"{state}: job three")
    return job


def _die_on_two(state: str, job: int) -> int:
    if job == 2:
        os._exit(3)
    return job


def test_one_worker_runs_in_process_on_one_thread_and_restores_it() -> None:
    threads = torch.get_num_threads()
    assert map_in_workers(_tag, range(3), init_state="s") == [("s", j, 1) for j in range(3)]
    assert torch.get_num_threads() == threads
    with pytest.raises(ValueError, match="job three"):  # raised as it is, in process
        map_in_workers(_fail_on_three, range(5), init_state="s")
    with pytest.raises(ValueError, match="workers must be positive"):
        map_in_workers(_tag, [], workers=0, init_state="s")


@pytest.mark.slow  # spawned workers import torch: about 10 s each
def test_workers_return_every_result_in_order_and_report_failures() -> None:
    assert map_in_workers(_tag, range(7), workers=2, init_state="s") == [
        ("s", j, 1) for j in range(7)
    ]
    with pytest.raises(RuntimeError, match=r"(?s)job 3 failed in a worker.*job three"):
        map_in_workers(_fail_on_three, range(6), workers=2, init_state="s")
    with pytest.raises(RuntimeError, match="exit codes"):
        map_in_workers(_die_on_two, range(6), workers=2, init_state="s")
