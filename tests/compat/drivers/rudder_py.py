"""Drive rudder-sdk-python 2.1.9 through the canonical scenario (clients.md §2, §7).

Usage: rudder_py.py BASE WRITE_KEY PREFIX.  Run as a subprocess with cwd = a temp dir:
the package calls load_dotenv() at import time.  gzip stays at its default (on).
"""

import sys
from datetime import UTC, datetime

from rudderstack.analytics import Client

base, write_key, prefix = sys.argv[1:4]
errors: list[str] = []


def on_error(exc: Exception, batch: object) -> None:
    errors.append(repr(exc))


client = Client(write_key, host=base, upload_interval=0.1, max_retries=2, on_error=on_error)
uid = prefix + "user-42"
client.identify(uid, {"email": "ada@example.com", "name": "Ada Lovelace", "plan": "pro"})
client.track(uid, "Order Completed", {"order_id": "o-1001", "revenue": 42.5, "currency": "EUR"})
client.page(
    uid, "Docs", "Getting Started", {"url": "https://example.com/docs/start", "path": "/docs/start"}
)
client.screen(uid, "Onboarding", "Welcome", {"step": 1})
client.group(uid, prefix + "acme-inc", {"name": "Acme Inc", "employees": 120})
client.alias(prefix + "anon-7f3a", uid)
client.track(
    anonymous_id=prefix + "anon-7f3a",
    event="Signup Started",
    properties={"source": "ads"},
    context={"ip": "203.0.113.9", "traits": {"email": "ada@example.com"}},
    timestamp=datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC),
    message_id=prefix + "fixed-msg-id-1",
)
client.shutdown()
if errors:
    print("delivery errors:", *errors, file=sys.stderr, sep="\n")
    sys.exit(1)
print("ok")
