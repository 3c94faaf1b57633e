"""Audience segment expressions: `tier:gold,platinum region:emea role:support`.

A space separates terms that must all hold (AND); a comma separates values of which any may
match (OR). Repeating an attribute adds values to it. `all` selects every active member.
Topic role routing then narrows the audience unless it names roles or members explicitly.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field

from email_validator import EmailNotValidError, validate_email
from tortoise.expressions import Case, F, Q, Subquery, When
from tortoise.functions import Count

from bot.common.errors import UserError
from bot.core.directory.importer import org_key
from bot.topics import ImportancePolicy, Topic
from storage.models import Member, Organisation, PlatformAccount

ORG_ATTRIBUTES = ("tier", "region", "country", "industry", "size", "partner_type")
ATTRIBUTES = (*ORG_ATTRIBUTES, "role", "org", "member")
_SPELLINGS = {"partner-type": "partner_type", "partnertype": "partner_type", "organisation": "org",
              "organization": "org", "roles": "role", "email": "member"}


@dataclass(frozen=True)
class Audience:
    """A parsed expression: attribute -> accepted values (lower-case). Empty = everyone."""

    terms: dict[str, frozenset[str]] = field(default_factory=dict)
    everyone: bool = False

    def describe(self) -> str:
        if self.everyone or not self.terms:
            return "all"
        return " ".join(f"{attr}:{','.join(sorted(values))}" for attr, values in self.terms.items())


def parse_audience(expression: str, *, roles: tuple[str, ...] = ()) -> Audience:
    """Parse an expression, raising `UserError` with a precise message on any mistake. Compared in
    Unicode's composed form (NFC), as the directory import stores values."""
    words = unicodedata.normalize("NFC", expression).split()
    if not words:
        raise UserError("the audience is empty: give terms like tier:gold region:emea, or all")
    if [w.lower() for w in words] == ["all"]:
        return Audience(everyone=True)
    terms: dict[str, set[str]] = {}
    for word in words:
        attribute, values = _parse_term(word, roles)
        terms.setdefault(attribute, set()).update(values)
    return Audience(terms={k: frozenset(v) for k, v in terms.items()})


def _parse_term(word: str, roles: tuple[str, ...]) -> tuple[str, set[str]]:
    if word.lower() == "all":
        raise UserError("'all' cannot be combined with other audience terms")
    if ":" not in word:
        raise UserError(f"audience term '{word}' needs the form attribute:value (e.g. tier:gold)")
    raw_attribute, _, raw_values = word.partition(":")
    attribute = _SPELLINGS.get(raw_attribute.lower(), raw_attribute.lower())
    if attribute not in ATTRIBUTES:
        raise UserError(f"unknown attribute '{raw_attribute}'{_did_you_mean(raw_attribute, ATTRIBUTES)}"
                        f"; attributes: {', '.join(ATTRIBUTES)}")
    values = {v.strip().lower() for v in raw_values.split(",")}
    if not raw_values or "" in values:
        raise UserError(f"audience term '{word}' has an empty value")
    if attribute == "role" and roles:
        for value in values:
            if value not in roles:
                raise UserError(f"unknown role '{value}'{_did_you_mean(value, roles)}; roles: {', '.join(roles)}")
    if attribute == "member":
        values = {_normalise_email(v) for v in values}
    return attribute, values


def _normalise_email(value: str) -> str:
    try:
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        raise UserError(f"member:{value} is not a valid e-mail address") from None


def _did_you_mean(word: str, options: tuple[str, ...] | list[str]) -> str:
    match = difflib.get_close_matches(word.lower(), list(options), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


async def _organisation_terms(audience: Audience, prefix: str = "") -> list[Q]:
    """The audience's partner-level terms (tier, region, ..., org) as filters on an organisation's
    fields, each prefixed by `prefix` (``organisation__`` to filter members). Each term is matched
    against the directory's own spellings (`_directory_spellings`), filtered with `__in`: a
    comparison in SQL would fold case for ASCII letters only."""
    terms = []
    for attribute, values in audience.terms.items():
        if attribute in ORG_ATTRIBUTES:
            terms.append(Q(**{f"{prefix}{attribute}__in": await _directory_spellings(attribute, values)}))
        elif attribute == "org":
            terms.append(Q(**{f"{prefix}external_id__in": await _directory_spellings(attribute, values)}))
    return terms


async def audience_filter(audience: Audience, topic: Topic) -> Q:
    """The member filter for an audience after topic role routing (active members only)."""
    query = Q(*await _organisation_terms(audience, prefix="organisation__"), active=True)
    for attribute, values in audience.terms.items():
        if attribute == "member":
            query &= Q(email__in=sorted(values))
        elif attribute == "role":
            query &= Q(role__in=sorted(values))
    explicit = "role" in audience.terms or "member" in audience.terms
    if topic.roles and not explicit:
        query &= Q(role__in=sorted(topic.roles))
    return query


async def count_recipients(audience: Audience, topic: Topic, policy: ImportancePolicy | None = None) -> int:
    """How many members the notice would reach. With its importance (`policy`): without those who
    left the topic, when the importance lets them (as sending does), so the preview's count is the
    number queued."""
    query = Member.filter(await audience_filter(audience, topic))
    if not _drops_opt_outs(topic, policy):
        return await query.count()
    return sum(1 for opt_outs in await query.values_list("topic_opt_outs", flat=True)
               if topic.key not in (opt_outs or []))


async def count_recipients_and_without_account(audience: Audience, topic: Topic,
                                               policy: ImportancePolicy | None = None) -> tuple[int, int]:
    """`count_recipients`, and of them how many have no Slack or Teams account on file (the
    directory has no ids for them and they never wrote to Herald: sending fails their copies at
    once), from one query: the audience is resolved once (the preview's counts)."""
    # the audience's members in a subquery: the outer query has no join, so it counts in one row
    members = Member.filter(id__in=Subquery(Member.filter(await audience_filter(audience, topic)).values("id")))
    has_account = Q(id__in=Subquery(PlatformAccount.all().values("member_id")))
    if not _drops_opt_outs(topic, policy):
        (counts,) = await members.annotate(recipients=Count("id"), reached=Count("id", _filter=has_account)).values(
            "recipients", "reached")
        return counts["recipients"], counts["recipients"] - counts["reached"]
    rows = await members.annotate(account=Case(When(has_account, then=F("id")), default=None)).values_list(
        "topic_opt_outs", "account")
    kept = [account for opt_outs, account in rows if topic.key not in (opt_outs or [])]
    return len(kept), sum(1 for account in kept if account is None)


def _drops_opt_outs(topic: Topic, policy: ImportancePolicy | None) -> bool:
    """Whether members who left the topic are left out of the count (as sending leaves them out)."""
    return policy is not None and policy.respects_opt_outs and topic.opt_out


async def matched_organisation_ids(audience: Audience) -> list[int]:
    """The organisations the audience selects as partners, whoever is active there now: those its
    partner-level terms match (every one for `all`), and of those, when it names members, the
    organisations of the members named. Roles and topic routing pick people within a partner, so
    they do not narrow this: a gold partner with nobody in the roles is matched, and reached by no
    one. The report names such partners (`Notice.unreached_organisations`)."""
    query = Organisation.filter(*await _organisation_terms(audience))
    if "member" in audience.terms:
        query = query.filter(members__email__in=sorted(audience.terms["member"])).distinct()
    return list(await query.order_by("id").values_list("id", flat=True))


async def recipient_ids(audience: Audience, topic: Topic) -> list[int]:
    return list(
        await Member.filter(await audience_filter(audience, topic)).order_by("id").values_list("id", flat=True)
    )


async def unmatched_value_warnings(audience: Audience) -> list[str]:
    """Warn about values nothing in the directory has (a misspelt tier, with the closest spelling
    that works), compared as the filter compares them, and about members named who are deactivated."""
    warnings: list[str] = []
    for attribute, values in audience.terms.items():
        if attribute == "member":
            warnings += await _member_warnings(values)
        elif attribute in _MATCHED_AS:
            key = _MATCHED_AS[attribute]
            known = await _known_spellings(attribute)
            keys = {key(k) for k in known}
            for value in sorted(v for v in values if key(v) not in keys):
                warnings.append(f"no partner matches {attribute}:{value}{_did_you_mean(key(value), sorted(keys))}")
    return warnings


async def _member_warnings(emails: frozenset[str]) -> list[str]:
    """Members named who are not in the directory, or are no longer active in it (they get nothing)."""
    found: dict[str, bool] = {}
    for email, active in await Member.filter(email__in=sorted(emails)).values_list("email", "active"):
        found[email] = found.get(email, False) or active
    return [f"no partner matches member:{email}" if email not in found else f"member:{email} is deactivated"
            for email in sorted(emails) if not found.get(email)]


def canonical(value: str) -> str:
    """How an attribute value typed in an audience compares with the directory's: composed
    (NFC), case-folded, and every run of spaces, hyphens, underscores and punctuation one hyphen.
    An expression cannot hold a space, and a comma separates values, so "Value-Added Reseller" is
    `value-added-reseller` and "Korea, Republic of" `korea-republic-of`; it is also the spelling
    a warning suggests, so a suggestion always selects what it names."""
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFC", value).casefold())
    return re.sub(r"[\W_]+", "-", folded).strip("-") or folded


# How each partner-level attribute's typed values compare with the directory's: ids in any case
# and Unicode form only (ACME-01 and ACME_01 may be two partners), as the import compares them.
_MATCHED_AS: dict[str, Callable[[str], str]] = {**{a: canonical for a in ORG_ATTRIBUTES}, "org": org_key}


async def _known_spellings(attribute: str) -> list[str]:
    """The attribute's distinct values in the directory, as written there."""
    column = "external_id" if attribute == "org" else attribute
    return [str(v) for v in await Organisation.all().distinct().values_list(column, flat=True) if v]


async def _directory_spellings(attribute: str, values: frozenset[str]) -> list[str]:
    """The directory's spellings of the values typed for a partner-level attribute (`_MATCHED_AS`)."""
    key = _MATCHED_AS[attribute]
    wanted = {key(v) for v in values}
    return sorted(k for k in await _known_spellings(attribute) if key(k) in wanted)
