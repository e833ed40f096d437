"""The webhook sender against receivers that answer badly: its own HTTP client, a loopback
receiver, no engine."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from leadloop.channels.webhook import WebhookSender
from leadloop.clock import ManualClock
from leadloop.outbox.service import Claimed, Outcome

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Loopback:
    """A one-connection receiver: reads the request, then `answer`s on the raw socket."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.recv(65536)
            try:
                self.answer(conn)
            except OSError:
                return  # the client closed the connection

    def answer(self, conn: socket.socket) -> None:
        raise NotImplementedError


class EndlessAnswer(Loopback):
    """Answers `status` with a chunked body, and then sends chunks until the client goes
    away (a few MB a second)."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.sent = 0
        self.stopped = threading.Event()
        super().__init__()

    def answer(self, conn: socket.socket) -> None:
        head = f"HTTP/1.1 {self.status} X\r\nTransfer-Encoding: chunked\r\n\r\n"
        conn.sendall(head.encode())
        chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
        while not self.stopped.is_set():
            conn.sendall(chunk)
            self.sent += 65536

    def close(self) -> None:
        self.stopped.set()
        self.listener.close()


@pytest.fixture
def endless() -> Iterator[EndlessAnswer]:
    receiver = EndlessAnswer(200)
    yield receiver
    receiver.close()


def item() -> Claimed:
    return Claimed(1, "default", "webhook", "sales", "msg_1", b'{"body": {"a": 1}}', 0, None, 0.0)


def test_an_endless_answer_body_is_not_read(endless: EndlessAnswer) -> None:
    # The sender read the whole answer: an endless (or huge) one held a send thread, and the
    # engine's memory, for as long as the receiver kept writing.
    sender = WebhookSender(lambda ws, hook: (endless.url, SECRET))
    outcomes: list[Outcome] = []
    thread = threading.Thread(target=lambda: outcomes.append(sender.send(item(), 0.0)))
    thread.daemon = True
    thread.start()
    thread.join(10)
    endless.close()
    sender.close()
    assert outcomes == [Outcome("delivered")]
    assert endless.sent < 64 * 1024 * 1024


class Trickle(Loopback):
    """Sends a 200's head one byte at a time, a few hundred bytes a second, for about
    `seconds`: each byte comes well within any per-read timeout, so only a limit on the whole
    exchange stops it."""

    def __init__(self, seconds: float) -> None:
        pad = b"x" * int(seconds * 200)
        self.head = b"HTTP/1.1 200 OK\r\nX-Pad: " + pad + b"\r\nContent-Length: 0\r\n\r\n"
        super().__init__()

    def answer(self, conn: socket.socket) -> None:
        for byte in self.head:
            conn.sendall(bytes([byte]))
            threading.Event().wait(0.005)

    def close(self) -> None:
        self.listener.close()
        self.thread.join(30)


def test_a_trickled_answer_is_cut_at_the_deadline_and_retried() -> None:
    # Timeouts were per read: a receiver sending its head a byte at a time held the send
    # thread for as long as it liked (here about 5 s, against a 0.5 s deadline).
    receiver = Trickle(5.0)
    sender = WebhookSender(lambda ws, hook: (receiver.url, SECRET), deadline=0.5)
    try:
        outcome = sender.send(item(), 1000.0)
    finally:
        sender.close()
        receiver.close()
    assert outcome.status == "pending"
    assert outcome.next_attempt_at is not None and outcome.next_attempt_at > 1000.0
    assert outcome.error is not None and "timeout" in outcome.error


class Proxy(Loopback):
    """An HTTP proxy that takes any request and answers 200, keeping the request line."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        super().__init__()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            self.lines.append(conn.recv(65536).split(b"\r\n", 1)[0])
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        self.listener.close()


def test_the_environment_proxy_still_carries_webhooks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Where egress goes through HTTP_PROXY, webhooks went straight to the receiver (here a
    # closed port) once the sender built its own transport, which httpx leaves unproxied.
    proxy = Proxy()
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url.removesuffix("/hook"))
    sender = WebhookSender(lambda ws, hook: ("http://127.0.0.1:9/hook", SECRET), deadline=5.0)
    try:
        outcome = sender.send(item(), 1000.0)
    finally:
        sender.close()
        proxy.close()
    assert outcome == Outcome("delivered")
    assert proxy.lines == [b"POST http://127.0.0.1:9/hook HTTP/1.1"]


class SlowRefusal(Loopback):
    """Answers 503 after the engine's clock has moved on by `seconds` (a manual clock)."""

    def __init__(self, clock: ManualClock, seconds: float) -> None:
        self.clock = clock
        self.seconds = seconds
        super().__init__()

    def answer(self, conn: socket.socket) -> None:
        self.clock.advance(self.seconds)
        conn.sendall(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        self.listener.close()
        self.thread.join(30)


def test_the_backoff_counts_from_the_end_of_a_slow_attempt() -> None:
    # The wait was counted from the attempt's start: an attempt that took longer than the
    # first backoffs (5 s, 20 s) was due again the moment it ended, so a receiver too busy
    # to answer quickly got the next attempt at once.
    clock = ManualClock(1000.0)
    receiver = SlowRefusal(clock, 60.0)
    sender = WebhookSender(lambda ws, hook: (receiver.url, SECRET), clock=clock)
    try:
        outcome = sender.send(item(), clock.now())
    finally:
        sender.close()
        receiver.close()
    assert outcome.status == "pending" and outcome.error == "HTTP 503"
    assert outcome.next_attempt_at is not None and outcome.next_attempt_at >= 1060.0 + 2.5
