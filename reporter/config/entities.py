"""The canonical data model of KPIS.md: every entity a source can provide.

Sources map their columns onto these names; compute only ever sees these.
Every entity but `accounts` is checked against the known account ids on load.
"""
from __future__ import annotations

from dataclasses import dataclass

# Column types understood by the loaders.
STRING, DATE, TIMESTAMP, NUMBER, INTEGER, BOOLEAN = "string", "date", "timestamp", "number", "integer", "boolean"


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    required: bool = False
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Entity:
    name: str
    fields: tuple[Field, ...]
    key: tuple[str, ...] = ()          # unique key checked on load (duplicate keys are rejected)
    non_negative: tuple[str, ...] = ()  # negative values rejected unless the source allows them

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def required(self) -> list[str]:
        return [f.name for f in self.fields if f.required]


def _f(name: str, type_: str, required: bool = False, choices: tuple[str, ...] = ()) -> Field:
    return Field(name, type_, required, choices)


ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in (
        Entity(
            "accounts",
            (
                _f("account_id", STRING, True), _f("name", STRING, True), _f("tier", STRING),
                _f("owner_email", STRING), _f("owner_name", STRING), _f("region", STRING),
                _f("industry", STRING), _f("since", DATE), _f("churned_on", DATE),
            ),
            key=("account_id",),
        ),
        Entity(
            "orders",
            (
                _f("account_id", STRING, True), _f("date", DATE, True), _f("amount", NUMBER, True),
                _f("cost", NUMBER), _f("margin", NUMBER), _f("product_line", STRING), _f("order_id", STRING),
            ),
            key=("order_id",),
            non_negative=("amount", "cost"),
        ),
        Entity(
            "surveys",
            (
                _f("account_id", STRING, True), _f("date", DATE, True),
                _f("kind", STRING, True, ("nps", "csat", "ces")), _f("score", NUMBER, True),
                _f("respondent", STRING), _f("comment", STRING),
            ),
            non_negative=("score",),
        ),
        Entity(
            "tickets",
            (
                _f("account_id", STRING, True), _f("opened_at", TIMESTAMP, True),
                _f("first_response_at", TIMESTAMP), _f("resolved_at", TIMESTAMP),
                _f("is_complaint", BOOLEAN), _f("priority", STRING), _f("sla_hours", NUMBER),
                _f("satisfaction", NUMBER), _f("reopened", BOOLEAN), _f("ticket_id", STRING),
            ),
            key=("ticket_id",),
            non_negative=("sla_hours", "satisfaction"),
        ),
        Entity(
            "interactions",
            (
                _f("account_id", STRING, True), _f("date", DATE, True),
                _f("channel", STRING, choices=("meeting", "call", "email", "visit", "review")),
                _f("contact_id", STRING), _f("department", STRING),
                _f("seniority", STRING, choices=("staff", "manager", "director", "executive")),
            ),
        ),
        Entity(
            "contacts",
            (
                _f("account_id", STRING, True), _f("contact_id", STRING, True), _f("name", STRING),
                _f("department", STRING),
                _f("seniority", STRING, choices=("staff", "manager", "director", "executive")),
                _f("role", STRING, choices=("decision_maker", "influencer", "user")), _f("active", BOOLEAN),
            ),
            key=("contact_id",),
        ),
        Entity(
            "opportunities",
            (
                _f("account_id", STRING, True), _f("created_at", DATE, True), _f("closed_at", DATE),
                _f("status", STRING, choices=("open", "won", "lost")), _f("amount", NUMBER),
                _f("kind", STRING, choices=("new", "renewal", "cross_sell", "upsell")),
                _f("opportunity_id", STRING), _f("product_line", STRING),
            ),
            key=("opportunity_id",),
            non_negative=("amount",),
        ),
        Entity(
            "costs",
            (
                _f("date", DATE, True),
                _f("category", STRING, True, ("acquisition", "retention", "service", "marketing", "sales")),
                _f("amount", NUMBER, True), _f("account_id", STRING),
            ),
            # a blank account_id is a portfolio-level cost; a set one must name a known account
            non_negative=("amount",),
        ),
    )
}
