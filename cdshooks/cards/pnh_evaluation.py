"""pnh-evaluation: twitching or cramps with hyperexcitability symptoms: consider peripheral nerve hyperexcitability.

When it fires (warning)
    A fasciculation or muscle cramp is present **and** paresthesia, insomnia, muscle
    stiffness or a neuromyotonia diagnosis (Isaacs, Morvan) is present, and no LGI1
    antibody result (LOINC 82978-8, final / amended / corrected) is dated inside
    ``study_window_days``, and something is left to suggest (below).

When it stays silent
    * either half is absent (refuted, entered-in-error, resolved or negated data does not
      count);
    * an LGI1 antibody result inside the window, or a latest LGI1 result that is positive
      at any age (``lgi1-immunotherapy`` carries that patient);
    * everything it would suggest is already on file inside ``study_window_days``.

What it suggests
    * nerve conduction studies (CPT 95908, the nerve stimulation studies for
      neuromyotonia) unless an EMG or nerve conduction study (``emg_ncs``) is on file
      inside the study window;
    * an LGI1 antibody test (LOINC 82978-8) unless one is ordered or reported inside the
      study window, **when the guideline's indication for it is met**: a neuromyotonia
      diagnosis is present (the EMG has confirmed it), or both paresthesia and insomnia
      are present (the LGI1 presentation). Otherwise the card says that LGI1 testing
      follows if the EMG confirms neuromyotonia.

Guideline
    000 Associated symptoms: "Screen for paresthesias, insomnia, or ascending sensory
    changes that may indicate peripheral nerve hyperexcitability syndromes". 000
    Electrophysiologic Testing: "Nerve stimulation studies assess for neuromyotonia in
    cases of continuous twitching with peripheral nerve hyperexcitability". 000 PNH
    Syndrome: "May be associated with LGI1 antibodies, presenting with ascending
    paresthesias and insomnia". 003 Neurological Causes: PNH "often accompanied by muscle
    stiffness and cramps"; "LGI1 antibody testing should be performed if EMG confirms
    neuromyotonia". 003 Critical Pitfalls: "Do not dismiss persistent fasciculations as
    purely benign without excluding neuromyotonia or other peripheral nerve
    hyperexcitability syndromes".

Choices where the catalogue and guideline are silent, and one disagreement
    * The catalogue suggests the LGI1 test with every card; 003 asks for it once EMG
      confirms neuromyotonia. The guideline wins: the test is suggested when a
      neuromyotonia diagnosis is recorded, or when paresthesia and insomnia are both
      present (000's LGI1 presentation, which asks for no EMG first).
    * Any EMG or nerve conduction study in the window satisfies the electrophysiology
      advice: the value sets cannot tell a combined EMG/NCS from an EMG alone, and the
      EMG laboratory performs the nerve stimulation studies with it.
    * The LGI1 window is the study window (365 days), as for the other tests.

Unknown is not absent
    "No LGI1 antibody result on file" and "No neuromyotonia diagnosis yet" are said only when the
    data they speak of arrived whole and readable; otherwise the card says that this could not be
    checked (``clinical.absence``). A recent LGI1 result that exists is never described as absent,
    and a neuromyotonia diagnosis whose status cannot be read is not called absent
    (``clinical.findings_in_doubt``).

What changed and why (clinical review)
    When another card offers a needle EMG with nerve conduction studies, the engine drops
    this card's nerve conduction order as clinically covered (``orders.COVERS``) and the
    card says where the study is offered: one answer never orders the same study twice.
"""

from __future__ import annotations

from ._neuro import day, findings_fact, offer, on_file_fact
from .card import Card, render_detail
from .clinical import (
    FINDING_TYPES,
    ORDER_TYPES,
    absence,
    already_done,
    findings,
    findings_in_doubt,
    lgi1_results,
    within,
)
from .clinical.labs import lgi1_in_doubt
from .orders import service_request
from .registry import Call, Source, rule

_TRIGGERS = ("fasciculation", "cramp")
_SIGNS = ("paresthesia", "insomnia", "muscle_stiffness", "neuromyotonia")
_FINDINGS = _TRIGGERS + _SIGNS
_ORDERS = ("emg_ncs", "lgi1_test")
_CITE = "Muscle Twitching: Causes and Treatment"
_CITE_003 = "Hamstring Muscle Twitching: Causes and Clinical Approach"


@rule(id="pnh-evaluation", title="Peripheral nerve hyperexcitability: nerve studies and LGI1 antibodies",
      triggers=(_TRIGGERS, _SIGNS),
      hooks=("patient-view",), indicator="warning",
      reads={"conditions": _FINDINGS, "observations": _FINDINGS + ("lgi1_antibody_lab",),
             "serviceRequests": _ORDERS, "procedures": _ORDERS, "diagnosticReports": _ORDERS},
      source=Source(("000", "003"), sections=("Associated symptoms", "Peripheral Nerve Hyperexcitability (PNH) "
                                               "Syndrome", "Neurological Causes Requiring Evaluation",
                                               "Critical Pitfalls")))
def evaluate(call: Call) -> Card | None:
    twitch = findings(call.record, *_TRIGGERS)
    signs = findings(call.record, *_SIGNS)
    if not twitch or not signs:
        return None
    s = call.settings
    results = lgi1_results(call.record)
    if results and (results[0].positive or within(results[0].effective, call.now, s.study_window_days)):
        return None
    kinds = {f.valueset for f in signs}
    lgi1_indicated = "neuromyotonia" in kinds or {"paresthesia", "insomnia"} <= kinds
    studies = already_done(call.record, "emg_ncs", call.now, s.study_window_days)
    lgi1_order = already_done(call.record, "lgi1_test", call.now, s.study_window_days)

    reasons = twitch + signs
    suggestions = []
    why = [f"Twitching or cramps: {findings_fact(twitch)}", f"Hyperexcitability features: {findings_fact(signs)}"]
    if results:
        why.append(f"Last LGI1 antibody result {results[0].shown()} on {day(results[0].effective)}, older than "
                   f"{s.study_window_days} days")
    else:
        why.append(absence(call.record, ("Observation",) + ORDER_TYPES, "No LGI1 antibody result on file",
                           "an LGI1 antibody result is on file", unsure=lgi1_in_doubt(call.record)))
    if studies is None:
        suggestions.append(offer(service_request(
            call.patient_id, "nerve_conduction", text="Nerve conduction studies with nerve stimulation for "
            "neuromyotonia", category="procedure", reasons=reasons)))
    else:
        why.append(f"EMG / nerve conduction already on file: {on_file_fact(studies)}")
    if not lgi1_indicated:
        why.append(absence(call.record, FINDING_TYPES, "No neuromyotonia diagnosis yet: LGI1 antibody testing "
                           "follows if the EMG confirms neuromyotonia", "a neuromyotonia diagnosis is on the record",
                           unsure=bool(findings_in_doubt(call.record, "neuromyotonia"))))
    elif lgi1_order is None:
        suggestions.append(offer(service_request(
            call.patient_id, "lgi1_test", text="LGI1 antibody (IgG), serum", category="laboratory",
            reasons=reasons)))
    else:
        why.append(f"LGI1 antibody test already on file: {on_file_fact(lgi1_order)}")
    if not suggestions:
        return None
    guideline = [
        f"Screen for paresthesias, insomnia or ascending sensory changes that may indicate peripheral nerve "
        f"hyperexcitability; nerve stimulation studies assess for neuromyotonia ({_CITE} — Diagnostic Approach; "
        f"Electrophysiologic Testing).",
        f"Peripheral nerve hyperexcitability may be associated with LGI1 antibodies, presenting with ascending "
        f"paresthesias and insomnia ({_CITE} — Peripheral Nerve Hyperexcitability (PNH) Syndrome).",
        f"LGI1 antibody testing should be performed if EMG confirms neuromyotonia, as this autoimmune etiology "
        f"responds to immunotherapy; do not dismiss persistent fasciculations as purely benign without excluding "
        f"neuromyotonia ({_CITE_003} — Neurological Causes Requiring Evaluation; Critical Pitfalls).",
    ]
    return Card(summary="Twitching with hyperexcitability features: evaluate for peripheral nerve hyperexcitability "
                        "(neuromyotonia)",
                indicator="warning", detail=render_detail(why, guideline), suggestions=suggestions)
