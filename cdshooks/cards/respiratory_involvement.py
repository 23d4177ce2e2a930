"""respiratory-involvement: neuromuscular twitching or weakness with respiratory muscle involvement.

When it fires (critical)
    Respiratory-muscle involvement is present, which means either
    * a diagnosis that is itself respiratory-muscle involvement: diaphragm paralysis or
      weakness, respiratory muscle weakness (``respiratory_muscle``), or
    * a respiratory diagnosis (diaphragm disorder J98.6 / 48475001, respiratory
      insufficiency or failure: ``respiratory_involvement``) **together with** a
      fasciculation or a neuromuscular diagnosis (MND/ALS, SMA, neuromyotonia, Morvan,
      myasthenia gravis, Guillain-Barre: ``neuromuscular_diagnosis``).
    Generalized muscle weakness is **not** a neuromuscular link: COPD with chronic
    respiratory failure and "generalized weakness" stays silent.

When it stays silent
    * no respiratory-muscle involvement as defined above (refuted, entered in error,
      resolved or abated data does not count);
    * both referrals are on file inside ``referral_window_days``: pulmonology and
      neurology have the patient, and the phrenic test is theirs to order.

What it suggests
    * referral to pulmonology (SNOMED 306275005) unless on file inside the referral window;
    * referral to neurology (SNOMED 308474002) unless on file inside the referral window;
    * phrenic nerve stimulation with twitch pressure measurement, with "allow 15 minutes of
      quiet breathing before the test", as **advice in the card text, not an order**
      (unless a phrenic test is on file inside ``study_window_days``): no code for the test
      could be verified (``phrenic_test`` says why), and an uncoded ServiceRequest cannot
      be signed as it stands.
    Both referrals are ``urgent``; every order's reason is the findings that fired the card.

Guideline (000 Muscle Twitching: Causes and Treatment)
    Referral Indications: "Refer to neurology when ... Respiratory muscle involvement is
    present"; "Refer to pulmonology and neurology when: Respiratory muscle twitching or
    weakness is documented". Specialized Testing: "For respiratory muscle involvement or
    diaphragm assessment: Phrenic nerve stimulation with twitch pressure measurements
    provides objective strength assessment; Allow 15 minutes of quiet breathing before
    testing to avoid twitch potentiation from prior muscle contractions".

What changed and why (clinical review)
    * Before, muscle weakness counted as the neuromuscular half, so a COPD patient with
      chronic respiratory failure and "generalized weakness", no twitching, got a critical
      card, urgent referrals and a phrenic test. The guideline's trigger is "respiratory
      muscle twitching or weakness" / "respiratory muscle involvement": weakness of the
      respiratory muscles, not generalized weakness beside a lung disease. Now a
      respiratory diagnosis counts only with fasciculation or a neuromuscular diagnosis,
      and diaphragm paralysis counts by itself.
    * The "why this card" facts name the respiratory-muscle involvement and, when it
      rests on a link, the neuromuscular finding that makes it one.

Choices where the catalogue and guideline are silent
    * J98.6 "Disorders of diaphragm" and SNOMED 48475001 cover eventration, relaxation and
      diaphragmatitis as well as paralysis, so they need the neuromuscular link; SNOMED
      64228003 "Paralysis of diaphragm" (or the words) stands alone.
    * The phrenic test has no verified code (``phrenic_test`` notes why), so it is advice,
      not an order. A code-filtered prefetch never returns a phrenic test on file; one is
      recognised (by name, or by a word set such as "EMG HEMIDIAPHRAGM") only when the data
      reaches the service.
    * Referral priority ``urgent``: respiratory muscle involvement in neuromuscular disease
      can progress to ventilatory failure, and the catalogue makes the card critical.
    * The phrenic test is priority routine: the timing note matters more than the speed.
    * The guideline's trigger is respiratory muscle twitching or weakness itself; the
      catalogue reads it as a coded respiratory involvement (diaphragm paralysis,
      respiratory insufficiency or failure) in a patient with neuromuscular findings,
      because respiratory muscle twitching is not coded on its own. Respiratory failure
      without neuromuscular findings (COPD, pneumonia) stays silent.
"""

from __future__ import annotations

from ._neuro import findings_fact, offer, on_file_fact
from ._phrenic import PHRENIC_TEXT, QUIET_BREATHING
from .card import Card, render_detail
from .clinical import already_done, findings
from .orders import service_request
from .registry import Call, Source, rule

_CONTEXT = ("fasciculation", "neuromuscular_diagnosis")
_FINDINGS = _CONTEXT + ("respiratory_involvement", "respiratory_muscle")
_ORDERS = ("pulmonology_referral", "neurology_referral", "phrenic_test")
_CITE = "Muscle Twitching: Causes and Treatment"


@rule(id="respiratory-involvement",
      triggers=(("respiratory_muscle", "respiratory_involvement"),),
      title=("Respiratory muscle involvement (diaphragm paralysis, or respiratory "
             "failure with a neuromuscular cause): pulmonology and neurology"),
      hooks=("patient-view",), indicator="critical",
      reads={"conditions": _FINDINGS, "observations": _FINDINGS, "serviceRequests": _ORDERS,
             "procedures": _ORDERS, "diagnosticReports": _ORDERS},
      source=Source("000", sections=("Specialized Testing", "Referral Indications")))
def evaluate(call: Call) -> Card | None:
    muscle = findings(call.record, "respiratory_muscle")
    context = findings(call.record, *_CONTEXT)
    breathing = findings(call.record, "respiratory_involvement") if context else []
    if not muscle and not breathing:
        return None
    s = call.settings
    pulmonology = already_done(call.record, "pulmonology_referral", call.now, s.referral_window_days)
    neurology = already_done(call.record, "neurology_referral", call.now, s.referral_window_days)
    if pulmonology is not None and neurology is not None:
        return None
    phrenic = already_done(call.record, "phrenic_test", call.now, s.study_window_days)

    reasons = muscle + breathing + context
    why = []
    if muscle:
        why.append(f"Respiratory muscle involvement: {findings_fact(muscle)}")
    if breathing:
        why.append(f"Respiratory involvement with a neuromuscular cause: {findings_fact(breathing)}")
    if context:
        why.append(f"Neuromuscular findings: {findings_fact(context)}")
    suggestions = []
    for done, valueset_name, text, label in (
            (pulmonology, "pulmonology_referral", "Referral to pulmonology", "Pulmonology"),
            (neurology, "neurology_referral", "Referral to neurology", "Neurology")):
        if done is None:
            resource = service_request(call.patient_id, valueset_name, text=text, category="referral",
                                       priority="urgent", reasons=reasons)
            suggestions.append(offer(resource, recommended=True))
        else:
            why.append(f"{label} referral already on file: {on_file_fact(done)}")
    if phrenic is None:
        why.append(f"To arrange with neurology or pulmonology: {PHRENIC_TEXT.lower()}. {QUIET_BREATHING} Not offered "
                   f"as an order: no code for the test could be verified, so an EHR could not sign it as it stands")
    else:
        why.append(f"Phrenic nerve test already on file: {on_file_fact(phrenic)}")
    guideline = [
        f"Refer to pulmonology and neurology when respiratory muscle twitching or weakness is documented; refer to "
        f"neurology when respiratory muscle involvement is present ({_CITE} — Referral Indications).",
        f"For respiratory muscle involvement, phrenic nerve stimulation with twitch pressure measurements provides "
        f"objective strength assessment; allow 15 minutes of quiet breathing before testing to avoid twitch "
        f"potentiation from prior muscle contractions ({_CITE} — Specialized Testing).",
    ]
    return Card(summary="Respiratory muscle involvement with neuromuscular findings: refer to pulmonology and "
                        "neurology",
                indicator="critical", detail=render_detail(why, guideline), suggestions=suggestions)
