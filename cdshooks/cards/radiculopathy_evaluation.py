"""radiculopathy-evaluation: leg twitching with radicular or sensory symptoms (warning).

Fires when

* a fasciculation is present and the record places it in the leg or thigh (a
  ``bodySite`` coded or worded as hamstring, thigh, leg, calf, lower limb, ...; or, with
  no body site, a present hamstring injury S76.3x or thigh pain M79.65x diagnosis);
  **and**
* lumbar / lumbosacral radiculopathy (SNOMED 128196005, 2415007, 202735001; ICD-10-CM
  M54.16, M54.17, M51.16, M51.17), sciatica (SNOMED 23056005; M54.3x, M54.4x), or a
  paresthesia or other sensory change (SNOMED 91019004; R20.x) is present; refuted,
  entered-in-error and resolved conditions do not count; **and**
* no needle EMG / nerve conduction study is on file within ``study_window_days``
  (default 365): an active or completed ServiceRequest, a Procedure or a
  DiagnosticReport in ``emg_ncs``.

Leg twitching is required: a fasciculation whose record does not say where it is never
fires this card (the catalogue's "leg rules stay silent").

The card says radiating sensory change suggests lumbar radiculopathy from nerve root
compression: examine strength, reflexes and sensation in detail, and obtain EMG with
nerve conduction studies. It suggests needle EMG with nerve conduction studies
(ServiceRequest, SNOMED 42803009, the same order ``mnd-red-flag`` and ``emg-evaluation``
suggest). When a more urgent card of the same call (``mnd-red-flag``, critical;
``emg-evaluation``, warning) already suggests that order, the engine removes it from
this card and the detail then ends with the sentence naming the card that offers it.

Guideline (003, Hamstring Muscle Twitching): "Red Flags Requiring Immediate Evaluation":
"Sensory changes (numbness, tingling, burning) radiating down the leg, suggesting lumbar
radiculopathy from nerve root compression"; "Diagnostic Approach", for twitching with
additional symptoms: "Perform detailed neurological examination checking for weakness,
reflex changes, and sensory deficits", "Order EMG and nerve conduction studies".

Where RULES.md and the guideline disagree, the guideline wins: RULES.md gives this card
``info``, but 003 lists radiating sensory change among the "Red Flags Requiring Immediate
Evaluation" ("Seek urgent assessment"), beside claudication, which the catalogue rates
``warning``. The card is therefore a ``warning``.

Choices where RULES.md is silent:

* A sensory change counts unless its record places it outside the lower limb (a
  ``bodySite`` such as the hand): the guideline speaks of sensory change "radiating down
  the leg". One with no body site counts, because charts rarely record where tingling is
  and missing a radiculopathy is worse than one extra info card.
* When an EMG / nerve conduction study is already on file inside the window the card
  stays silent: its advice (neurological exam and electrodiagnosis) is the work-up that
  study belongs to, and the result is on file for the clinician.

Unknown is not absent
When the orders, procedures or reports did not arrive whole (or one of them cannot be read), the
card still fires but does not say "No EMG or nerve conduction study on file": it says that this
could not be checked (``clinical.absence``).

What changed and why (clinical review)
    Twitching the record places only in the eyelid or face (``_twitch.face_only``, e.g.
    "Eyelid twitching" with a hamstring strain on the problem list) never counts as leg
    twitching (``_leg``): eyelid myokymia is not a hamstring finding. The guideline is
    silent on eyelid twitching.
"""

from __future__ import annotations

from ._leg import cite, finding_fact, leg_findings, located_fact
from .card import Action, Card, Suggestion, render_detail
from .clinical import ORDER_TYPES, absence, already_done, findings, in_lower_limb, order_unsure
from .orders import describe, service_request
from .registry import Call, Source, rule

_RADICULAR = ("lumbar_radiculopathy", "sciatica")
_SENSORY = ("paresthesia", "sensory_change")
_PLACING = ("hamstring_injury", "thigh_pain")
_FINDINGS = ("fasciculation",) + _RADICULAR + _SENSORY + _PLACING


@rule(
    id="radiculopathy-evaluation",
    triggers=(("fasciculation",), _RADICULAR + _SENSORY),
    title="Leg twitching with radicular or sensory symptoms: neurological exam, EMG and nerve conduction",
    hooks=("patient-view",),
    indicator="warning",
    reads={
        "conditions": _FINDINGS,
        "observations": _FINDINGS,
        "serviceRequests": ("emg_ncs",),
        "procedures": ("emg_ncs",),
        "diagnosticReports": ("emg_ncs",),
    },
    source=Source("003", sections=("Red Flags Requiring Immediate Evaluation", "Diagnostic Approach")),
)
def evaluate(call: Call) -> Card | None:
    """The radiculopathy work-up card (see module doc)."""
    record = call.record
    twitch = leg_findings(record, "fasciculation")
    if not twitch:
        return None
    radicular = findings(record, *_RADICULAR)
    sensory = [f for f in findings(record, *_SENSORY) if not f.body_sites or in_lower_limb(f, record)]
    if not radicular and not sensory:
        return None
    if already_done(record, "emg_ncs", call.now, call.settings.study_window_days):
        return None

    why = [located_fact(f, record) for f in twitch]
    why += [finding_fact(f) for f in radicular] + [located_fact(f, record) for f in sensory]
    why.append(absence(call.record, ORDER_TYPES,
                       f"No EMG or nerve conduction study on file in the last {call.settings.study_window_days} days",
                       "an EMG or nerve conduction study is already on file",
                       unsure=order_unsure(call.record, "emg_ncs", call.now, call.settings.study_window_days)))
    guideline = [
        "Sensory changes (numbness, tingling, burning) radiating down the leg suggest lumbar radiculopathy from nerve "
        "root compression: a red flag requiring evaluation " + cite("Red Flags Requiring Immediate Evaluation"),
        "For twitching with additional symptoms, perform a detailed neurological examination (weakness, reflex "
        "changes, sensory deficits) and order EMG and nerve conduction studies " + cite("Diagnostic Approach"),
    ]
    resource = service_request(call.patient_id, "emg_ncs", text="Needle EMG with nerve conduction studies",
                               category="procedure", reasons=twitch + radicular + sensory)
    suggestion = Suggestion(label=f"Order {describe(resource)}",
                            actions=[Action(type="create", description="Order needle EMG with nerve conduction "
                                            "studies of the lower limbs", resource=resource)])
    return Card(
        summary="Leg twitching with radicular or sensory symptoms: detailed neurological exam, EMG and "
                "nerve conduction",
        indicator="warning", detail=render_detail(why, guideline), suggestions=[suggestion])
