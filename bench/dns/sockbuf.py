#!/usr/bin/env python3
"""Give another process's UDP sockets on one port the same buffer sizes (bench/dns only).

    sockbuf.py PID PORT BYTES

dnsmasq, CoreDNS and knotd have no socket-buffer option, and this kernel keeps
net.core.rmem_default per machine, not per network namespace (a write inside one fails with
EINVAL), so the benchmark cannot give every server the same buffers through configuration or a
namespace-scoped sysctl. Instead it copies each server's listening socket with pidfd_getfd(2)
(Linux 5.6; root) and sets SO_RCVBUFFORCE / SO_SNDBUFFORCE on the copy, which is the same
socket. The kernel doubles the value, as it does for SO_RCVBUF. Node has no pidfd_getfd, hence
this helper. Prints one JSON line: the sockets changed and their effective sizes.
"""
import ctypes
import json
import os
import socket
import sys

SYS_PIDFD_GETFD = 438
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33


def inodes_on_port(pid: int, port: int) -> set:
    """Inodes of the process's UDP sockets bound to `port` (its network namespace's view)."""
    found = set()
    for table in ("udp", "udp6"):
        try:
            with open(f"/proc/{pid}/net/{table}") as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if int(fields[1].split(":")[1], 16) == port:
                        found.add(fields[9])
        except FileNotFoundError:
            pass
    return found


def main() -> None:
    pid, port, size = (int(a) for a in sys.argv[1:4])
    wanted = inodes_on_port(pid, port)
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    done = []
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if not (target.startswith("socket:[") and target[8:-1] in wanted):
                continue
            local = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(fd), 0)
            if local < 0:
                raise OSError(ctypes.get_errno(), f"pidfd_getfd {pid}/{fd}")
            s = socket.socket(fileno=local)
            try:
                s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
                s.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, size)
                done.append(
                    {
                        "fd": int(fd),
                        "rcvbuf": s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
                        "sndbuf": s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
                    }
                )
            finally:
                s.close()
    finally:
        os.close(pidfd)
    print(json.dumps({"pid": pid, "port": port, "sockets": done}))


main()
