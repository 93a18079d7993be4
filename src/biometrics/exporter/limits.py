"""The HTTP server's limits, and the socket and open-file limit they need from the system.

A scrape endpoint on a shared host must keep answering whatever other clients do, so every
limit has a safe default (see docs/ARCHITECTURE.md, "HTTP").  The listening socket keeps a
deep backlog, so a burst of connections waits in the kernel instead of being refused, and the
process's open-file limit is raised to the hard one, since every connection is a descriptor.
"""

from __future__ import annotations

import errno
import logging
import resource
import socket
from dataclasses import dataclass

from .._daemon.logfmt import log

__all__ = ["BACKLOG", "HttpLimits", "bind", "raise_fd_limit"]


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Request limits; the defaults keep a scrape endpoint safe on a shared host.

    ``request_timeout`` bounds the whole request (head and body) from its start: from the
    accept for a new connection, from its first byte on a kept-alive one.  ``idle_timeout``
    bounds a kept-alive connection's wait for its next request, and sending one response.
    ``connection_limit`` is lowered at start to what the open-file limit allows.
    """

    threads: int = 8
    connection_limit: int = 4096
    request_timeout: float = 10.0
    idle_timeout: float = 30.0
    max_request_header_size: int = 16 << 10
    max_request_body_size: int = 64 << 10


BACKLOG = 1024
"""Connections the kernel holds until accepted: a burst must not drop SYNs."""
_FD_RESERVE = 128  # descriptors kept for the spool, state, journal and logs


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; ``""`` means every interface, IPv6 and IPv4 where the host has both."""
    backlog = BACKLOG
    if host == "":
        if socket.has_dualstack_ipv6():
            try:
                return socket.create_server(("::", port), family=socket.AF_INET6,
                                            backlog=backlog, dualstack_ipv6=True)  # fmt: skip
            except OSError as e:
                if e.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                    raise
        return socket.create_server(("0.0.0.0", port), backlog=backlog)
    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | socket.AI_NUMERICSERV
    )[0]
    return socket.create_server(address, family=family, backlog=backlog)


def raise_fd_limit(wanted: int) -> int:
    """Lift the soft open-file limit to the hard one; return how many connections fit.

    Each connection is a descriptor and the common soft default (1024) is below the
    connection limit; the hard limit is what the administrator allows, so taking it is safe.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as e:
            log(logging.WARNING, "cannot raise the open-file limit", soft=soft, hard=hard,
                error=str(e))  # fmt: skip
        else:
            log(logging.INFO, "raised the open-file limit", old=soft, new=target)
            soft = target
    fits = wanted if soft == resource.RLIM_INFINITY else min(wanted, soft - _FD_RESERVE)
    if fits < wanted:
        log(logging.WARNING, "connection limit lowered to fit the open-file limit",
            connection_limit=fits, open_file_limit=soft)  # fmt: skip
    return max(1, fits)
