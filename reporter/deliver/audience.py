"""Who gets what: a report's audience turned into envelopes (recipient, locale, accounts).

Account owners receive only their own accounts; fixed recipients receive every
account the report's filter selects (or the one portfolio document).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..config.models import Report
from . import recipient_key


@dataclass(frozen=True)
class Envelope:
    key: str                   # ledger key: one delivery per (report, period, key)
    email: str
    name: str | None
    locale: str
    account_ids: tuple[str, ...]   # empty for the portfolio scorecard
    role: str                  # "recipient" or "owner"


@dataclass
class AudiencePlan:
    envelopes: list[Envelope]
    selected: list[dict]                       # accounts the report covers
    unowned: list[str] = field(default_factory=list)  # account_owner reports: accounts with no owner_email


def select_accounts(report: Report, accounts: list[dict]) -> list[dict]:
    """The report's filter (tiers, regions, account ids) over the scorecard's accounts."""
    f = report.filter
    return [
        a for a in accounts
        if (not f.tiers or a.get("tier") in f.tiers)
        and (not f.regions or a.get("region") in f.regions)
        and (not f.accounts or a["account_id"] in f.accounts)
    ]


def plan_audience(report: Report, accounts: list[dict], default_locale: str) -> AudiencePlan:
    locale = report.locale or default_locale
    selected = select_accounts(report, accounts) if report.kind == "account_review" else accounts
    ids = tuple(a["account_id"] for a in selected) if report.kind == "account_review" else ()
    envelopes = [
        Envelope(recipient_key(r.email), r.email, r.name, r.locale or locale, ids, "recipient")
        for r in report.audience.recipients
    ]
    unowned: list[str] = []
    if report.kind == "account_review" and report.audience.account_owner:
        by_owner: dict[str, list[dict]] = {}
        for account in selected:
            owner = (account.get("owner_email") or "").strip()
            if owner:
                by_owner.setdefault(recipient_key(owner), []).append(account)
            else:
                unowned.append(account["account_id"])
        for key, owned in sorted(by_owner.items()):
            email, name = owned[0]["owner_email"].strip(), owned[0].get("owner_name")
            if report.audience.one_email_per == "account":
                envelopes += [Envelope(f"{key}#{a['account_id']}", email, name, locale, (a["account_id"],), "owner")
                              for a in owned]
            else:
                envelopes.append(Envelope(key, email, name, locale, tuple(a["account_id"] for a in owned), "owner"))
    return AudiencePlan(_merge(envelopes), selected, unowned)


def _merge(envelopes: list[Envelope]) -> list[Envelope]:
    """A person listed twice (say, as a fixed recipient and as an owner) gets one email: the first listing wins."""
    seen: dict[str, Envelope] = {}
    for envelope in envelopes:
        seen.setdefault(envelope.key, envelope)
    return list(seen.values())
