"""The webhook sender against receivers that answer badly: its own HTTP client, a loopback
receiver, no engine."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from leadloop.channels.webhook import WebhookSender
from leadloop.outbox.service import Claimed, Outcome

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class EndlessAnswer:
    """A receiver that reads the request, answers `status` with a chunked body, and then
    sends chunks until the client goes away (a few MB a second)."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        self.sent = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.recv(65536)
            head = f"HTTP/1.1 {self.status} X\r\nTransfer-Encoding: chunked\r\n\r\n"
            conn.sendall(head.encode())
            chunk = b"%x\r\n%s\r\n" % (65536, b"x" * 65536)
            while not self.stopped.is_set():
                try:
                    conn.sendall(chunk)
                except OSError:
                    return  # the client closed the connection
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
