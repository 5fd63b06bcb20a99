"""Listening TCP sockets of a process and its descendants, read from /proc (Linux)."""

from __future__ import annotations

import os
from pathlib import Path

LOOPBACK = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    seen, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, []))
    return seen


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:80].decode()
    except OSError:
        return "?"


def listening_sockets(root: int | None = None) -> list[tuple[int, str, str, int]]:
    """(pid, command line, local address as /proc shows it, port) of every LISTEN socket
    owned by `root` (default: this process) or one of its descendants."""
    inodes: dict[str, int] = {}
    for pid in _descendants(root or os.getpid()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes[target[8:-1]] = pid
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                pid = inodes[fields[9]]
                found.append((pid, _name(pid), address, int(port_hex, 16)))
    return found


def beyond_loopback(root: int | None = None) -> list[tuple[int, str, str, int]]:
    return [s for s in listening_sockets(root) if s[2] not in LOOPBACK]
