"""Channels benchmarks, with same-run baselines:

1. emails rendered (sandboxed Jinja2, link rewriting, pixel, MIME) and delivered to a local SMTP
   server (aiosmtpd in a subprocess) over pooled, reused connections: target ≥ 500/s;
2. the tracking endpoints (open pixel, click redirect) of a running engine against a bare
   Starlette endpoint answering the same GIF, both under wrk: target ≥ 0.5× the bare rate.

    python bench/bench_channels.py [--seconds 5] [--emails 3000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import at_least, seconds, wrk  # noqa: E402

from leadloop.testing import eventually, free_port  # noqa: E402

KEY = "bench-tracking-key"


# --- subprocess entry points ------------------------------------------------------------------


def serve_smtp(port: int) -> None:
    import asyncio

    from aiosmtpd.controller import Controller

    class Sink:
        count = 0

        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            Sink.count += 1
            return "250 OK"

    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    asyncio.run(asyncio.sleep(10**6))


def serve_bare(port: int) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from leadloop.api.channels import PIXEL

    async def pixel(request: Request) -> Response:
        return Response(PIXEL, media_type="image/gif", headers={"cache-control": "no-store"})

    app = Starlette(routes=[Route("/t/o/{token}.gif", pixel)])
    uvicorn.run(app, port=port, log_level="warning", access_log=False)


def serve_engine(port: int, database_url: str) -> None:
    import uvicorn

    from leadloop.api.channels import TrackingHits, channels_router
    from leadloop.app import Engine
    from leadloop.config import Settings
    from leadloop.ingest.http import TrackingApp

    engine = Engine(Settings(database_url=database_url, extra={"LEADLOOP_SECRET_KEY": KEY}))
    engine.start()
    app = engine.admin_app()
    app.include_router(channels_router(engine))
    asgi = TrackingApp(engine, TrackingHits(engine, app))
    uvicorn.run(asgi, port=port, log_level="warning", access_log=False)


# --- measurements -----------------------------------------------------------------------------


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *args], cwd=HERE)


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status < 500)
    except urllib.error.HTTPError as e:
        return e.code < 500
    except OSError:
        return False


def bench_email(count: int) -> tuple[float, int]:
    from leadloop.channels import email as mail
    from leadloop.channels.tracking import Token, sign
    from leadloop.personalization.templates import EmailTemplate, RenderedEmail, render_email

    port = free_port()
    server = _spawn("--serve-smtp", str(port))
    try:
        import socket

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        eventually(listening, timeout=20)
        transport = mail.SmtpTransport(f"smtp://127.0.0.1:{port}", connections=4)
        template = EmailTemplate(
            subject="Welcome, {{ traits.first_name }}",
            preheader="Three things to try first",
            html="<html><body><p>Hi {{ traits.first_name }}</p>"
            "{% for step in ['Import', 'Score', 'Send'] %}<p>{{ loop.index }}. {{ step }}</p>{% endfor %}"
            '<a href="https://acme.test/start?u={{ profile.id }}">Start</a>'
            '<a href="https://acme.test/docs">Docs</a></body></html>',
            text="Hi {{ traits.first_name }}, start at https://acme.test/start",
        )
        key = KEY.encode()
        base = "https://t.acme.test"
        start = time.perf_counter()
        sent = 0
        for offset in range(0, count, 200):
            batch = []
            for n in range(offset, min(count, offset + 200)):
                mid = f"m-{n}"
                context = {
                    "traits": {"first_name": f"Ada{n}"},
                    "profile": {"id": f"p_{n}"},
                    "unsubscribe_url": "",
                }
                rendered = render_email(template, context)
                assert isinstance(rendered, RenderedEmail), rendered

                def track(url: str, mid: str = mid) -> str:
                    return f"{base}/t/c/{sign(key, Token('c', 'default', mid, url))}"

                unsubscribe = f"{base}/t/u/{sign(key, Token('u', 'default', mid))}"
                markup = mail.rewrite_links(rendered.html, track)
                pixel = f"{base}/t/o/{sign(key, Token('o', 'default', mid))}.gif"
                markup = mail.decorate_html(markup, rendered.preheader, pixel)
                envelope = mail.Envelope(
                    "Acme <news@acme.test>",
                    f"user{n}@example.com",
                    mid,
                    mail.message_id_header("default", mid, "news@acme.test"),
                    unsubscribe,
                )
                batch.append(mail.compose(rendered, envelope, markup, time.time()))
            results = transport.send_many(batch)
            sent += sum(1 for r in results if type(r).__name__ == "Sent")
        elapsed = time.perf_counter() - start
        connects = transport.connects
        transport.close()
        if sent != count:
            raise SystemExit(f"only {sent} of {count} emails were accepted")
        return count / elapsed, connects
    finally:
        server.terminate()
        server.wait(timeout=10)


def bench_tracking(seconds: float) -> tuple[float, float, float]:
    from leadloop.channels.tracking import Token, sign

    folder = tempfile.mkdtemp(prefix="leadloop-bench-")
    db = f"sqlite:///{folder}/bench.db"
    bare_port, engine_port = free_port(), free_port()
    bare = _spawn("--serve-bare", str(bare_port))
    engine = _spawn("--serve-engine", str(engine_port), db)
    try:
        eventually(lambda: _up(f"http://127.0.0.1:{bare_port}/t/o/x.gif"), timeout=30)
        eventually(lambda: _up(f"http://127.0.0.1:{engine_port}/healthz"), timeout=30)
        key = KEY.encode()
        pixel = f"/t/o/{sign(key, Token('o', 'default', 'bench-message'))}.gif"
        click = f"/t/c/{sign(key, Token('c', 'default', 'bench-message', 'https://acme.test/'))}"

        def script(path: str) -> str:
            return f'request = function() return wrk.format("GET", "{path}") end\n'

        bare_rate = wrk(f"http://127.0.0.1:{bare_port}", script(pixel), seconds)
        pixel_rate = wrk(f"http://127.0.0.1:{engine_port}", script(pixel), seconds)
        click_rate = wrk(f"http://127.0.0.1:{engine_port}", script(click), seconds)
        return bare_rate, pixel_rate, click_rate
    finally:
        for proc in (bare, engine):
            proc.terminate()
            proc.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=seconds, default=5.0)
    parser.add_argument("--emails", type=at_least(), default=3000)
    parser.add_argument("--serve-smtp", type=int)
    parser.add_argument("--serve-bare", type=int)
    parser.add_argument("--serve-engine", nargs=2)
    args = parser.parse_args()
    if args.serve_smtp:
        serve_smtp(args.serve_smtp)
        return
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return
    if args.serve_engine:
        serve_engine(int(args.serve_engine[0]), args.serve_engine[1])
        return
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    email_rate, connects = bench_email(args.emails)
    bare, pixel, click = bench_tracking(args.seconds)
    print("| benchmark | rate | baseline | ratio | target |")
    print("| --- | ---: | ---: | ---: | --- |")
    print(
        f"| emails rendered + delivered over SMTP ({connects} connections) | "
        f"{email_rate:,.0f}/s | – | – | ≥ 500/s |"
    )
    print(
        f"| open pixel `GET /t/o/…gif` | {pixel:,.0f}/s | {bare:,.0f}/s bare | {pixel / bare:.2f}× | ≥ 0.5× |"
    )
    print(
        f"| click redirect `GET /t/c/…` | {click:,.0f}/s | {bare:,.0f}/s bare | {click / bare:.2f}× | ≥ 0.5× |"
    )


if __name__ == "__main__":
    main()
