"""Dates: FHIR date, dateTime and instant values as aware UTC datetimes, and windows.

FHIR allows partial dates ("2025", "2025-03"), dates ("2025-03-01") and date-times with
an offset. Every rule compares instants, so each value becomes an aware ``datetime`` in
UTC: a partial or date-only value is midnight UTC at the *start* of the period it names
(``"2025-03"`` is 2025-03-01T00:00Z). A date-time without an offset (invalid FHIR, but
seen in the wild) is taken as UTC. Anything else is ``None``: a date we cannot read is
never guessed.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

__all__ = ["parse_when", "parse_text", "within", "FUTURE_TOLERANCE"]

# A result dated up to this far after "now" still counts as current (clock skew, a
# date-only value in a time zone ahead of UTC). Anything later is not a real result.
FUTURE_TOLERANCE = timedelta(days=1)

_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_FRACTION = re.compile(r"(\.\d+)")


def parse_when(value: object) -> datetime | None:
    """An aware UTC datetime for a FHIR date/dateTime/instant string, ``date`` or ``datetime``.

    Returns None for None, empty or unreadable values.
    """
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if not isinstance(value, str):
        return None
    return parse_text(value)


def parse_text(value: str) -> datetime | None:
    """``parse_when`` of a string (the step a caller that knows it holds one may take directly)."""
    try:  # the usual shapes are read as sent; what this reads, the steps below would read the same
        parsed = datetime.fromisoformat(value)
    except ValueError:
        pass
    else:
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=timezone.utc)
        return parsed if parsed.tzinfo is timezone.utc else parsed.astimezone(timezone.utc)
    return _read_text(value)


def _read_text(value: str) -> datetime | None:
    """Every shape ``parse_when`` reads: partial dates, long fractions, surrounding blanks."""
    text = value.strip()
    partial = _PARTIAL.match(text)
    if partial:
        year, month, day = (int(g) if g else 1 for g in partial.groups())
        try:
            return datetime(year, month, day, tzinfo=timezone.utc)
        except ValueError:
            return None
    text = _FRACTION.sub(lambda m: m.group(1)[:7], text)  # Python reads at most 6 decimals
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parse_when(parsed)


def within(when: datetime | None, now: datetime, days: int) -> bool:
    """Whether ``when`` lies in the ``days`` before ``now`` (inclusive), allowing
    ``FUTURE_TOLERANCE`` after it. ``None`` is never within a window."""
    if when is None:
        return False
    now = parse_when(now) or now
    return now - timedelta(days=days) <= when <= now + FUTURE_TOLERANCE
