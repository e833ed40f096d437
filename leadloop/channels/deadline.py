"""One deadline for a whole HTTP exchange, for clients whose timeouts are per operation.

An httpx timeout bounds each connect, write and read on its own: a receiver that sends its
answer a byte at a time, each within the read timeout, holds the request for as long as it
likes. Here the network backend caps every operation by what is left of the deadline set for
the calling thread (`within`), so the exchange ends with a timeout once the deadline passes,
however the receiver paces its bytes. A connection kept alive in the pool is capped by the
deadline of the request that uses it, since the cap is read at each operation.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore2
import httpx2

__all__ = ["client", "within"]

_local = threading.local()


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Requests made by this thread inside the block end by `seconds` from now."""
    _local.deadline = time.monotonic() + seconds
    try:
        yield
    finally:
        _local.deadline = None


def _capped(timeout: float | None, error: type[Exception]) -> float | None:
    deadline: float | None = getattr(_local, "deadline", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error("the deadline for the whole exchange passed")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore2.NetworkStream):
    def __init__(self, inner: httpcore2.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _capped(timeout, httpcore2.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _capped(timeout, httpcore2.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.NetworkStream:
        capped = _capped(timeout, httpcore2.ConnectTimeout)
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, capped))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore2.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore2.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.NetworkStream:
        capped = _capped(timeout, httpcore2.ConnectTimeout)
        return _Stream(self._inner.connect_tcp(host, port, capped, local_address, socket_options))

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.NetworkStream:
        capped = _capped(timeout, httpcore2.ConnectTimeout)
        return _Stream(self._inner.connect_unix_socket(path, capped, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def client(timeout: float) -> httpx2.Client:
    """A client that follows no redirect, whose requests made inside `within` keep its
    deadline. It is httpx's own client, with its proxies from the environment; httpx takes no
    network backend, so this one is put into each of its transports' connection pools."""
    built = httpx2.Client(timeout=timeout, follow_redirects=False)
    backend = _Backend()
    for transport in (built._transport, *built._mounts.values()):
        if isinstance(transport, httpx2.HTTPTransport):
            transport._pool._network_backend = backend
    return built
