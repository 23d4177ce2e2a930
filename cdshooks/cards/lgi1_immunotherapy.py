"""lgi1-immunotherapy: LGI1 antibody-positive nerve hyperexcitability responds to immunotherapy.

When it fires
    The latest LGI1 antibody result (LOINC 82978-8; final, amended or corrected; newest
    effective time) is positive (interpretation positive / abnormal / high, a titre of
    1:10 or more, or a coded or worded positive value: ``clinical.lgi1_positive``)
    **and** a current finding of nerve hyperexcitability is present: fasciculation,
    muscle cramp, a neuromyotonia diagnosis, or a PNH symptom (paresthesia, insomnia,
    muscle stiffness). Then

    * **treatment card (warning)** when the positive result is recent: dated inside
      ``antibody_result_days`` (setting ``CDSHOOKS_RULES_ANTIBODY_RESULT_DAYS``, default 365);
    * **re-evaluation card (info)** when the positive result is older: the antibody
      status is not current, so the card suggests a repeat LGI1 antibody test (LOINC
      82978-8, unless one is ordered or reported inside ``study_window_days``) and a
      neurology referral, not treatment.

When it stays silent
    * no LGI1 result, or the latest one is negative (an older positive does not count);
    * no current finding: a positive result (of any age) in a patient whose twitching,
      cramps, neuromyotonia and PNH symptoms are resolved, refuted or absent;
    * treatment card: a neurology referral is on file inside ``referral_window_days``
      **and** immune globulin is active (the core advice is in place);
    * re-evaluation card: a repeat LGI1 test and a neurology referral are both on file.

What it suggests
    * a neurology referral (SNOMED 308474002, routine) unless one is on file: the one
      signable order, coded with a verified code;
    * IVIG and carbamazepine are **advice in the card text, not orders**: immune globulin
      has no verified RxNorm code, and the guideline gives no dose, route or frequency for
      either drug, so no MedicationRequest a prescriber could sign as it stands can be
      built. The card says that dosing belongs to neurology.
    * with irinotecan active the card says that carbamazepine is a CYP3A4 inducer that
      lowers exposure to SN-38 (irinotecan's active metabolite) and so may reduce its
      efficacy, and leaves carbamazepine out of the advice.

Guideline
    000 Treatment: "For peripheral nerve hyperexcitability (LGI1 antibody-positive):
    Intravenous immunoglobulin shows significant improvement; Carbamazepine as adjunctive
    therapy". 000 PNH: "May be associated with LGI1 antibodies, presenting with ascending
    paresthesias and insomnia". 003 Neurological Causes: PNH presents "with continuous or
    near-continuous twitching ... often accompanied by muscle stiffness and cramps"; the
    autoimmune etiology "responds to immunotherapy".

What changed and why (clinical review)
    * Before, the latest result of any age fired the treatment card with no current
      finding: a five-year-old positive in a patient whose neuromyotonia had resolved
      brought up IVIG. The guideline treats "LGI1 antibody-positive" *peripheral nerve
      hyperexcitability*, a present condition: the card now needs a current finding, and
      treatment needs a recent result. The guideline is silent on how recent; 365 days is
      our choice (the same window in which ``pnh-evaluation`` counts an LGI1 test as done).
    * An old positive with a current finding gets the re-evaluation card: the guideline
      is silent; we chose to re-test rather than treat on a stale antibody status.
    * IVIG and carbamazepine are no longer suggested as orders (see above).
    * The "why this card" facts name the antibody result with its date and age, and the
      current finding that makes the case.
"""

from __future__ import annotations

from ._neuro import day, findings_fact, offer, on_file_fact
from .card import Card, render_detail
from .clinical import Finding, Lgi1Result, active_medications, already_done, findings, lgi1_results, using
from .orders import service_request
from .registry import Call, Source, rule

_CURRENT = ("fasciculation", "cramp", "neuromyotonia", "paresthesia", "insomnia", "muscle_stiffness")
_CITE = "Muscle Twitching: Causes and Treatment"
_CITE_003 = "Hamstring Muscle Twitching: Causes and Clinical Approach"


def _as_reason(result: Lgi1Result) -> Finding:
    """The positive result as a ``reasonReference`` target for the suggested orders."""
    return Finding(resource=result.resource, valueset="lgi1_antibody_lab", coding={},
                   display=f"LGI1 antibody {result.shown()}", onset=result.effective, body_sites=())


@rule(id="lgi1-immunotherapy",
      title=("Recent LGI1 antibody-positive hyperexcitability with current "
             "symptoms: IVIG advice and neurology; an old positive: re-test"),
      hooks=("patient-view",), indicator="warning",
      reads={"observations": ("lgi1_antibody_lab",) + _CURRENT, "conditions": _CURRENT,
             "medicationRequests": (), "medicationStatements": (),
             "serviceRequests": ("neurology_referral", "lgi1_test"), "procedures": ("neurology_referral", "lgi1_test"),
             "diagnosticReports": ("neurology_referral", "lgi1_test")},
      source=Source(("000", "003"), sections=("Treatment", "Peripheral Nerve Hyperexcitability",
                                               "Neurological Causes Requiring Evaluation")))
def evaluate(call: Call) -> Card | None:
    results = lgi1_results(call.record)
    if not results or not results[0].positive:
        return None
    latest = results[0]
    current = findings(call.record, *_CURRENT)
    if not current:
        return None
    s = call.settings
    age = (call.now - latest.effective).days
    referral = already_done(call.record, "neurology_referral", call.now, s.referral_window_days)
    reasons = [_as_reason(latest), *current]
    why = [f"LGI1 antibody {latest.shown()} on {day(latest.effective)} ({age} days ago; latest result, positive)",
           f"Current hyperexcitability finding: {findings_fact(current)}"]
    if age > s.antibody_result_days:
        return _reevaluate(call, latest, age, referral, reasons, why)

    meds = active_medications(call.record)
    ivig = using(meds, "ivig")
    if referral is not None and ivig:
        return None
    carbamazepine = using(meds, "carbamazepine")
    irinotecan = using(meds, "irinotecan")
    suggestions = []
    if referral is None:
        suggestions.append(offer(service_request(
            call.patient_id, "neurology_referral", text="Referral to neurology (LGI1 antibody-positive nerve "
            "hyperexcitability)", category="referral", reasons=reasons), recommended=True))
    else:
        why.append(f"Neurology referral already on file: {on_file_fact(referral)}")
    advice = []
    if ivig:
        why.append(f"Immune globulin already active: {', '.join(m.label for m in ivig)}")
    else:
        advice.append("intravenous immunoglobulin (IVIG)")
    if irinotecan:
        names = ", ".join(m.label for m in irinotecan)
        why.append(f"Irinotecan active ({names}): carbamazepine is a CYP3A4 inducer that lowers exposure to SN-38, "
                   f"irinotecan's active metabolite, and may reduce its efficacy, so it is not advised here")
    elif carbamazepine:
        why.append(f"Carbamazepine already active: {', '.join(m.label for m in carbamazepine)}")
    else:
        advice.append("carbamazepine as adjunctive therapy")
    if advice:
        why.append("To discuss with neurology: " + " and ".join(advice) + ". These are not offered as orders: the "
                   "guideline gives no dose, route or schedule, and dosing belongs to neurology")
    guideline = [f"For LGI1 antibody-positive peripheral nerve hyperexcitability, intravenous immunoglobulin shows "
                 f"significant improvement; carbamazepine is adjunctive therapy ({_CITE} — Treatment).",
                 f"The autoimmune etiology responds to immunotherapy ({_CITE_003} — Neurological Causes)."]
    if irinotecan:
        guideline.append(f"Irinotecan is metabolised by CYP3A4 and UGT1A1; review drugs acting on these pathways "
                         f"({_CITE} — Medication review; Drug-Induced).")
    summary = "LGI1 antibody positive with current symptoms: immunotherapy (IVIG), refer to neurology"
    return Card(summary=summary, indicator="warning", detail=render_detail(why, guideline), suggestions=suggestions)


def _reevaluate(call: Call, latest: Lgi1Result, age: int, referral: dict | None, reasons: list[Finding],
                why: list[str]) -> Card | None:
    """An old positive with a current finding: re-test and refer, do not start treatment."""
    s = call.settings
    retest = already_done(call.record, "lgi1_test", call.now, s.study_window_days)
    if retest is not None and referral is not None:
        return None
    why.append(f"The result is older than {s.antibody_result_days} days: it does not show the antibody status now, so "
               f"treatment is not started on it")
    suggestions = []
    if retest is None:
        suggestions.append(offer(service_request(
            call.patient_id, "lgi1_test", text="LGI1 antibody (repeat)", category="laboratory", reasons=reasons),
            recommended=True))
    else:
        why.append(f"LGI1 antibody test already on file: {on_file_fact(retest)}")
    if referral is None:
        suggestions.append(offer(service_request(
            call.patient_id, "neurology_referral", text="Referral to neurology (re-evaluation of LGI1 antibody-"
            "positive nerve hyperexcitability)", category="referral", reasons=reasons)))
    else:
        why.append(f"Neurology referral already on file: {on_file_fact(referral)}")
    guideline = [f"LGI1 antibody-positive peripheral nerve hyperexcitability is treated with intravenous "
                 f"immunoglobulin, with carbamazepine as adjunct ({_CITE} — Treatment); the guideline does not say "
                 f"how old a result may be, so an old positive is re-tested before treatment."]
    summary = f"Old positive LGI1 antibody ({day(latest.effective)}) with current symptoms: re-test, refer"
    return Card(summary=summary, indicator="info", detail=render_detail(why, guideline), suggestions=suggestions)
