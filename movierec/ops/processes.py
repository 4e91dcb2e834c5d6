"""Processes of the parts we run in the background: liveness, process trees, signals, and
what the machine's cores have been busy with.

Shared by the stop paths of supervisord's programs (movierec.ops.supervisor), Airflow's
leftovers and the services: process trees, liveness, and signals to whole process groups,
so no worker is orphaned.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except (FileNotFoundError, ProcessLookupError):
        return b""


def is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    if state == "Z":  # exited; reap it if it is our child
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def children_by_parent() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, IndexError, ValueError, ProcessLookupError):
            continue
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(roots: Iterable[int]) -> set[int]:
    """``roots`` and every process below them."""
    tree = children_by_parent()
    found: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(tree.get(pid, ()))
    return found


def ancestors() -> set[int]:
    found, pid = set(), os.getpid()
    while pid > 1:
        found.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, IndexError, ValueError):
            break
    return found


def port_open(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def process_groups(pids: Iterable[int]) -> set[int]:
    groups = set()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(pid))
    return groups - {os.getpgid(0)}  # never our own group (a caller in the same group as a task)


def signal_groups(pids: Iterable[int], signum: int) -> None:
    for group in process_groups(pids):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signum)


def wait_gone(pids: set[int], timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    while True:
        alive = {pid for pid in pids if is_alive(pid)}
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.2)


def busy_cpu_seconds(stat: str | None = None) -> float:
    """CPU seconds the whole machine has spent busy since boot, all cores together: the first
    (``cpu``) line of /proc/stat, every column but idle and iowait (guest time is already in user)."""
    if stat is None:
        stat = Path("/proc/stat").read_text()
    columns = stat.splitlines()[0].split()
    if columns[0] != "cpu":
        raise ValueError(f"not the /proc/stat cpu line: {columns[0]!r}")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(c) for c in columns[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_bytes()[-size:].decode(errors="replace")
    except FileNotFoundError:
        return "(no log)"
