"""The official Stripe SDK, unchanged, pointed at Wireline's proxy with an agent's token.

Run by crates/wireline/tests/it/sdk.rs; prints one JSON line with what it saw.
"""
import json
import os

import stripe

client = stripe.StripeClient(
    os.environ["AGENT_TOKEN"],
    base_addresses={"api": os.environ["WIRELINE_PROXY"]},
    max_network_retries=0,
)
created = client.v1.customers.create(
    params={"email": "jo@example.com", "metadata": {"order": "7"}},
    options={"idempotency_key": "create-jo"},
)
again = client.v1.customers.create(
    params={"email": "jo@example.com", "metadata": {"order": "7"}},
    options={"idempotency_key": "create-jo"},
)
fetched = client.v1.customers.retrieve(created.id)
try:
    client.v1.customers.retrieve("cus_missing")
    missing = None
except stripe.InvalidRequestError as error:
    missing = {"status": error.http_status, "code": error.code}
print(json.dumps({
    "created": created.id,
    "again": again.id,
    "fetched_email": fetched.email,
    "metadata": {"order": fetched.metadata["order"]},
    "missing": missing,
}))
