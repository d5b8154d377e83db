"""Work the driver hands to a Ray worker process that exits after it (`max_calls=1`): a model
loaded for a check, a compaction's buffers, a report's tallies. What such work allocates is never
part of the driver's memory, which then holds only the stream's own state whatever the feed's size;
the allocators of delta-rs and Arrow keep freed memory, so it would stay there until the job ends."""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from finner.errors import FinnerError

T = TypeVar("T")


def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return fn(*args, **kwargs)


def in_worker(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` in a one-CPU Ray task whose worker exits after it; a `FinnerError` it
    raises comes back as itself (its one line), not as the task's traceback."""
    import ray

    task = ray.remote(num_cpus=1, max_calls=1)(_call)
    try:
        return ray.get(task.remote(fn, *args, **kwargs))
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, FinnerError):
            raise err.cause from None
        raise
