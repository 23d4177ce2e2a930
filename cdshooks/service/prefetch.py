"""Prefetch: the templates a service declares, and the data a call ends up with.

Templates are built from what a hook's rules read (``Rule.reads``): one search per data
key, filtered by the patient and by the codes of the value sets the rules name, newest
first and bounded. Medication searches are filtered by status, not code: orders carry
product-level codes or references to Medication resources that a code search misses.

``gather()`` turns a request into the data the rules see, per key:

* only ``null``, or a Bundle with no entries, means *no data*;
* a Bundle whose ``entry`` is a list is used (for a read template, a resource of the
  template's type);
* anything else (a missing key, an ``OperationOutcome``, a string, a number, ``[]``,
  ``{}``, a resource of another type, a Bundle whose ``entry`` is not a list) is
  *missing* and fetched from ``fhirServer`` (all such keys in parallel, within the
  call's time budget); a key that still cannot be obtained raises ``DataUnavailable``
  (412). A failed fetch is never turned into *no data*;
* a Bundle the client sent with a ``next`` link is completed from ``fhirServer`` when
  there is one we may call and the budget allows: its ``next`` pages are read with the
  same client, checks and page cap as a fetch (the client's page counts as the first),
  after the missing keys are fetched and within what is left of the call's budget;
* a *supplementary* key (``DataKey.supplementary``: lab reports by category) that is
  missing and cannot be fetched is *incomplete*, never a 412;
* a key whose results are still only partly there is *incomplete*: a Bundle with a
  ``next`` link left (the client's page we could not complete, or a fetch cut off at the
  page cap) or a fetch whose later pages failed. Its resources are used, and
  ``Gathered.incomplete`` names it so that no rule states absence of anything of its
  resource types (``Record.complete``). A page we could not read never fails the call.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Iterable
from urllib.parse import quote

from ..cards.registry import DATA_KEYS, DataKey
from ..fhir.terminology import valueset

__all__ = ["DATA_KEYS", "DataKey", "templates_for", "expand_template", "gather", "Gathered",
           "DataUnavailable", "USER_TOKENS", "meaning", "has_next", "resource_types"]



# Longest code list in one template: URLs stay well under the 8 KB request lines servers accept.
MAX_CODES_CHARS = 3000

USER_TOKENS = {
    "userPractitionerId": "Practitioner",
    "userPractitionerRoleId": "PractitionerRole",
    "userPatientId": "Patient",
    "userRelatedPersonId": "RelatedPerson",
}

_TOKEN = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")


def templates_for(rules: Iterable) -> dict[str, str]:
    """The prefetch templates of a service whose rules are ``rules``.

    A data key whose code list would make a long URL is split into several templates
    (``conditions``, ``conditions-2``, ...); their results all land in the same record.
    """
    wanted: dict[str, set[str]] = {}
    for r in rules:
        for key, names in r.reads.items():
            wanted.setdefault(key, set()).update(names)
    out: dict[str, str] = {}
    for key in DATA_KEYS:
        if key not in wanted:
            continue
        spec = DATA_KEYS[key]
        chunks: list[list[str]] = [[]]
        if spec.coded:
            seen: set[str] = set()
            size = 0
            for name in sorted(wanted[key]):
                for token in valueset(name).query_codes():
                    system = token.partition("|")[0]
                    if token in seen or (spec.systems and system not in spec.systems):
                        continue
                    seen.add(token)
                    encoded = quote(token, safe=":/.-")
                    if size + len(encoded) > MAX_CODES_CHARS and chunks[-1]:
                        chunks.append([])
                        size = 0
                    chunks[-1].append(encoded)
                    size += len(encoded) + 1
        for i, codes in enumerate(chunks, start=1):
            params = ["patient={{context.patientId}}"]
            if codes:
                params.append("code=" + ",".join(codes))
            if spec.fixed:
                params.append(spec.fixed)
            if spec.sort:
                params.append(f"_sort={spec.sort}")
            params.append(f"_count={spec.count}")
            out[key if i == 1 else f"{key}-{i}"] = f"{spec.resource_type}?{'&'.join(params)}"
    return out


def expand_template(template: str, context: dict, user_id: str | None = None) -> str | None:
    """Replace ``{{context.x}}`` and the user tokens; None when a token has no value.

    Only root-level primitive context fields are tokens (``selections`` and
    ``draftOrders`` are not). Values are URL-encoded.
    """
    user_id = user_id if user_id is not None else context.get("userId")
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        token = match.group(1)
        if token.startswith("context."):
            v = context.get(token[len("context."):])
            if isinstance(v, (str, int, float)) and not isinstance(v, bool) and str(v):
                return quote(str(v), safe="/")
        elif token in USER_TOKENS and isinstance(user_id, str) and "/" in user_id:
            rtype, _, rid = user_id.partition("/")
            if rtype == USER_TOKENS[token] and rid:
                return quote(rid, safe="")
        missing = True
        return ""

    out = _TOKEN.sub(value, template)
    return None if missing else out


class DataUnavailable(Exception):
    """Data the rules need could not be obtained (412)."""

    def __init__(self, keys: Iterable[str], reason: str):
        self.keys = sorted(set(keys))
        self.reason = reason
        super().__init__(f"{reason}: {', '.join(self.keys)}")


@dataclass
class Gathered:
    """The data of one call: values per key, what it took to get them, and which keys are incomplete."""

    values: dict[str, object] = field(default_factory=dict)
    fetched: list[str] = field(default_factory=list)
    fetch_ms: float = 0.0
    incomplete: set[str] = field(default_factory=set)
    incomplete_types: set[str] = field(default_factory=set)   # resource types of the incomplete keys
    followed: list[str] = field(default_factory=list)         # keys whose client page's next pages were read


def resource_types(template: str) -> tuple[str, ...]:
    """The resource types a template's results hold: its type, and an ``_include``d type."""
    path, _, params = template.partition("?")
    types = [path.strip("/").split("/")[0]]
    for param in params.split("&"):
        name, _, value = param.partition("=")
        if name == "_include" and value.count(":") >= 1:
            target = value.split(":")
            types.append(target[2] if len(target) > 2 else {"medication": "Medication"}.get(target[1], ""))
    return tuple(t for t in types if t)


def has_next(bundle: dict) -> bool:
    """Whether a Bundle says more results remain: a ``next`` link (or our fetch's cut-off mark)."""
    if bundle.get("_truncated") is True:
        return True
    links = bundle.get("link")
    return isinstance(links, list) and any(isinstance(link, dict) and link.get("relation") == "next"
                                           for link in links)


def meaning(value: object, template: str) -> str:
    """What a prefetch value means for its template: ``"none"`` (no data), ``"data"``, ``"partial"``
    (a Bundle with more results left) or ``"missing"`` (unusable: fetch it)."""
    if value is None:
        return "none"
    if not isinstance(value, dict):
        return "missing"
    rtype = value.get("resourceType")
    if rtype == "Bundle":
        entries = value.get("entry", [])
        if entries is None or entries == []:
            return "partial" if has_next(value) else "none"
        if not isinstance(entries, list):
            return "missing"
        return "partial" if has_next(value) else "data"
    path, sep, _ = template.partition("?")
    if not sep and isinstance(rtype, str) and rtype == path.strip("/").split("/")[0]:
        return "data"  # a read template answered by the resource itself
    return "missing"


def gather(templates: dict[str, str], request: dict, settings, client=None, deadline: float | None = None) -> Gathered:
    """The data for each template key, from prefetch or from ``fhirServer``.

    ``client`` is a ``fhirclient.FhirClient`` (or None when no fallback is possible);
    ``deadline`` is a ``time.monotonic()`` instant after which nothing more is fetched.
    """
    from ..fhir.client import FetchError

    prefetch = request.get("prefetch")
    prefetch = prefetch if isinstance(prefetch, dict) else {}
    context = request.get("context") or {}
    out = Gathered()
    to_fetch: dict[str, str] = {}
    optional: dict[str, str] = {}
    for key, template in templates.items():
        value = prefetch.get(key) if key in prefetch else ...
        kind = "missing" if value is ... else meaning(value, template)
        spec = DATA_KEYS.get(key.split("-")[0])
        if kind == "missing" and spec is not None and spec.supplementary:
            query = expand_template(template, context)
            if query is None or client is None:
                out.incomplete.add(key)  # not obtained: its types are not whole, the call goes on
            else:
                optional[key] = query
            continue
        if kind != "missing":
            out.values[key] = value  # None means "no data"
            if kind == "partial":
                out.incomplete.add(key)   # the part the client sent, marked incomplete
            continue
        query = expand_template(template, context)
        if query is None:
            raise DataUnavailable([key], "prefetch template has no value for a token")
        to_fetch[key] = query
    if to_fetch and client is None:
        raise DataUnavailable(to_fetch, "prefetch data missing and no usable fhirServer")
    if (to_fetch or optional) and client is not None:
        # required and supplementary keys in one parallel round: a supplementary key that fails or is
        # late leaves its types incomplete, never a 412
        started = time.monotonic()
        try:
            results = client.search_many({**to_fetch, **optional}, deadline=deadline, optional=set(optional))
        except FetchError as exc:
            raise DataUnavailable(exc.keys or to_fetch, exc.reason) from None
        out.values.update(results)
        out.incomplete.update(k for k in optional if k not in results)
        out.fetched = sorted(results)
        out.fetch_ms = (time.monotonic() - started) * 1000
        out.incomplete.update(k for k, v in results.items() if isinstance(v, dict) and has_next(v))
    partial = {k: v for k, v in out.values.items() if k in out.incomplete and k not in to_fetch
               and isinstance(v, dict) and not v.get("_truncated")}
    if partial and client is not None and (deadline is None or time.monotonic() < deadline):
        started = time.monotonic()
        for key, bundle in client.follow_many(partial, deadline=deadline).items():
            out.values[key] = bundle
            if not has_next(bundle):
                out.incomplete.discard(key)
        out.followed = sorted(partial)
        out.fetch_ms += (time.monotonic() - started) * 1000
    for key in out.incomplete:
        out.incomplete_types.update(resource_types(templates[key]))
    return out
