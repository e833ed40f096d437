"""docs/api.md documents every HTTP route the engine serves, and no route it does not serve.

The routes are read from the app itself: the FastAPI app's route list (admin API, tracking
pixels and links, provider webhooks, docs) and the paths of the two bare ASGI apps in front of
it (`ingest.http`, `ingest.hooks`). A route is documented by a `### ` heading naming it as
`` `METHOD /path` `` (one heading may name several routes that behave alike), whose section
says who may call it, what it answers and shows an example.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.testclient import TestClient

from leadloop.app import Engine
from leadloop.config import Settings
from leadloop.ingest.hooks import PREFIX as INBOUND_PREFIX
from leadloop.ingest.http import tracking_paths

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
ROUTE = re.compile(r"`([A-Z]+) (/[^`\s]*)`")

Route = tuple[str, str]


def sections() -> dict[str, str]:
    """Each `### ` heading of the reference and the text under it."""
    found: dict[str, str] = {}
    heading = None
    for line in DOC.splitlines():
        if line.startswith("#"):
            heading = line if line.startswith("### ") else None
            if heading is not None:
                found[heading] = ""
        elif heading is not None:
            found[heading] += line + "\n"
    return found


def documented() -> set[Route]:
    return {route for heading in sections() for route in ROUTE.findall(heading)}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """The admin app of an engine never started: building it opens no database."""
    url = f"sqlite:///{tmp_path_factory.mktemp('api')}/unused.db"
    return Engine(Settings(database_url=url)).admin_app()


def served(app: FastAPI) -> set[Route]:
    routes: set[Route] = set()
    for route in iter_route_contexts(app.routes):
        methods = set(route.methods or ())
        if "GET" in methods:
            methods.discard("HEAD")  # HEAD is answered wherever GET is (api/head.py)
        routes |= {(method, str(route.path)) for method in methods}
    routes |= {("POST", path) for path in tracking_paths()}
    routes.add(("POST", f"{INBOUND_PREFIX}{{workspace}}/{{source}}"))
    return routes


def test_the_route_list_is_read_from_the_app(app: FastAPI) -> None:
    """Neither list is empty or partial, so the comparisons below cannot pass vacuously."""
    routes = served(app)
    for route in [
        ("GET", "/healthz"),
        ("GET", "/api/v1/profiles/{profile_id}"),
        ("DELETE", "/api/v1/profiles/{profile_id}"),
        ("GET", "/api/v1/journeys"),
        ("GET", "/api/v1/profiles/{profile_id}/messages"),
        ("GET", "/api/v1/conversions/items"),
        ("POST", "/t/u/{token}"),
        ("POST", "/v1/batch"),
        ("POST", "/hooks/inbound/{workspace}/{source}"),
    ]:
        assert route in routes, route
    assert len(documented()) >= len(routes) > 30


def test_every_served_route_is_documented(app: FastAPI) -> None:
    missing = sorted(served(app) - documented(), key=lambda r: (r[1], r[0]))
    assert not missing, f"served but not in docs/api.md: {missing}"


def test_every_documented_route_is_served(app: FastAPI) -> None:
    extra = sorted(documented() - served(app), key=lambda r: (r[1], r[0]))
    assert not extra, f"in docs/api.md but not served: {extra}"


@pytest.mark.parametrize("heading", [h for h in sections() if ROUTE.search(h)])
def test_every_route_says_who_may_call_it_what_it_answers_and_shows_an_example(
    heading: str,
) -> None:
    text = sections()[heading]
    for part in ("**Auth**", "**Answers**", "```"):
        assert part in text, f"{heading}: no {part}"


def test_the_oauth2_redirect_page_is_not_served(app: FastAPI) -> None:
    """FastAPI serves Swagger UI's OAuth2 redirect page by default; the admin API takes a
    bearer token, so that page was a route nobody used or documented."""
    assert not [route for route in served(app) if "oauth2" in route[1]]
    with TestClient(app) as client:
        for path in ("/docs/oauth2-redirect", "/api/v1/docs/oauth2-redirect"):
            assert client.get(path).status_code == 404, path
        page = client.get("/api/v1/docs")
        assert page.status_code == 200 and "oauth2RedirectUrl" not in page.text
