"""The shipped test seams: `free_port` keeps the port it names for the server it is for."""

from __future__ import annotations

import socket

import pytest

from leadloop.testing import free_port


def test_a_free_port_is_kept_from_others_until_its_server_binds_it() -> None:
    # A port merely released was up for grabs: an outgoing connection's ephemeral port (a
    # PostgreSQL connection, say) could take it in the second before the test's server bound
    # it, and the server failed to start. Nothing but a server that reuses the address (as
    # `leadloop serve`, http.server, asyncio and aiosmtpd do) may bind it now.
    port = free_port()
    with socket.socket() as other, pytest.raises(OSError):
        other.bind(("127.0.0.1", port))
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        with socket.create_connection(("127.0.0.1", port), timeout=30):
            pass
