"""A population run's summary: per rule, the firing rate with its 95% confidence interval and the
projected alerts per 1,000 chart opens; cards by indicator; the distribution over the population.

The runners count (``Counts``); ``summarize()`` turns counts into the report, so the local and
the Spark runner report alike.

* **Firing rate** of a rule: the hook calls where it gave a card over the calls where it ran
  (answered calls minus those where it raised), with the Wilson score interval at 95%
  (z = 1.96), which stays inside [0, 1] and behaves for rare rules and small runs.
* **Alerts per 1,000 chart opens** (per 1,000 calls of the hook): 1,000 x cards / calls
  evaluated, with the interval scaled from the rate's. It assumes the charts opened are a
  random draw from the population run and that the card shows on every open while the record
  stays as it is; for ``patient-view`` a call is a chart open.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["Counts", "wilson", "summarize", "counts_from_store"]

Z95 = 1.959963984540054


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (0, 0 when there is no trial)."""
    if trials <= 0:
        return 0.0, 0.0
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Counts:
    """What a run counted; every member stays small whatever the population."""

    patients: int = 0
    calls: int = 0
    answered: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    rule_cards: dict[str, int] = field(default_factory=dict)
    rule_calls: dict[str, int] = field(default_factory=dict)    # calls with a card of the rule
    rule_patients: dict[str, int] = field(default_factory=dict)  # patients with a card of the rule
    rule_failed: dict[str, int] = field(default_factory=dict)
    indicators: dict[str, int] = field(default_factory=dict)
    cards_per_call: dict[int, int] = field(default_factory=dict)
    cards_per_patient: dict[int, int] = field(default_factory=dict)
    carded_calls: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None


def summarize(counts: Counts, hook: str, now: datetime, rule_ids: list[str], timing: dict,
              reading: dict[str, int] | None = None) -> dict:
    """The report; ``reading`` is what the reading phase counted (``sources.READ_COUNTS``)."""
    rows = []
    total_cards = sum(counts.rule_cards.values())
    for rid in sorted(set(rule_ids) | set(counts.rule_cards) | set(counts.rule_failed)):
        failed = counts.rule_failed.get(rid, 0)
        evaluated = counts.answered - failed
        carded, cards = counts.rule_calls.get(rid, 0), counts.rule_cards.get(rid, 0)
        low, high = wilson(carded, evaluated)
        per_card = cards / carded if carded else 1.0
        rows.append({"rule": rid, "evaluated": evaluated, "cards": cards, "patients": carded, "failed": failed,
                     "rate": round(carded / evaluated, 4) if evaluated else 0.0,
                     "rateLow": round(low, 4), "rateHigh": round(high, 4),
                     "patientsWithCard": counts.rule_patients.get(rid, carded),
                     "alertsPer1000": round(1000 * cards / evaluated, 2) if evaluated else 0.0,
                     "alertsPer1000Low": round(1000 * low * per_card, 2),
                     "alertsPer1000High": round(1000 * high * per_card, 2)})
    any_low, any_high = wilson(counts.carded_calls, counts.answered)
    t = dict(timing)
    if counts.p50_ms is not None:
        t.update(p50Ms=round(counts.p50_ms, 1), p95Ms=round(counts.p95_ms or 0.0, 1))
    return {
        "hook": hook, "now": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "patients": counts.patients, "calls": counts.calls,
        "answered": counts.answered, "rules": rows,
        "anyCard": {"calls": counts.carded_calls,
                    "rate": round(counts.carded_calls / counts.answered, 4) if counts.answered else 0.0,
                    "rateLow": round(any_low, 4), "rateHigh": round(any_high, 4),
                    "alertsPer1000": round(1000 * total_cards / counts.answered, 2) if counts.answered else 0.0},
        "indicators": dict(sorted(counts.indicators.items())),
        "cardsPerCall": {str(k): v for k, v in sorted(counts.cards_per_call.items())},
        "cardsPerPatient": {str(k): v for k, v in sorted(counts.cards_per_patient.items())},
        "errors": [{"message": m, "patients": n} for m, n in sorted(counts.errors.items())],
        "skipped": [{"reason": m, "patients": n} for m, n in sorted(counts.skipped.items())],
        "reading": _reading(reading or {}),
        "timing": t,
    }


def _reading(c: dict[str, int]) -> dict:
    unreadable = {k: c.get(k, 0) for k in ("notJson", "noResourceType", "noPatient")}
    return {"read": c.get("read", 0), "kept": c.get("kept", 0) + c.get("shared", 0), "shared": c.get("shared", 0),
            "dropped": c.get("dropped", 0), "unreadable": sum(unreadable.values()), **unreadable}


def _percentile(db: sqlite3.Connection, q: float, n: int) -> float | None:
    if n == 0:
        return None
    rank = max(1, -(-n * q // 100))
    row = db.execute("SELECT ms FROM calls WHERE status = 'answered' ORDER BY ms LIMIT 1 OFFSET ?",
                     (int(rank) - 1,)).fetchone()
    return row[0] if row else None


def counts_from_store(db: sqlite3.Connection) -> Counts:
    """The counts of a local run's ``run.sqlite`` (computed in SQL: nothing per patient in memory)."""
    c = Counts()
    one = db.execute
    c.patients = one("SELECT count(*) FROM units WHERE done = 1").fetchone()[0]
    c.calls = one("SELECT count(*) FROM calls").fetchone()[0]
    c.answered = one("SELECT count(*) FROM calls WHERE status = 'answered'").fetchone()[0]
    c.skipped = dict(one("SELECT reason, count(DISTINCT unit) FROM calls WHERE status = 'skipped' GROUP BY reason"))
    c.errors = dict(one("SELECT reason, count(*) FROM calls WHERE status = 'error' GROUP BY reason"))
    c.rule_cards = dict(one("SELECT rule, count(*) FROM cards GROUP BY rule"))
    c.rule_calls = dict(one("SELECT rule, count(DISTINCT call) FROM cards GROUP BY rule"))
    c.rule_patients = dict(one("SELECT cards.rule, count(DISTINCT calls.unit) FROM cards "
                               "JOIN calls ON calls.id = cards.call GROUP BY cards.rule"))
    c.rule_failed = dict(one("SELECT rule, count(DISTINCT call) FROM failures GROUP BY rule"))
    c.indicators = dict(one("SELECT indicator, count(*) FROM cards GROUP BY indicator"))
    c.cards_per_call = dict(one("SELECT ncards, count(*) FROM calls WHERE status = 'answered' GROUP BY ncards"))
    c.cards_per_patient = dict(one("SELECT n, count(*) FROM (SELECT sum(ncards) AS n FROM calls GROUP BY unit) "
                                   "GROUP BY n"))
    c.carded_calls = one("SELECT count(*) FROM calls WHERE status = 'answered' AND ncards > 0").fetchone()[0]
    c.p50_ms = _percentile(db, 50, c.answered)
    c.p95_ms = _percentile(db, 95, c.answered)
    return c
