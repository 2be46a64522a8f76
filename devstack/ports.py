"""Loopback ports for the local stack's servers: below the kernel's ephemeral range, so that a
server stopped and started again on its port finds it free (a port in that range can meanwhile
become the source port of any outgoing connection)."""

import random
import socket
from pathlib import Path


def ephemeral_ports() -> range:
    """The kernel's range for the source ports of outgoing connections."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


def free_port() -> int:
    """A loopback port nothing listens on right now (bound, then released), below the ephemeral
    range: a server restarted on its old port (ext-authz under test_faults, a store endpoint
    brought back) must find it free, and a port in that range can meanwhile become the source
    port of any outgoing connection, even of a client's connection to itself while it retries
    the stopped server."""
    below = range(10000, ephemeral_ports().start)
    for port in random.sample(below, min(len(below), 200)):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
