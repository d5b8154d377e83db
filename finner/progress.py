"""What a person sees of a run: one progress bar per stage and the stage's own lines; everything
else (Ray, the HF Trainer, library warnings, C++ logs) goes to the stage's log file.

`quiet_output` points the process's stdout and stderr (file descriptors 1 and 2, so C++ and
subprocess output too) at the log file and keeps a handle on the terminal: `say` and
`progress_bar` write there. Without it (tests, `--verbose`) both write to the usual streams.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

_terminal: dict[str, TextIO] = {}


def terminal_out() -> TextIO:
    return _terminal.get("out", sys.stdout)


def terminal_err() -> TextIO:
    return _terminal.get("err", sys.stderr)


def say(*parts: Any) -> None:
    """A line the user asked to see (summaries, tables, where outputs went)."""
    print(*parts, file=terminal_out(), flush=True)


def progress_bar(iterable: Iterable | None = None, *, desc: str, unit: str = " rows", total: int | None = None, enabled: bool = True) -> Any:
    """A tqdm bar for one stage (rows, batches or epochs), on the terminal, updated at most once a second."""
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, unit=unit, total=total, disable=not enabled, mininterval=1.0, file=terminal_err(), dynamic_ncols=True)


@contextlib.contextmanager
def quiet_output(log_path: str) -> Iterator[None]:
    """Send everything written to stdout/stderr to `log_path` for the duration; `say`,
    `progress_bar` and error lines still reach the terminal."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    old_streams = sys.stdout, sys.stderr
    opened = []
    for key, stream, fd in (("out", sys.stdout, 1), ("err", sys.stderr, 2)):
        if _writes_to(stream, fd):  # the real terminal: keep a copy of it before fd 1/2 move to the log
            stream = os.fdopen(os.dup(saved[fd]), "w", buffering=1, encoding="utf-8", errors="replace")
            opened.append(stream)
        _terminal[key] = stream  # else a stream already redirected elsewhere (a test's capture): keep using it
    with open(log_path, "a", buffering=1, encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        # sys.stdout/sys.stderr on fds 1 and 2 now write to the log: they stay the streams they
        # were, so a logging handler made in the block keeps a stream that outlives the log (the
        # pipeline runs several stages in one process). Only a test's capture objects are swapped.
        if not _writes_to(sys.stdout, 1):
            sys.stdout = log
        if not _writes_to(sys.stderr, 2):
            sys.stderr = log
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            sys.stdout, sys.stderr = old_streams
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            for stream in opened:
                stream.close()
            _terminal.clear()


def _writes_to(stream: TextIO, fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError):
        return False
