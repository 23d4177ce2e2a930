"""hamstring-twitch-care: isolated, recent twitching in the hamstring / thigh (info).

Fires when a fasciculation is present (Condition or Observation) and the record places it
in the thigh: a ``bodySite`` coded hamstring (SNOMED 88225001) or thigh (68367000), or a
body-site text or code naming hamstring, thigh, biceps femoris, ...; or, for a
fasciculation with no body site, a present hamstring strain / injury (ICD-10-CM S76.3x,
SNOMED 481000119104) or thigh pain (M79.65x, SNOMED 78514002) diagnosis alongside. A
fasciculation whose record does not say where it is never fires this card, and neither
does one whose own body site or code names a part below the thigh (calf, foot, ...).

Silent when

* ``mnd-red-flag``, ``claudication-abi`` or ``radiculopathy-evaluation`` fired in the
  same call (003 "Red Flags Requiring Immediate Evaluation": weakness or atrophy,
  claudication, radiating sensory change): those cards carry the urgent advice and this
  card's "most often benign" message would contradict them;
* ``emg-evaluation`` fired: twitching with another symptom (cramps, sensory change,
  stiffness) belongs to the guideline's "persistent or with additional symptoms" arm,
  whose advice is EMG, not reassurance;
* the thigh twitching began ``persistent_days`` (default 28) or more ago;
* a fasciculation is also recorded at a body site outside the lower limb (widespread).

In the last three cases ``electrolyte-check`` (which defers to this card) carries the
same BMP and magnesium advice.

The card says: hamstring twitching is most often benign (fatigue, overuse, electrolytes,
dehydration, caffeine or stimulants); review recent activity, hydration and diet; check
a basic metabolic panel and magnesium; advise activity modification, hydration and
electrolyte repletion if deficient. It suggests, one order per suggestion (the same
orders as ``electrolyte-check``, built by ``_electrolytes``):

* a basic metabolic panel (LOINC 24321-2) unless a potassium **and** a calcium result
  (total, albumin-corrected, or ionized) are recent, or a BMP / CMP is already ordered or
  reported, within ``lab_recent_days`` (default 90);
* serum magnesium (LOINC 19123-9) unless a magnesium result is recent or a magnesium test
  is already ordered or reported within ``lab_recent_days``.

When every lab is recent or on file the card still fires, without suggestions, and
names the values and orders: its advice on activity, hydration and stimulants is not
something the record can show as done (a low value is ``electrolyte-abnormal``'s
business).

Guideline (003, Hamstring Muscle Twitching): "most commonly benign fasciculations from
muscle fatigue, overuse, or electrolyte disturbances" (introduction); "Common Benign
Causes": overuse and fatigue, magnesium / potassium / calcium deficiency, dehydration,
caffeine or stimulants; "Diagnostic Approach", for "isolated, intermittent hamstring
twitching without other symptoms": "Review recent activity changes, hydration status,
and dietary intake", "Check basic metabolic panel including magnesium, potassium, and
calcium levels", "Recommend activity modification, adequate hydration, and electrolyte
repletion if deficient".

Choices where RULES.md is silent, or where the guideline text wins over it:

* RULES.md silences the card only for the three red-flag rules. The guideline limits
  the benign approach to isolated, intermittent twitching, says "Do not dismiss
  persistent fasciculations as purely benign" (Critical Pitfalls) and lists
  "widespread fasciculations affecting multiple body regions beyond the hamstring" as a
  red flag; hence the last three silences above.
* "Thigh" includes the whole thigh, not only its back: the thigh body-site code and the
  thigh pain codes do not say front or back, and the benign causes are the same.
* Thigh pain or a hamstring injury does not silence the card (RULES.md names them as
  ways to place the twitching); ``thigh-mri`` fires beside it.

Unknown is not absent
An electrolyte without a recent result is named ("No magnesium result in the last 90 days") only
when the Observations and DiagnosticReports arrived whole; a recent result whose value could not
be read is stated as such with its date. When the results did not arrive whole the missing lab is
not named and not ordered.

What changed and why (clinical review)
    Twitching the record places only in the eyelid or face (``_twitch.face_only``, e.g.
    "Eyelid twitching" with a hamstring strain on the problem list) never counts as leg
    twitching (``_leg``): eyelid myokymia is not a hamstring finding. The guideline is
    silent on eyelid twitching.
"""

from __future__ import annotations

from ._electrolytes import NAMES, PANEL_OF, missing_labs, order_suggestions, recent_electrolytes, result_line
from ._leg import cite, day, located_fact, on_file_fact, thigh_findings
from .card import Card, render_detail
from .clinical import already_done, findings, in_lower_limb, onset
from .registry import Call, Source, rule

# Red flags (003) and the persistent / symptomatic arm of the work-up (emg-evaluation).
SILENCED_BY = ("mnd-red-flag", "claudication-abi", "radiculopathy-evaluation", "emg-evaluation")
_FINDINGS = ("fasciculation", "hamstring_injury", "thigh_pain")
_LAB_ORDERS = ("bmp_panel", "magnesium_order")
_PANEL_NAMES = {"bmp_panel": "basic metabolic panel", "magnesium_order": "magnesium"}
_LAB_RESULTS = ("potassium_lab", "magnesium_lab", "calcium_total_lab", "calcium_ionized_lab", "albumin_lab")


@rule(
    id="hamstring-twitch-care",
    triggers=(("fasciculation",),),
    title="Hamstring twitching: benign causes and electrolytes",
    hooks=("patient-view",),
    indicator="info",
    reads={
        "conditions": _FINDINGS,
        "observations": _FINDINGS + _LAB_RESULTS,
        "serviceRequests": _LAB_ORDERS,
        "procedures": _LAB_ORDERS,
        "diagnosticReports": _LAB_ORDERS,
    },
    source=Source("003", sections=("Common Benign Causes", "Diagnostic Approach")),
    after=SILENCED_BY,
)
def evaluate(call: Call) -> Card | None:
    """The benign-causes card with BMP / magnesium suggestions (see module doc)."""
    if any(call.fired(r) for r in SILENCED_BY):
        return None
    record = call.record
    twitch = thigh_findings(record, "fasciculation")
    if not twitch:
        return None
    began = onset(twitch)
    if began is not None and (call.now - began).days >= call.settings.persistent_days:
        return None
    if any(f.body_sites and not in_lower_limb(f, record) for f in findings(record, "fasciculation")):
        return None

    why = [located_fact(f, record) for f in twitch]
    if began is not None:
        why.append(f"Twitching began {day(began)}, {(call.now - began).days} days ago "
                   f"(persistent means at least {call.settings.persistent_days} days)")
    days = call.settings.lab_recent_days
    recent = recent_electrolytes(call)
    why += [result_line(r) for r in recent.values() if r is not None]
    missing = missing_labs(call, recent)  # "no result" only when the results arrived whole
    if missing:
        why.append(f"No {', '.join(NAMES[lab].lower() for lab in missing)} result in the last {days} days")
    panels = {name: days for name in _LAB_ORDERS if name in {PANEL_OF[lab] for lab in missing}}
    on_file = {name: r for name in panels if (r := already_done(record, name, call.now, days)) is not None}
    why += [f"Already ordered or reported: {on_file_fact(r)}" for r in on_file.values()]
    suggestions = order_suggestions(call, twitch, panels)
    wanted = " and ".join(_PANEL_NAMES[name] for name in panels if name not in on_file)

    summary = "Hamstring twitching: most often benign; review activity, hydration, caffeine"
    guideline = [
        "Twitching in the back of the thigh is most commonly benign fasciculation from muscle fatigue, overuse or "
        "electrolyte disturbances; other triggers are dehydration and caffeine or stimulants "
        + cite("introduction", "Common Benign Causes"),
        "For isolated, intermittent hamstring twitching: review recent activity changes, hydration and diet; check a "
        "basic metabolic panel including magnesium, potassium and calcium; recommend activity modification, adequate "
        "hydration and electrolyte repletion if deficient " + cite("Diagnostic Approach"),
    ]
    return Card(summary=summary + (f"; check {wanted}" if wanted else ""), indicator="info",
                detail=render_detail(why, guideline), suggestions=suggestions)
