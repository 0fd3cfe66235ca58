"""The official Stripe SDK against Wireline's Stripe emulator: every covered endpoint, used
the way the SDK's own docs show. Prints one JSON object of what it saw; any exception fails."""

import json
import os
import sys

import stripe

client = stripe.StripeClient(
    "sk_test_emulator_0001",
    base_addresses={"api": os.environ["STRIPE_EMULATOR"]},
    max_network_retries=0,
)
seen = {}

customer = client.customers.create(params={"email": "ada@example.com", "name": "Ada", "metadata": {"plan": "pro"}})
seen["customer"] = customer.id
seen["metadata"] = customer.metadata.to_dict()
seen["fetched"] = client.customers.retrieve(customer.id).email
updated = client.customers.update(customer.id, params={"name": "Ada Lovelace"})
seen["updated_name"] = updated.name

intent = client.payment_intents.create(
    params={"amount": 2000, "currency": "eur", "customer": customer.id},
    options={"idempotency_key": "order-7"},
)
again = client.payment_intents.create(
    params={"amount": 2000, "currency": "eur", "customer": customer.id},
    options={"idempotency_key": "order-7"},
)
seen["idempotent_same_id"] = again.id == intent.id
seen["created_status"] = intent.status
confirmed = client.payment_intents.confirm(intent.id, params={"payment_method": "pm_card_visa"})
seen["confirmed_status"] = confirmed.status
seen["retrieved_status"] = client.payment_intents.retrieve(intent.id).status
charge = client.charges.retrieve(confirmed.latest_charge)
seen["charge_paid"] = charge.paid

try:
    client.payment_intents.create(
        params={"amount": 500, "currency": "eur", "payment_method": "pm_card_chargeDeclined", "confirm": True}
    )
    seen["declined"] = "not raised"
except stripe.CardError as error:
    seen["declined"] = {"code": error.code, "decline_code": error.error.decline_code, "status": error.http_status}

try:
    client.payment_intents.create(params={"amount": 2100, "currency": "eur"}, options={"idempotency_key": "order-7"})
    seen["mismatch"] = "not raised"
except stripe.IdempotencyError as error:
    seen["mismatch"] = error.http_status

try:
    client.customers.retrieve("cus_missing")
    seen["missing"] = "not raised"
except stripe.InvalidRequestError as error:
    seen["missing"] = {"status": error.http_status, "code": error.code}

refund = client.refunds.create(params={"payment_intent": intent.id, "amount": 500})
seen["refund"] = {"status": refund.status, "amount": refund.amount}
seen["charge_refunded"] = client.charges.retrieve(charge.id).amount_refunded

# The events feed, newest first, paged by the SDK itself (limit 2 forces several pages).
types = [event.type for event in client.events.list(params={"limit": 2}).auto_paging_iter()]
seen["event_types"] = types
seen["charges_listed"] = len(client.charges.list().data)

json.dump(seen, sys.stdout)
