"""The server's listening socket, bound before anything slow starts.

``vlserve serve`` binds first and hands the socket to uvicorn: a busy port is reported in
milliseconds instead of after the models have loaded, and no other process can take the port
in between.
"""

from __future__ import annotations

import errno
import socket


class PortUnavailableError(OSError):
    """The address cannot be listened on; the message says why and what to change."""


def bind_listener(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` and listening, as uvicorn would bind it."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise PortUnavailableError(f"cannot listen on {host!r}: not an address of this machine ({err})") from err
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    # Like uvicorn: a port held only by connections in TIME_WAIT is free to reuse (on Linux this
    # never allows binding over another listening socket).
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise PortUnavailableError(
                f"port {port} on {host} is already in use (another vlserve?); stop that process or choose "
                "another port with --port or `port` in the config") from err
        if err.errno == errno.EACCES:
            raise PortUnavailableError(
                f"no permission to listen on port {port} on {host}; choose a port above 1023 with --port") from err
        raise PortUnavailableError(f"cannot listen on {host}:{port}: {err.strerror or err}") from err
    sock.set_inheritable(True)
    return sock
