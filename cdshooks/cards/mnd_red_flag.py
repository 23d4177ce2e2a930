"""mnd-red-flag: fasciculations with weakness or atrophy need urgent neurology (suspected motor neuron disease).

When it fires
    patient-view: a fasciculation is present, muscle weakness or muscle atrophy is
    present, and no motor neuron disease diagnosis is present yet (ALS, PMA, PBP, PLS,
    SMA: value set ``motor_neuron_disease``). Critical.
    order-select / order-sign: among the orders judged (``call.orders``) is a needle EMG
    or nerve conduction order (``emg_ncs`` / ``nerve_conduction``), fasciculation and
    weakness (or atrophy) are present, no motor neuron disease diagnosis is present, and
    no neurology referral exists: none on file inside the referral window and none among
    the session's draft orders. Critical: "do not let the EMG delay the urgent neurology
    referral".

What it suggests
    patient-view: an urgent referral to neurology (SNOMED 308474002, priority
    ``urgent``) unless one is on file inside ``referral_window_days``; needle EMG with
    nerve conduction studies (SNOMED 42803009) unless one is on file inside
    ``study_window_days``. When both are on file the whole advice is addressed and the
    rule stays silent. Order hooks: the urgent referral only.
    Every suggested order carries ``reasonReference`` to the fasciculation and weakness /
    atrophy findings.

Guideline (000 Muscle Twitching: Causes and Treatment)
    Motor Neuron Disease: "Progressive weakness accompanying fasciculations ... Requires
    urgent neurologist referral". Referral Indications: "Refer to neurology when
    progressive weakness accompanies fasciculations (suspected motor neuron disease)".
    Critical Pitfalls: "Do not dismiss fasciculations with weakness – This combination
    requires urgent neurologic evaluation for motor neuron disease"; "Do not skip EMG in
    uncertain cases". 003 Red Flags: "Progressive weakness or muscle atrophy, suggesting
    motor neuron disease or neuropathy".

Choices where the catalogue and guideline are silent
    * "Progressive" is not required: records rarely code it, and the Pitfalls line asks
      for urgent evaluation of fasciculations with weakness as such.
    * Atrophy counts as weakness in the order hooks too (003 Red Flags names both), and a
      motor neuron disease diagnosis silences the order hooks as it does patient-view: a
      patient with a known diagnosis is already in neurologic care.
    * A neurology referral among the session's draft orders counts as existing in the
      order hooks: the clinician is ordering it alongside the EMG.
    * The EMG suggestion is routine priority: the urgency is in the referral; the
      neurologist may schedule the study.
    * A done or ordered nerve conduction study counts as the EMG work-up being on file
      (``emg_ncs`` covers both).

Unknown is not absent
    The card still fires when the record did not arrive whole: a missed red flag costs more than
    a referral already made. It then does not say "No motor neuron disease diagnosis on the record" or
    "No neurology referral on file"; it says that this could not be checked (``clinical.absence``), and
    still suggests the referral and the EMG, since an order already on file could not be seen. A
    motor neuron disease Condition or Observation whose status cannot be read counts the same way
    (``clinical.findings_in_doubt``).

What changed and why (clinical review)
    SNOMED CT 306206005 is the generic "Referral to service" (public code bases use it for
    cardiology, ophthalmology and social-work referrals), not a neurology referral: it left
    ``neurology_referral``, so a cardiology referral coded with it no longer silences the
    urgent neurology referral. Eyelid-only twitching is not filtered here (our choice): the
    card rests on the weakness, and missing motor neuron disease costs more than a card.
"""

from __future__ import annotations

from ._neuro import findings_fact, offer, on_file_fact, order_label
from .card import Card, Suggestion, render_detail
from .clinical import (
    FINDING_TYPES,
    ORDER_TYPES,
    Finding,
    absence,
    already_done,
    findings,
    findings_in_doubt,
    is_order_for,
    order_unsure,
    unnamed_orders,
)
from .orders import service_request
from .registry import Call, Source, rule

_FINDINGS = ("fasciculation", "muscle_weakness", "muscle_atrophy", "motor_neuron_disease")
_ORDERS = ("neurology_referral", "emg_ncs")
_CITE = "Muscle Twitching: Causes and Treatment"
_GUIDELINE = [
    f"Fasciculations with progressive weakness suggest motor neuron disease, which requires urgent neurologist "
    f"referral ({_CITE} — Motor Neuron Disease; Referral Indications).",
    f"Do not dismiss fasciculations with weakness: this combination requires urgent neurologic evaluation for "
    f"motor neuron disease ({_CITE} — Critical Pitfalls).",
]


def _referral(call: Call, reasons: list[Finding]) -> Suggestion:
    resource = service_request(call.patient_id, "neurology_referral", text="Referral to neurology",
                               category="referral", priority="urgent", reasons=reasons,
                               note="Fasciculations with muscle weakness or atrophy: suspected motor neuron disease.")
    return offer(resource, recommended=True)


def _emg(call: Call, reasons: list[Finding]) -> Suggestion:
    resource = service_request(call.patient_id, "emg_ncs", text="Needle EMG with nerve conduction studies",
                               category="procedure", reasons=reasons)
    return offer(resource)


def _patient_view(call: Call, twitch: list[Finding], weak: list[Finding]) -> Card | None:
    s = call.settings
    referral = already_done(call.record, "neurology_referral", call.now, s.referral_window_days)
    emg = already_done(call.record, "emg_ncs", call.now, s.study_window_days)
    if referral is not None and emg is not None:
        return None
    reasons = twitch + weak
    why = [f"Fasciculation: {findings_fact(twitch)}", f"Weakness or atrophy: {findings_fact(weak)}",
           absence(call.record, FINDING_TYPES, "No motor neuron disease diagnosis on the record",
                   "a motor neuron disease diagnosis is on the record",
                   unsure=bool(findings_in_doubt(call.record, "motor_neuron_disease")))]
    suggestions = []
    if referral is None:
        suggestions.append(_referral(call, reasons))
    else:
        why.append(f"Neurology referral already on file: {on_file_fact(referral)}")
    if emg is None:
        suggestions.append(_emg(call, reasons))
    else:
        why.append(f"EMG / nerve conduction already on file: {on_file_fact(emg)}")
    guideline = _GUIDELINE + [f"Do not skip EMG in uncertain cases; needle EMG detects fasciculations, fibrillations "
                              f"and positive sharp waves of denervation ({_CITE} — Electrophysiologic Testing; "
                              f"Critical Pitfalls)."]
    return Card(summary="Fasciculations with muscle weakness or atrophy: urgent neurologic evaluation for motor "
                        "neuron disease",
                indicator="critical", detail=render_detail(why, guideline), suggestions=suggestions)


def _order_hook(call: Call, twitch: list[Finding], weak: list[Finding]) -> Card | None:
    studies = [o for o in call.orders if is_order_for(o, "emg_ncs") or is_order_for(o, "nerve_conduction")]
    if not studies:
        return None
    if already_done(call.record, "neurology_referral", call.now, call.settings.referral_window_days) is not None:
        return None
    if any(is_order_for(o, "neurology_referral") for o in call.draft_orders):
        return None
    why = [f"Ordering: {', '.join(order_label(o) for o in studies)}",
           f"Fasciculation: {findings_fact(twitch)}", f"Weakness or atrophy: {findings_fact(weak)}",
           absence(call.record, ORDER_TYPES, f"No neurology referral on file in the last "
                   f"{call.settings.referral_window_days} days or among the draft orders",
                   "a neurology referral is already on file or among the draft orders",
                   unsure=order_unsure(call.record, "neurology_referral", call.now,
                                       call.settings.referral_window_days)
                   or bool(unnamed_orders(call.draft_orders, call.record)))]
    return Card(summary="Do not let the EMG delay the urgent neurology referral: fasciculations with weakness",
                indicator="critical", detail=render_detail(why, _GUIDELINE),
                suggestions=[_referral(call, twitch + weak)])


@rule(id="mnd-red-flag", title="Fasciculations with weakness: urgent neurology referral",
      triggers=(("fasciculation",), ("muscle_weakness", "muscle_atrophy")),
      hooks=("patient-view", "order-select", "order-sign"), indicator="critical",
      reads={"conditions": _FINDINGS, "observations": _FINDINGS, "serviceRequests": _ORDERS,
             "procedures": _ORDERS, "diagnosticReports": _ORDERS},
      source=Source("000", sections=("Motor Neuron Disease", "Referral Indications", "Critical Pitfalls")))
def evaluate(call: Call) -> Card | None:
    twitch = findings(call.record, "fasciculation")
    weak = findings(call.record, "muscle_weakness", "muscle_atrophy")
    if not twitch or not weak or findings(call.record, "motor_neuron_disease"):
        return None
    if call.hook == "patient-view":
        return _patient_view(call, twitch, weak)
    return _order_hook(call, twitch, weak)
