"""Processes the tests start, and the guarantee that none outlives the test run.

`spawn` starts a server, a Hub or a bench script in a session of its own, so `stop` reaches
it and its children with one `killpg`: SIGTERM (a server shuts its kernels down), a bounded
wait, then SIGKILL for what is left. Every process started while the tests run carries this
run's mark in its environment, kernels too (they inherit it, though jupyter_client starts
each in a session of its own), so conftest's guard finds what outlived the run whatever
group it is in. The direct children also get SIGTERM should pytest die without cleaning up
(a parent-death signal), so not even `kill -9` of pytest leaves a server behind.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

#: the environment variable that marks a process as started by this test run
MARK = "COMM_EXT_TEST_RUN"
#: how long a process group has to end on SIGTERM before it gets SIGKILL
GRACE = 10.0
_PR_SET_PDEATHSIG = 1


def mark_run() -> str:
    """Mark this run: every process started from now on inherits the mark."""
    os.environ[MARK] = uuid.uuid4().hex
    return os.environ[MARK]


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the thread that started it ends."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(
    args: Sequence[str], preexec_fn: Callable[[], None] | None = None, **kwargs: Any
) -> subprocess.Popen:
    """`subprocess.Popen` in a new session (its own process group), to be ended by `stop`.

    Started from the main thread, it also dies with pytest; not from another thread, whose
    end would take it along too early.
    """
    if sys.platform == "linux" and threading.current_thread() is threading.main_thread():
        before = preexec_fn

        def preexec_fn() -> None:
            _die_with_parent()
            if before is not None:
                before()

    return subprocess.Popen(args, start_new_session=True, preexec_fn=preexec_fn, **kwargs)


def signal_group(pgid: int, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def stop(process: subprocess.Popen, grace: float = GRACE) -> None:
    """SIGTERM the process's group, wait up to `grace` s for the process, then SIGKILL
    whatever is left of the group (the process itself, or children that outlived it)."""
    signal_group(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(grace)
    signal_group(process.pid, signal.SIGKILL)
    process.wait(grace)


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (a server's kernels, in sessions of their own)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    pids.append(int(entry.name))
    return pids


def marked(mark: str) -> dict[int, str]:
    """pid -> command line of every live process (but this one) that carries `mark`."""
    wanted = f"{MARK}={mark}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with suppress(OSError, IndexError):
            if (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # ended, not yet reaped
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                found[int(entry.name)] = cmdline.decode(errors="replace").strip()
    return found


def sweep(mark: str, grace: float = 5.0) -> dict[int, str]:
    """Kill every process that carries `mark` and is still alive after `grace` s (the
    time a kernel takes to notice its server is gone); return what was killed."""
    deadline = time.monotonic() + grace
    while (left := marked(mark)) and time.monotonic() < deadline:
        time.sleep(0.2)
    own_group = os.getpgrp()
    for pid in left:
        with suppress(ProcessLookupError, PermissionError):
            pgid = os.getpgid(pid)
            if pgid == own_group:  # started without a session of its own: it alone
                os.kill(pid, signal.SIGKILL)
            else:
                os.killpg(pgid, signal.SIGKILL)
    return left
