"""Synthetic, Close-shaped records for the Close CRM emulator.

Dataset entity names are namespaced (``close.lead``, ``close.activity_call``,
``close.custom_field_lead`` ...) so they never collide with Stripe's. Every record keeps
the dataset's integer ``created`` (the store sorts on it); the plugin strips it before
serving, so clients only see Close's ISO-8601 ``date_created``/``date_updated``.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import attrs

from ._api import JSONDict

NAMESPACE = "close."
_ALPHABET = string.ascii_letters + string.digits
_FIRST = ("Ada", "Grace", "Alan", "Linus", "Edsger", "Barbara", "Ken", "Margaret", "Donald")
_LAST = ("Lovelace", "Hopper", "Turing", "Torvalds", "Dijkstra", "Liskov", "Thompson", "Knuth")
_COMPANIES = ("Acme", "Initech", "Globex", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne")
_LEAD_STATUSES = ("Potential", "Bad Fit", "Qualified", "Customer")
_ACTIVITY_TYPES = {
    "activity_call": "Call",
    "activity_email": "Email",
    "activity_note": "Note",
    "activity_meeting": "Meeting",
    "activity_sms": "SMS",
}
_GENERIC_ACTIVITY_TYPES = ("Created", "LeadStatusChange", "TaskCompleted", "Call", "Note")
_CUSTOM_FIELD_TYPES = ("text", "number", "choices", "date", "user")
_WEEK = 7 * 24 * 3600


def iso(moment: datetime) -> str:
    """Close's timestamp format: microseconds and an explicit UTC offset."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def iso_from_epoch(seconds: int) -> str:
    return iso(datetime.fromtimestamp(seconds, UTC))


def _token(rng: random.Random, length: int = 43) -> str:
    return "".join(rng.choices(_ALPHABET, k=length))


def _id(rng: random.Random, prefix: str) -> str:
    return f"{prefix}_{_token(rng)}"


def _person(rng: random.Random) -> tuple[str, str]:
    return rng.choice(_FIRST), rng.choice(_LAST)


def _lead(rng: random.Random, index: int) -> JSONDict:
    company = f"{rng.choice(_COMPANIES)} {index}"
    return {
        "display_name": company,
        "name": company,
        "description": f"Sandbox lead {index}",
        "status_label": rng.choice(_LEAD_STATUSES),
        "status_id": _id(rng, "stat"),
        "url": f"https://{company.split()[0].lower()}{index}.example.com",
        "organization_id": "orga_sandbox",
        "created_by": _id(rng, "user"),
    }


def _contact(rng: random.Random, index: int) -> JSONDict:
    first, last = _person(rng)
    email = f"{first.lower()}.{last.lower()}{index}@example.com"
    return {
        "name": f"{first} {last}",
        "title": rng.choice(("CEO", "CTO", "Buyer", "Engineer", "")),
        "lead_id": _id(rng, "lead"),
        "emails": [{"email": email, "type": "office"}],
        "phones": [{"phone": f"+1555{rng.randrange(10**7):07d}", "type": "office"}],
        "organization_id": "orga_sandbox",
    }


def _opportunity(rng: random.Random, index: int) -> JSONDict:
    status = rng.choice(("active", "active", "won", "lost"))
    return {
        "lead_id": _id(rng, "lead"),
        "status_type": status,
        "status_label": status.title(),
        "value": rng.randrange(1_000, 5_000_000),
        "value_currency": "USD",
        "value_period": rng.choice(("one_time", "monthly", "annual")),
        "confidence": rng.randrange(0, 101),
        "note": f"Sandbox opportunity {index}",
        "organization_id": "orga_sandbox",
    }


def _activity(kind: str) -> Callable[[random.Random, int], JSONDict]:
    def build(rng: random.Random, index: int) -> JSONDict:
        record: JSONDict = {
            "_type": kind if kind else rng.choice(_GENERIC_ACTIVITY_TYPES),
            "lead_id": _id(rng, "lead"),
            "user_id": _id(rng, "user"),
            "organization_id": "orga_sandbox",
        }
        if kind in ("Call", "Meeting"):
            record["duration"] = rng.randrange(0, 3600)
        if kind in ("Call", "Email", "SMS"):
            record["direction"] = rng.choice(("inbound", "outbound"))
        if kind == "Email":
            record["subject"] = f"Sandbox email {index}"
        if kind in ("Note", "SMS"):
            record["text" if kind == "SMS" else "note"] = f"Sandbox {kind.lower()} {index}"
        if kind == "Meeting":
            record["title"] = f"Sandbox meeting {index}"
        return record

    return build


def _custom_field(rng: random.Random, index: int) -> JSONDict:
    field_type = rng.choice(_CUSTOM_FIELD_TYPES)
    return {
        "name": f"Sandbox field {index}",
        "description": f"Custom field {index}",
        "type": field_type,
        "choices": ["red", "green", "blue"] if field_type == "choices" else None,
        "accepts_multiple_values": rng.random() < 0.2,
        "editable_with_roles": [],
        "organization_id": "orga_sandbox",
    }


def _user(rng: random.Random, index: int) -> JSONDict:
    first, last = _person(rng)
    return {
        "first_name": first,
        "last_name": last,
        "email": f"{first.lower()}.{last.lower()}{index}@example.com",
        "image": None,
        "organizations": ["orga_sandbox"],
    }


_BUILDERS: dict[str, tuple[str, Callable[[random.Random, int], JSONDict]]] = {
    "lead": ("lead", _lead),
    "contact": ("cont", _contact),
    "opportunity": ("oppo", _opportunity),
    "activity": ("acti", _activity("")),
    **{name: ("acti", _activity(kind)) for name, kind in _ACTIVITY_TYPES.items()},
    **{
        f"custom_field_{owner}": ("cf", _custom_field)
        for owner in ("lead", "contact", "opportunity", "activity", "shared")
    },
    "user": ("user", _user),
}

KINDS = tuple(_BUILDERS)
"""Entity kinds served, without the ``close.`` namespace."""


def is_activity(kind: str) -> bool:
    return kind == "activity" or kind.startswith("activity_")


@attrs.frozen
class CloseRecordMaker:
    """Builds the records of one Close entity (see ``RecordMaker``)."""

    kind: str

    def make(self, index: int, created: int, rng: random.Random) -> JSONDict:
        prefix, builder = _BUILDERS[self.kind]
        record: JSONDict = {"id": _id(rng, prefix), "created": created}
        record.update(builder(rng, index))
        # Updated some time after creation, so date_updated order differs from
        # date_created order, as in a real account.
        record["date_created"] = iso_from_epoch(created)
        record["date_updated"] = iso_from_epoch(created + rng.randrange(0, _WEEK))
        return record

    def touch(self, record: JSONDict, revision: int) -> None:
        # An edit happens "now": later than any generated date, like a real update.
        now = datetime.now(UTC)
        previous = datetime.fromisoformat(record["date_updated"])
        record["date_updated"] = iso(max(now, previous + timedelta(microseconds=1)))
        record["sandbox_revision"] = revision
