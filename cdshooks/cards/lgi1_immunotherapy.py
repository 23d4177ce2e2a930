"""lgi1-immunotherapy: LGI1 antibody-positive nerve hyperexcitability responds to immunotherapy.

When it fires (warning)
    The latest LGI1 antibody result (LOINC 82978-8; final, amended or corrected; newest
    effective time) is positive: interpretation positive / abnormal / high, a titre of
    1:10 or more, or a coded or worded positive value (``clinical.lgi1_positive``).

When it stays silent
    * no LGI1 result, or the latest one is negative (an older positive does not count);
    * the core advice is in place: a neurology referral on file inside
      ``referral_window_days`` **and** immune globulin active (MedicationRequest or
      MedicationStatement, any coding the product table or the names recognise).

What it suggests
    * a neurology referral (SNOMED 308474002, routine) unless one is on file;
    * IVIG (MedicationRequest coded by text "immune globulin (IVIG)": the ingredient has no
      verified RxNorm code) unless immune globulin is active; no dose: the guideline gives
      none, the dosage text leaves it to neurology;
    * carbamazepine as adjunct (RxNorm 2002, no dose for the same reason) unless it is
      already active, **and not when irinotecan is active**: then the card says that
      carbamazepine is a CYP3A4 inducer that lowers irinotecan's active metabolite, and
      does not suggest it.

Guideline
    000 Treatment, "For peripheral nerve hyperexcitability (LGI1 antibody-positive):
    Intravenous immunoglobulin shows significant improvement; Carbamazepine as adjunctive
    therapy". 003 Neurological Causes: the autoimmune etiology "responds to
    immunotherapy". 000 Medication review / Drug-Induced: irinotecan is metabolised by
    CYP3A4 and UGT1A1.

Choices where the catalogue and guideline are silent
    * The latest result is the newest one of any age: a positive antibody stays the
      current fact until a newer result says otherwise.
    * Carbamazepine is adjunctive: it is offered with the missing core advice but never
      keeps the card alive on its own (referral and IVIG in place means silent).
    * The referral is routine priority: the guideline names no urgency for this referral.
    * "Lowers irinotecan's active metabolite (SN-38)" comes from the catalogue; the
      guideline text names only the CYP3A4 / UGT1A1 metabolism of irinotecan.
"""

from __future__ import annotations

from ._neuro import day, offer, on_file_fact
from .card import Card, render_detail
from .clinical import Finding, Lgi1Result, active_medications, already_done, findings, lgi1_results, using
from .orders import medication_request, service_request
from .registry import Call, Source, rule

_CONTEXT = ("neuromyotonia",)
_CITE = "Muscle Twitching: Causes and Treatment"


def _as_reason(result: Lgi1Result) -> Finding:
    """The positive result as a ``reasonReference`` target for the suggested orders."""
    return Finding(resource=result.resource, valueset="lgi1_antibody_lab", coding={},
                   display=f"LGI1 antibody {result.shown()}", onset=result.effective, body_sites=())


@rule(id="lgi1-immunotherapy", title="LGI1 antibody-positive hyperexcitability: IVIG and neurology",
      hooks=("patient-view",), indicator="warning",
      reads={"observations": ("lgi1_antibody_lab",) + _CONTEXT, "conditions": _CONTEXT,
             "medicationRequests": (), "medicationStatements": (),
             "serviceRequests": ("neurology_referral",), "procedures": ("neurology_referral",),
             "diagnosticReports": ("neurology_referral",)},
      source=Source(("000", "003"), sections=("Treatment", "Medication review",
                                               "Neurological Causes Requiring Evaluation")))
def evaluate(call: Call) -> Card | None:
    results = lgi1_results(call.record)
    if not results or not results[0].positive:
        return None
    latest = results[0]
    referral = already_done(call.record, "neurology_referral", call.now, call.settings.referral_window_days)
    meds = active_medications(call.record)
    ivig = using(meds, "ivig")
    if referral is not None and ivig:
        return None
    carbamazepine = using(meds, "carbamazepine")
    irinotecan = using(meds, "irinotecan")

    context = findings(call.record, *_CONTEXT)
    reasons = [_as_reason(latest), *context]
    why = [f"LGI1 antibody {latest.shown()} on {day(latest.effective)} (latest result, positive)"]
    why += [f"{f.display} (since {day(f.onset)})" for f in context]
    suggestions = []
    if referral is None:
        suggestions.append(offer(service_request(
            call.patient_id, "neurology_referral", text="Referral to neurology (LGI1 antibody-positive nerve "
            "hyperexcitability)", category="referral", reasons=reasons), recommended=True))
    else:
        why.append(f"Neurology referral already on file: {on_file_fact(referral)}")
    if not ivig:
        suggestions.append(offer(medication_request(
            call.patient_id, "ivig", dose_mg=None, times_per_day=None, reasons=reasons,
            text="Intravenous immunoglobulin for LGI1 antibody-positive nerve hyperexcitability; dose and schedule "
                 "per neurology (the guideline gives none)"), recommended=True))
    else:
        why.append(f"Immune globulin already active: {', '.join(m.label for m in ivig)}")
    guideline = [f"For LGI1 antibody-positive peripheral nerve hyperexcitability, intravenous immunoglobulin shows "
                 f"significant improvement; carbamazepine is adjunctive therapy ({_CITE} — Treatment)."]
    if irinotecan:
        names = ", ".join(m.label for m in irinotecan)
        why.append(f"Irinotecan active ({names}): carbamazepine is a CYP3A4 inducer and lowers irinotecan's active "
                   f"metabolite (SN-38), so it is not suggested")
        guideline.append(f"Irinotecan is metabolised by CYP3A4 and UGT1A1; review drugs acting on these pathways "
                         f"({_CITE} — Medication review; Drug-Induced).")
    elif carbamazepine:
        why.append(f"Carbamazepine already active: {', '.join(m.label for m in carbamazepine)}")
    else:
        suggestions.append(offer(medication_request(
            call.patient_id, "carbamazepine", dose_mg=None, times_per_day=None, reasons=reasons,
            text="Adjunctive therapy for LGI1 antibody-positive nerve hyperexcitability; dose per neurology "
                 "(the guideline gives none)")))
    summary = "LGI1 antibody positive: immunotherapy (IVIG) and neurology referral"
    return Card(summary=summary, indicator="warning", detail=render_detail(why, guideline), suggestions=suggestions)
