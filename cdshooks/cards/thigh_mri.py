"""thigh-mri: thigh twitching after a hamstring strain or with thigh pain (info).

Fires when

* a fasciculation is present in the hamstring or thigh: a ``bodySite`` coded or worded
  as hamstring, thigh, biceps femoris, ...; or a fasciculation with no body site (the
  diagnosis below then places it in the thigh); a fasciculation whose body site is
  elsewhere (the eyelid, say) does not count; **and**
* a hamstring strain or injury (SNOMED 481000119104; ICD-10-CM S76.3x) or thigh pain
  (SNOMED 78514002; M79.65x) is present; refuted, entered-in-error and resolved
  conditions do not count; **and**
* no MRI of the thigh is on file within ``study_window_days`` (default 365): an active or
  completed ServiceRequest, a Procedure or a DiagnosticReport coded as MR thigh (LOINC
  24702-3, 36461-2, 24703-1, 26236-0, 26237-8), MR lower extremity (30692-8) or CPT
  73718-73720.

The card says the biceps femoris has an extensive intramuscular tendon whose injury can
feel like twitching and needs longer rehabilitation, and suggests an MRI of the thigh
(ServiceRequest, LOINC 24702-3 "MR Thigh") with ``reasonReference`` to the twitching and
the injury / pain.

Guideline (003, Hamstring Muscle Twitching): "Structural Muscle Considerations":
"Intramuscular tendon involvement within the hamstring (particularly biceps femoris) can
produce unusual sensations including twitching-like symptoms, especially if there has
been recent strain or injury", "If twitching is accompanied by pain, weakness, or
followed a specific injury event, consider imaging with MRI"; "Diagnostic Approach":
"Consider MRI of the thigh if there is localized pain or history of muscle strain";
"Critical Pitfalls": "Do not assume all thigh 'muscle' problems are purely muscular".

Choices where RULES.md is silent:

* The guideline also names weakness as a reason for MRI; the catalogue does not, and
  twitching with weakness is ``mnd-red-flag``'s (critical) card, whose urgent neurology
  referral comes first. This rule follows the catalogue (pain or injury only).
* An MRI of the lower extremity counts as a thigh MRI already done.

Unknown is not absent
When the orders, procedures or reports did not arrive whole (or one of them cannot be read), the
card still fires but does not say "No MRI of the thigh on file": it says that this could not be
checked (``clinical.absence``).

What changed and why (clinical review)
    Twitching the record places only in the eyelid or face (``_twitch.face_only``, e.g.
    "Eyelid twitching" with a hamstring strain on the problem list) never counts as leg
    twitching (``_leg``): eyelid myokymia is not a hamstring finding. The guideline is
    silent on eyelid twitching.
"""

from __future__ import annotations

from ._leg import cite, finding_fact, located_fact, placing_diagnoses, thigh_findings
from .card import Action, Card, Suggestion, render_detail
from .clinical import ORDER_TYPES, absence, already_done, order_unsure
from .orders import describe, service_request
from .registry import Call, Source, rule

_FINDINGS = ("fasciculation", "hamstring_injury", "thigh_pain")


@rule(
    id="thigh-mri",
    triggers=(("fasciculation",), ("hamstring_injury", "thigh_pain")),
    title="Thigh twitching with hamstring injury or thigh pain: consider MRI of the thigh",
    hooks=("patient-view",),
    indicator="info",
    reads={
        "conditions": _FINDINGS,
        "observations": _FINDINGS,
        "serviceRequests": ("thigh_mri",),
        "procedures": ("thigh_mri",),
        "diagnosticReports": ("thigh_mri",),
    },
    source=Source("003", sections=("Structural Muscle Considerations", "Diagnostic Approach", "Critical Pitfalls")),
)
def evaluate(call: Call) -> Card | None:
    """The thigh MRI card (see module doc)."""
    record = call.record
    twitch = thigh_findings(record, "fasciculation")
    structural = placing_diagnoses(record)
    if not twitch or not structural:
        return None
    if already_done(record, "thigh_mri", call.now, call.settings.study_window_days):
        return None

    why = [located_fact(f, record) for f in twitch] + [finding_fact(f) for f in structural]
    why.append(absence(call.record, ORDER_TYPES, "No MRI of the thigh on file in the last "
                       f"{call.settings.study_window_days} days", "an MRI of the thigh is already on file",
                       unsure=order_unsure(call.record, "thigh_mri", call.now, call.settings.study_window_days)))
    guideline = [
        "The biceps femoris has an extensive intramuscular tendon; its involvement can produce twitching-like "
        "symptoms, especially after recent strain or injury. If twitching is accompanied by pain or followed a "
        "specific injury event, consider MRI to evaluate for intramuscular tendon pathology "
        + cite("Structural Muscle Considerations"),
        "Consider MRI of the thigh if there is localized pain or a history of muscle strain "
        + cite("Diagnostic Approach"),
        "Do not assume all thigh muscle problems are purely muscular: injured intramuscular tendons need prolonged "
        "rehabilitation and recur more often " + cite("Critical Pitfalls"),
    ]
    resource = service_request(call.patient_id, "thigh_mri", text="MRI of the thigh", category="imaging",
                               reasons=twitch + structural,
                               note="Evaluate the hamstring intramuscular tendon (biceps femoris).")
    suggestion = Suggestion(label=f"Order {describe(resource)}",
                            actions=[Action(type="create", description="Order an MRI of the thigh", resource=resource)])
    return Card(summary="Thigh twitching with hamstring injury or thigh pain: consider MRI of the thigh",
                indicator="info", detail=render_detail(why, guideline), suggestions=[suggestion])
