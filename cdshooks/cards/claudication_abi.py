"""claudication-abi: leg twitching or cramps in a patient with claudication or PAD (warning).

Fires when

* a fasciculation or a muscle cramp is present and the record places it in the leg or
  thigh: a ``bodySite`` coded or worded as hamstring, thigh, leg, calf, lower limb, ...;
  a code that names the place itself ("Cramp in lower leg", "Muscle spasm of calf",
  "Sleep related leg cramps"); or, with no body site, a present hamstring injury
  (S76.3x) or thigh pain (M79.65x) diagnosis; **and**
* intermittent claudication or peripheral arterial disease is present (SNOMED 63491006,
  399957001; ICD-10-CM I73.9, I70.21x; refuted, entered-in-error and resolved
  conditions do not count); **and**
* no ankle-brachial index is on file within ``study_window_days`` (default 365): an
  active or completed ServiceRequest, a Procedure or a DiagnosticReport coded as ABI
  (CPT 93922 / 93923, LOINC 77194-9, SNOMED 446841001).

Twitching or cramps whose record does not say where they are never fire this card.

The card says twitching is not claudication (claudication is cramping or aching at a
consistent walking distance, relieved by rest), asks for the femoral, popliteal,
dorsalis pedis and posterior tibial pulses to be palpated, and suggests an ABI
(ServiceRequest, CPT 93922) with ``reasonReference`` to the claudication / PAD finding
and the leg finding.

Guideline (003, Hamstring Muscle Twitching): "Red Flags Requiring Immediate Evaluation":
"Pain at rest or with walking that improves with rest, which could indicate vascular
claudication from peripheral artery disease affecting the popliteal or tibial arteries";
"Diagnostic Approach", if vascular symptoms are present: "Palpate all lower extremity
pulses (femoral, popliteal, dorsalis pedis, posterior tibial)", "Obtain ankle-brachial
index (ABI) to screen for peripheral artery disease"; "Critical Pitfalls": "Do not
confuse muscle twitching with vascular claudication".

Choices where RULES.md is silent:

* When an ABI is already on file inside the window the card stays silent instead of
  firing without a suggestion: the vascular screen it asks for (pulses and ABI) has been
  done, and a repeated warning on every chart opening would be noise. (With the card
  silent, ``hamstring-twitch-care`` may speak for thigh twitching again.)
* Neurogenic claudication (spinal stenosis) is not vascular claudication and does not
  count: the value set has no bare "claudication" name.

Unknown is not absent
When the orders, procedures or reports did not arrive whole (or one of them cannot be read), the
card still fires but does not say "No ankle-brachial index on file": it says that this could not be
checked (``clinical.absence``). The vascular screen is cheap and the clinician sees the chart.

What changed and why (clinical review)
    Twitching the record places only in the eyelid or face (``_twitch.face_only``, e.g.
    "Eyelid twitching" with a hamstring strain on the problem list) never counts as leg
    twitching (``_leg``): eyelid myokymia is not a hamstring finding. The guideline is
    silent on eyelid twitching.
"""

from __future__ import annotations

from ._leg import cite, finding_fact, leg_findings, located_fact
from .card import Action, Card, Suggestion, render_detail
from .clinical import ORDER_TYPES, absence, already_done, findings, order_unsure
from .orders import describe, service_request
from .registry import Call, Source, rule

_LEG = ("fasciculation", "cramp")
_PLACING = ("hamstring_injury", "thigh_pain")
_VASCULAR = ("claudication_pad",)
_FINDINGS = _LEG + _PLACING + _VASCULAR


@rule(
    id="claudication-abi",
    triggers=(_LEG, _VASCULAR),
    title="Leg twitching or cramps with claudication: pulses and ankle-brachial index",
    hooks=("patient-view",),
    indicator="warning",
    reads={
        "conditions": _FINDINGS,
        "observations": _FINDINGS,
        "serviceRequests": ("abi",),
        "procedures": ("abi",),
        "diagnosticReports": ("abi",),
    },
    source=Source("003", sections=("Red Flags Requiring Immediate Evaluation", "Diagnostic Approach",
                                   "Critical Pitfalls")),
)
def evaluate(call: Call) -> Card | None:
    """The vascular screen card (see module doc)."""
    record = call.record
    leg = leg_findings(record, *_LEG)
    vascular = findings(record, *_VASCULAR)
    if not leg or not vascular:
        return None
    if already_done(record, "abi", call.now, call.settings.study_window_days):
        return None

    why = [located_fact(f, record) for f in leg] + [finding_fact(f) for f in vascular]
    why.append(absence(call.record, ORDER_TYPES, "No ankle-brachial index on file in the last "
                       f"{call.settings.study_window_days} days", "an ankle-brachial index is already on file",
                       unsure=order_unsure(call.record, "abi", call.now, call.settings.study_window_days)))
    guideline = [
        "Pain at rest or with walking that improves with rest may be vascular claudication from peripheral artery "
        "disease affecting the popliteal or tibial arteries: a red flag requiring evaluation "
        + cite("Red Flags Requiring Immediate Evaluation"),
        "If vascular symptoms are present, palpate all lower extremity pulses (femoral, popliteal, dorsalis pedis, "
        "posterior tibial) and obtain an ankle-brachial index (ABI) to screen for peripheral artery disease "
        + cite("Diagnostic Approach"),
        "Do not confuse muscle twitching with vascular claudication: claudication is cramping or aching at a "
        "consistent walking distance, relieved by rest, not spontaneous twitching at rest " + cite("Critical Pitfalls"),
    ]
    resource = service_request(call.patient_id, "abi", text="Ankle-brachial index", category="procedure",
                               reasons=vascular + leg)
    suggestion = Suggestion(label=f"Order {describe(resource).lower()}",
                            actions=[Action(type="create", description="Order an ankle-brachial index (ABI)",
                                            resource=resource)])
    return Card(
        summary="Leg twitching or cramps with claudication/PAD: palpate leg pulses, obtain an ankle-brachial index",
        indicator="warning", detail=render_detail(why, guideline), suggestions=[suggestion])
