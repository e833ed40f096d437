"""Email over TLS: a real SMTP server (aiosmtpd) with a certificate from a test CA, reached by
the running engine with STARTTLS (authenticating only once encrypted) and with implicit TLS
(`smtps://`). The client trusts that CA only (`?ca_file=`): a certificate from another CA, or
the same server without the option (the system's CAs), is refused and nothing is delivered.

The CA comes from `trustme` when installed, else is made here with `cryptography` (which
`trustme` itself uses)."""

from __future__ import annotations

import datetime as dt
import gc
import ipaddress
import ssl
import textwrap
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from leadloop.app import Engine
from leadloop.channels.email import Envelope, SmtpTransport, compose
from leadloop.channels.model import Sent, TryLater
from leadloop.log.batch import OutboxRow
from leadloop.outbox.service import enqueue
from leadloop.personalization.templates import RenderedEmail
from leadloop.testing import eventually, free_port
from tests.acceptance.test_email_smtp import Inbox
from tests.integration.test_channels_providers import identify, start_engine, stop


@dataclass
class TestCA:
    """A CA's PEM and a server context holding a certificate it issued for 127.0.0.1."""

    ca_pem: bytes
    server: ssl.SSLContext

    __test__ = False


def _with_trustme() -> TestCA | None:
    try:
        import trustme
    except ImportError:
        return None
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    return TestCA(ca.cert_pem.bytes(), server)


def _with_cryptography(tmp: Path) -> TestCA:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leadloop test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    chain = tmp / f"server-{id(cert)}.pem"
    chain.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        + cert.public_bytes(pem)
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(chain)
    return TestCA(ca_cert.public_bytes(pem), server)


def make_ca(tmp: Path) -> TestCA:
    return _with_trustme() or _with_cryptography(tmp)


class Authenticator:
    """Accepts `mailer` / `s3cret`; aiosmtpd refuses AUTH before TLS (auth_require_tls)."""

    def __init__(self) -> None:
        self.logins: list[str] = []

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        if isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"mailer",
            b"s3cret",
        ):
            self.logins.append(mechanism)
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


class TlsInbox(Inbox):
    """Also notes whether each message came over TLS."""

    def __init__(self) -> None:
        super().__init__()
        self.encrypted: list[bool] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.encrypted.append(server.transport.get_extra_info("ssl_object") is not None)
        return await super().handle_DATA(server, session, envelope)


IMPLICIT_AUTH = pytest.mark.filterwarnings(
    "ignore:Requiring AUTH while not requiring TLS:UserWarning"
)
"""aiosmtpd warns about AUTH without STARTTLS even when the whole connection is TLS."""


@contextmanager
def smtp_server(
    kind: str, context: ssl.SSLContext
) -> Iterator[tuple[TlsInbox, int, Authenticator]]:
    inbox = TlsInbox()
    auth = Authenticator()
    port = free_port()
    options: dict[str, Any] = {"authenticator": auth, "auth_required": True}
    if kind == "starttls":
        # Plain connection, STARTTLS required before MAIL and AUTH (RFC 3207).
        options.update(tls_context=context, require_starttls=True)
    else:
        # TLS from the first byte (RFC 8314 "implicit TLS", port 465 in real life). aiosmtpd
        # counts only STARTTLS as TLS for AUTH; here every byte is encrypted anyway.
        options.update(ssl_context=context, auth_require_tls=False)
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield inbox, port, auth
    finally:
        controller.stop()
        # asyncio (3.11) leaves the server's accepted socket open when a client aborts the
        # implicit-TLS handshake ("Error on transport creation for incoming connection"):
        # collect it here, where its ResourceWarning is about the test server, not our code.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


def smtp_url(kind: str, port: int, ca_file: Path | None) -> str:
    scheme, query = ("smtp", "?starttls=require") if kind == "starttls" else ("smtps", "?x=1")
    if ca_file is not None:
        query += f"&ca_file={ca_file}"
    return f"{scheme}://mailer:s3cret@127.0.0.1:{port}{query}"


@pytest.fixture
def ca(tmp_path: Path) -> tuple[TestCA, Path]:
    made = make_ca(tmp_path)
    path = tmp_path / "test-ca.pem"
    path.write_bytes(made.ca_pem)
    return made, path


def playbook(url: str) -> str:
    return textwrap.dedent(
        f"""
        version: 1
        channels:
          public_url: http://testserver
          email:
            smtp_url: "{url}"
            from: "Acme News <news@acme.test>"
          templates:
            email:
              welcome:
                subject: "Welcome, {{{{ traits.first_name }}}}"
                text: "Hello {{{{ traits.first_name }}}}"
        """
    )


@IMPLICIT_AUTH
@pytest.mark.parametrize("kind", ["starttls", "implicit"])
def test_the_engine_sends_over_tls_trusting_the_test_ca_only(
    kind: str, tmp_path: Path, ca: tuple[TestCA, Path]
) -> None:
    made, ca_file = ca
    with smtp_server(kind, made.server) as (inbox, port, auth):
        engine, client, write_key, _ = start_engine(
            tmp_path, playbook(smtp_url(kind, port, ca_file))
        )
        try:
            with client:
                profile = identify(
                    engine, client, write_key, {"first_name": "Ada", "email": "ada@example.com"}
                )
                queue(engine, profile, "tls-1")
                assert settled(engine, "tls-1") == ("delivered", None)
        finally:
            stop(engine)
    assert len(inbox.messages) == 1
    mail_from, rcpt, message = inbox.messages[0]
    assert (mail_from, rcpt) == ("news@acme.test", ["ada@example.com"])
    assert message["Subject"] == "Welcome, Ada"
    assert inbox.encrypted == [True]
    assert auth.logins  # authenticated (STARTTLS: aiosmtpd allows AUTH only once encrypted)


def _one_message() -> Any:
    rendered = RenderedEmail(subject="Hi", preheader="", html="", text="Hello")
    envelope = Envelope(
        sender="news@acme.test",
        to="ada@example.com",
        message_id="m1",
        message_id_header="<m1@acme.test>",
    )
    return compose(rendered, envelope, "", 0.0)


@IMPLICIT_AUTH
@pytest.mark.parametrize("kind", ["starttls", "implicit"])
def test_a_certificate_from_another_ca_is_refused(
    kind: str, tmp_path: Path, ca: tuple[TestCA, Path]
) -> None:
    made, ca_file = ca
    stranger = make_ca(tmp_path)  # a server whose certificate our CA did not issue
    with smtp_server(kind, stranger.server) as (inbox, port, _):
        for url in (smtp_url(kind, port, ca_file), smtp_url(kind, port, None)):
            transport = SmtpTransport(url, connections=1)
            try:
                (result,) = transport.send_many([_one_message()])
            finally:
                transport.close()
            assert isinstance(result, TryLater), url
            assert "CERTIFICATE_VERIFY_FAILED" in result.reason, result.reason
    assert inbox.messages == []
    # The same CA file, the right server: accepted.
    with smtp_server(kind, made.server) as (inbox, port, _):
        transport = SmtpTransport(smtp_url(kind, port, ca_file), connections=1)
        try:
            (result,) = transport.send_many([_one_message()])
        finally:
            transport.close()
        assert isinstance(result, Sent), result
    assert len(inbox.messages) == 1


# --- the engine -------------------------------------------------------------------------------


def queue(engine: Engine, profile: str, message_id: str) -> None:
    payload = {
        "channel": "email",
        "template": "welcome",
        "message_id": message_id,
        "profile_id": profile,
        "journey": "onboarding",
        "step": "welcome",
        "instance": "i1",
    }
    now = engine.clock.now()
    row = OutboxRow("default", "message", "email", message_id, payload, profile, now)
    engine.writer.submit(lambda c: enqueue(c, [row], now)).result()
    engine.dispatcher.wake()


def settled(engine: Engine, message_id: str) -> tuple[str, str | None]:
    def done() -> tuple[str, str | None] | None:
        rows = engine.read_sync(
            lambda c: c.execute(
                "SELECT status, last_error FROM outbox WHERE idempotency_key = ?", (message_id,)
            )
        )
        return None if rows[0][0] == "pending" else (rows[0][0], rows[0][1])

    return eventually(done, timeout=20)
