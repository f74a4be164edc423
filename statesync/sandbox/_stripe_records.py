"""Synthetic, Stripe-shaped records (roughly 300-600 bytes of JSON each)."""

from __future__ import annotations

import random
import string
from collections.abc import Callable

import attrs

from ._api import JSONDict

_ALPHABET = string.ascii_letters + string.digits
_FIRST = ("Ada", "Grace", "Alan", "Linus", "Edsger", "Barbara", "Ken", "Margaret", "Donald")
_LAST = ("Lovelace", "Hopper", "Turing", "Torvalds", "Dijkstra", "Liskov", "Thompson", "Knuth")
_CURRENCIES = ("usd", "usd", "usd", "eur", "gbp")
_PRODUCTS = ("Starter plan", "Team plan", "Enterprise plan", "Support add-on", "Extra seats")
_PREFIXES = {
    "customers": "cus",
    "invoices": "in",
    "charges": "ch",
    "subscriptions": "sub",
    "products": "prod",
}
_THIRTY_DAYS = 30 * 24 * 3600


def id_prefix(entity: str) -> str:
    """Stripe's prefix for known entities; otherwise the first letters of the name."""
    if entity in _PREFIXES:
        return _PREFIXES[entity]
    letters = "".join(c for c in entity.lower() if c.isalnum())
    return letters[:4] or "obj"


def object_name(entity: str) -> str:
    """Singular ``object`` field value: ``customers`` -> ``customer``."""
    return entity[:-1] if entity.endswith("s") and len(entity) > 1 else entity


def _token(rng: random.Random, length: int = 24) -> str:
    return "".join(rng.choices(_ALPHABET, k=length))


def foreign_id(seed_rng: random.Random, prefix: str) -> str:
    """An id for a referenced object (it need not exist in the dataset)."""
    return f"{prefix}_{_token(seed_rng)}"


def _person(rng: random.Random, index: int) -> tuple[str, str]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    return f"{first} {last}", f"{first.lower()}.{last.lower()}{index}@example.com"


def _customer(rng: random.Random, index: int, created: int) -> JSONDict:
    name, email = _person(rng, index)
    return {
        "address": None,
        "balance": 0,
        "currency": rng.choice(_CURRENCIES),
        "delinquent": rng.random() < 0.05,
        "description": f"Sandbox customer {index}",
        "email": email,
        "invoice_prefix": _token(rng, 8).upper(),
        "name": name,
        "phone": f"+1555{rng.randrange(10**7):07d}",
        "preferred_locales": ["en"],
        "tax_exempt": "none",
    }


def _invoice(rng: random.Random, index: int, created: int) -> JSONDict:
    amount = rng.randrange(500, 250_000)
    status = rng.choice(("draft", "open", "paid", "paid", "paid", "void", "uncollectible"))
    paid = amount if status == "paid" else 0
    return {
        "amount_due": amount,
        "amount_paid": paid,
        "amount_remaining": amount - paid,
        "currency": rng.choice(_CURRENCIES),
        "customer": foreign_id(rng, "cus"),
        "customer_email": _person(rng, index)[1],
        "number": f"{_token(rng, 8).upper()}-{index + 1:04d}",
        "paid": status == "paid",
        "period_end": created,
        "period_start": created - _THIRTY_DAYS,
        "status": status,
        "subscription": foreign_id(rng, "sub"),
    }


def _charge(rng: random.Random, index: int, created: int) -> JSONDict:
    amount = rng.randrange(100, 100_000)
    status = rng.choice(("succeeded", "succeeded", "succeeded", "pending", "failed"))
    refunded = status == "succeeded" and rng.random() < 0.1
    return {
        "amount": amount,
        "amount_captured": amount if status == "succeeded" else 0,
        "amount_refunded": amount if refunded else 0,
        "captured": status == "succeeded",
        "currency": rng.choice(_CURRENCIES),
        "customer": foreign_id(rng, "cus"),
        "description": f"Charge {index} for {rng.choice(_PRODUCTS)}",
        "paid": status == "succeeded",
        "receipt_email": _person(rng, index)[1],
        "refunded": refunded,
        "status": status,
    }


def _subscription(rng: random.Random, index: int, created: int) -> JSONDict:
    return {
        "cancel_at_period_end": rng.random() < 0.1,
        "collection_method": rng.choice(("charge_automatically", "send_invoice")),
        "currency": rng.choice(_CURRENCIES),
        "current_period_end": created + _THIRTY_DAYS,
        "current_period_start": created,
        "customer": foreign_id(rng, "cus"),
        "plan_name": rng.choice(_PRODUCTS),
        "quantity": rng.randrange(1, 25),
        "status": rng.choice(("active", "active", "active", "trialing", "past_due", "canceled")),
    }


def _product(rng: random.Random, index: int, created: int) -> JSONDict:
    name = f"{rng.choice(_PRODUCTS)} #{index}"
    return {
        "active": rng.random() < 0.9,
        "default_price": foreign_id(rng, "price"),
        "description": f"{name}, billed monthly",
        "images": [],
        "name": name,
        "shippable": None,
        "type": "service",
        "updated": created,
        "url": None,
    }


def _generic(rng: random.Random, index: int, created: int) -> JSONDict:
    return {
        "amount": rng.randrange(100, 100_000),
        "currency": rng.choice(_CURRENCIES),
        "description": f"Sandbox record {index}",
        "name": _person(rng, index)[0],
        "status": rng.choice(("active", "pending", "archived")),
    }


_BUILDERS: dict[str, Callable[[random.Random, int, int], JSONDict]] = {
    "customers": _customer,
    "invoices": _invoice,
    "charges": _charge,
    "subscriptions": _subscription,
    "products": _product,
}


@attrs.frozen
class StripeRecordMaker:
    """Builds the records of one Stripe entity (see ``RecordMaker``)."""

    entity: str

    def make(self, index: int, created: int, rng: random.Random) -> JSONDict:
        builder = _BUILDERS.get(self.entity, _generic)
        record: JSONDict = {
            "id": f"{id_prefix(self.entity)}_{_token(rng)}",
            "object": object_name(self.entity),
            "created": created,
            "livemode": False,
        }
        record.update(builder(rng, index, created))
        record["metadata"] = {"sandbox_index": str(index)}
        return record

    def touch(self, record: JSONDict, revision: int) -> None:
        record["metadata"] = {**record["metadata"], "sandbox_revision": str(revision)}
        record["description"] = f"Updated by the sandbox (revision {revision})"
