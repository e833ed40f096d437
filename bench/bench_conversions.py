"""Conversions benchmark (issue 6), beside a baseline measured in the same run.

    leadloop bench conversions [--seconds N] [--events 20000]

Ours: checkout events mapped to `Conversion`s (the stage's `user_identifiers`), normalised and
hashed for Meta at enqueue (`for_destination`), serialised as outbox payloads, then decoded,
checked, batched by 1,000 and POSTed by `ConversionSender.send_batch` to the local fake Meta.
Baseline: the same events through the official facebook-business SDK (`UserData`, `CustomData`,
`Event`, `EventRequest.execute` with an `HttpServiceInterface` client) to the same fake.
Target: ≥ 20,000 conversions/s, and ≥ 3× the SDK.

Not included: the processor and outbox storage round trip (measured by `bench scoring`'s
processing figures); both sides share the fake server's CPU in this process.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx2
import msgspec

from leadloop.clock import ManualClock
from leadloop.conversions.capture import MatchKeys
from leadloop.conversions.config import DestinationConfig, Mapping
from leadloop.conversions.model import Content, Conversion, MetaDestination
from leadloop.conversions.sender import ConversionSender
from leadloop.conversions.service import for_destination, user_identifiers
from leadloop.identity.model import Profile
from leadloop.outbox.service import Claimed
from leadloop.testing_fakes.ads import FakeAdsServer

NOW = 1_800_000_000.0
MAPPING = Mapping(id="purchase", event_name="Purchase", track=("Order Completed",))


def people(n: int) -> list[tuple[Profile, list[dict[str, str]], MatchKeys, dict[str, Any]]]:
    out = []
    for i in range(n):
        profile = Profile(
            id=f"p{i}",
            workspace_id="default",
            traits={"firstName": f"Ana{i % 97}", "lastName": "Silva", "email": f"ana{i}@ex.com"},
            first_seen=NOW,
            last_seen=NOW,
            last_activity=NOW,
        )
        identities = [
            {"type": "email", "value": f"ana{i}@example.com"},
            {"type": "phone", "value": f"+1650555{i % 10000:04d}"},
            {"type": "user_id", "value": f"u{i}"},
        ]
        keys = MatchKeys(
            fbc=f"fb.1.1700000000000.click{i}",
            fbp=f"fb.1.1700000000000.{i}",
            ip="203.0.113.9",
            user_agent="Mozilla/5.0",
        )
        order = {"order_id": f"o{i}", "revenue": 10.0 + i % 50, "currency": "USD"}
        out.append((profile, identities, keys, order))
    return out


def run_ours(base: str, data: list[Any]) -> float:
    dest = DestinationConfig(
        "meta", "meta", MetaDestination(pixel_id="1", base_url=base), "meta-token"
    )
    sender = ConversionSender(lambda ws, name: dest, client=httpx2.Client(timeout=30))
    start = time.perf_counter()
    items = []
    for n, (profile, identities, keys, order) in enumerate(data):
        user = user_identifiers(profile, identities, keys, MAPPING.identifiers)
        base_conversion = Conversion(
            event_name="Purchase",
            event_time=NOW - 60,
            event_id=f"order-{order['order_id']}-purchase",
            user=user,
            action_source="website",
            event_source_url="https://shop.test/checkout",
            value=order["revenue"],
            currency=order["currency"],
            contents=(Content(id="sku-1", quantity=1, item_price=order["revenue"]),),
            order_id=order["order_id"],
            ad_user_data=True,
        )
        conversion, _ = for_destination(base_conversion, dest, MAPPING, None)
        payload = {"conversion": msgspec.to_builtins(conversion)}
        items.append(
            Claimed(n, "default", "conversion", "meta", f"meta:{n}", payload, 0, None, NOW)
        )
    for chunk in range(0, len(items), 5000):
        outcomes = sender.send_batch(items[chunk : chunk + 5000], NOW)
        assert all(o.status == "delivered" for o in outcomes), outcomes[0]
    elapsed = time.perf_counter() - start
    sender.close()
    return len(data) / elapsed


def run_sdk(base: str, data: list[Any]) -> float:
    from facebook_business.adobjects.serverside.action_source import ActionSource
    from facebook_business.adobjects.serverside.content import Content as SdkContent
    from facebook_business.adobjects.serverside.custom_data import CustomData
    from facebook_business.adobjects.serverside.event import Event
    from facebook_business.adobjects.serverside.event_request import EventRequest
    from facebook_business.adobjects.serverside.http_service_interface import (
        HttpServiceInterface,
    )
    from facebook_business.adobjects.serverside.user_data import UserData

    client = httpx2.Client(timeout=30)

    class Http(HttpServiceInterface):  # type: ignore[misc]
        def execute(
            self, url: str, method: str, request_options: Any, headers: Any, params: Any
        ) -> Any:
            path = url.split("://", 1)[1].split("/", 1)[1]
            token = params.pop("access_token")
            # The SDK's `data` is a list of JSON strings (one per event), sent as one JSON array.
            params["data"] = "[" + ",".join(params["data"]) + "]"
            response = client.post(f"{base}/{path}", params={"access_token": token}, json=params)
            assert response.status_code == 200, response.text
            return response.json()

    http = Http()
    start = time.perf_counter()
    events = []
    for profile, identities, keys, order in data:
        by_type = {i["type"]: i["value"] for i in identities}
        user = UserData(
            emails=[by_type["email"]],
            phones=[by_type["phone"]],
            first_name=profile.traits["firstName"],
            last_name=profile.traits["lastName"],
            external_id=by_type["user_id"],
            client_ip_address=keys.ip,
            client_user_agent=keys.user_agent,
            fbc=keys.fbc,
            fbp=keys.fbp,
        )
        custom = CustomData(
            value=order["revenue"],
            currency=order["currency"].lower(),
            order_id=order["order_id"],
            contents=[SdkContent(product_id="sku-1", quantity=1, item_price=order["revenue"])],
        )
        events.append(
            Event(
                event_name="Purchase",
                event_time=int(NOW - 60),
                event_id=f"order-{order['order_id']}-purchase",
                user_data=user,
                custom_data=custom,
                action_source=ActionSource.WEBSITE,
                event_source_url="https://shop.test/checkout",
            )
        )
    for chunk in range(0, len(events), 1000):
        request = EventRequest(
            pixel_id="1",
            events=events[chunk : chunk + 1000],
            http_client=http,
            access_token="meta-token",
        )
        request.execute()
    elapsed = time.perf_counter() - start
    client.close()
    return len(data) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--postgres-url", default=None, help="unused: no storage here")
    args = parser.parse_args()
    data = people(args.events)
    ours: list[float] = []
    sdk: list[float] = []
    deadline = time.perf_counter() + args.seconds
    while True:
        # A fresh fake per round: it dedups event ids within 48 h, as Meta does.
        with FakeAdsServer(clock=ManualClock(NOW)) as fake:
            ours.append(run_ours(fake.base_url, data))
        with FakeAdsServer(clock=ManualClock(NOW)) as fake:
            sdk.append(run_sdk(fake.base_url, data))
        if time.perf_counter() > deadline:
            break
    best_ours, best_sdk = max(ours), max(sdk)
    print(f"\n{args.events} Purchase conversions per round, {len(ours)} round(s), best round:\n")
    print("| path | conversions/s | target |")
    print("| --- | ---: | --- |")
    print(f"| leadloop (map, normalise, hash, batch, POST) | {best_ours:,.0f} | ≥ 20,000 |")
    print(f"| facebook-business `EventRequest` | {best_sdk:,.0f} | baseline |")
    print(f"| ratio | {best_ours / best_sdk:.2f}× | ≥ 3× |")


if __name__ == "__main__":
    main()
