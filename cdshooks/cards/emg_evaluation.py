"""emg-evaluation: persistent or symptomatic twitching needs needle EMG and nerve conduction studies.

When it fires (warning)
    A fasciculation is present and either
    * it is persistent: its earliest onset is at least ``persistent_days`` ago (default
      28), or
    * another symptom is present: muscle cramp, paresthesia or other sensory change,
      or muscle stiffness;
    and no EMG or nerve conduction study (``emg_ncs``) is on file inside
    ``study_window_days``, and ``mnd-red-flag`` did not fire (its card already carries
    the EMG, and its advice is more urgent).

When it stays silent
    * twitching of recent onset without another symptom (or with symptoms that are
      refuted, resolved, entered in error or negated);
    * an EMG / nerve conduction study ordered or done inside the window;
    * ``mnd-red-flag`` fired;
    * the diagnosis is already made: a motor neuron disease (``motor_neuron_disease``) or
      neuromyotonia (``neuromyotonia``) diagnosis is present;
    * an EMG on file (completed Procedure or final / amended / corrected DiagnosticReport,
      of any age) is read as abnormal: the study answered the question, and what follows
      is neurology's, not another EMG;
    * the only twitching is in the eyelid or face (``_twitch.face_only``: myokymia);
    * a benign fasciculation diagnosis follows a negative EMG: a present
      ``benign_fasciculation`` diagnosis dated (``recordedDate``, else its onset) on or
      after an EMG (completed Procedure, or final / amended / corrected DiagnosticReport,
      of any age) that is not read as abnormal.

What it suggests
    Needle EMG with nerve conduction studies (SNOMED 42803009), reason: the fasciculation
    and the symptoms that fired it.

Guideline
    000 Electrophysiologic Testing: "Electromyography (EMG) is the primary diagnostic tool
    ... to detect neuromuscular pathology". 000 Critical Pitfalls: "Do not skip EMG in
    uncertain cases – Clinical examination alone cannot reliably distinguish benign from
    pathologic fasciculations". 003 Diagnostic Approach: "For persistent twitching (>2-4
    weeks) or twitching with additional symptoms: ... Order EMG and nerve conduction
    studies". 000 Treatment: "For benign fasciculations: Reassurance after negative
    workup".

What changed and why (clinical review)
    * The card asked for a needle EMG in a patient with a known motor neuron disease and
      an abnormal EMG on file. The guideline's purpose for EMG is "to distinguish benign
      fasciculations from pathologic neuromuscular disease" (000, opening line): once a
      diagnosis is made (MND, neuromyotonia) or an EMG has been read as abnormal, that
      question is answered and the card stays silent. A benign diagnosis that follows an
      abnormal EMG therefore no longer fires the card either (the abnormal EMG answered
      the question; the contradiction is for the clinician, not a new EMG).
    * Eyelid or facial twitching alone does not fire it: the guideline is silent on
      eyelid twitching; EMG is for fasciculations of "affected muscle groups" (000) and
      eyelid myokymia is not a limb fasciculation.

Choices where the catalogue and guideline are silent
    * An EMG is "abnormal" when its report's ``conclusionCode`` (or the Procedure's
      ``outcome``) is SNOMED Abnormal (263654008), or its conclusion / outcome text
      starts with "abnormal". Anything else counts as negative, including an EMG with no
      recorded reading: the later benign diagnosis is the clinician's reading of it. An
      EMG with no reading and no benign diagnosis after it silences the card only inside
      the study window (as any EMG on file does).
    * The EMG before a benign diagnosis may be older than the study window: the
      diagnosis, not the study, is what is current.
    * Persistence is measured from the earliest present fasciculation; an undated
      fasciculation is not persistent (its other symptoms can still fire the card).

Unknown is not absent
    When the orders, procedures or reports did not arrive whole (or one of them cannot be read), the
    card still fires but does not say "No EMG or nerve conduction study on file": it says that this
    could not be checked (``clinical.absence``), so the clinician looks before ordering. An EMG on
    file of any age whose status cannot be read, or that was performed but whose reading
    (``outcome``, ``conclusionCode``, ``conclusion``) is there and cannot be read (an outcome of
    -Infinity), may be the abnormal EMG that silences the card: the card still fires (the EMG that
    answers the question is not known to be there) but names that EMG as one whose status or
    result could not be read, instead of saying that no EMG is on file.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ..fhir.record import Record, concept_unreadable
from ..fhir.terminology import SNOMED, valueset
from ._neuro import day, finding_fact, findings_fact, offer, when_on_file
from ._twitch import body_twitching
from .card import Card, render_detail
from .clinical import (
    ORDER_TYPES,
    Finding,
    absence,
    already_done,
    findings,
    onset,
    order_status_in_doubt,
    order_unsure,
)
from .clinical.elements import codings_of, first_time, items, one, readable, words_of
from .orders import service_request
from .registry import Call, Source, rule

_SYMPTOMS = ("cramp", "paresthesia", "sensory_change", "muscle_stiffness")
_DIAGNOSES = ("motor_neuron_disease", "neuromyotonia")
_FINDINGS = ("fasciculation", "benign_fasciculation") + _SYMPTOMS + _DIAGNOSES
_ABNORMAL_SNOMED = "263654008"
_CITE = "Muscle Twitching: Causes and Treatment"
_CITE_003 = "Hamstring Muscle Twitching: Causes and Clinical Approach"


def _abnormal(resource: dict) -> bool:
    """Whether an EMG report / procedure is read as abnormal (see the module doc)."""
    concepts = [c for c in items(resource.get("conclusionCode")) if isinstance(c, dict)]
    if isinstance(resource.get("outcome"), dict):
        concepts.append(resource["outcome"])
    if any(x.get("system") == SNOMED and x.get("code") == _ABNORMAL_SNOMED for c in concepts for x in codings_of(c)):
        return True
    texts = [resource.get("conclusion")] + [t for c in concepts for t in words_of(c)]
    return any(isinstance(t, str) and t.strip().lower().startswith("abnormal") for t in texts)


def _emgs(record: Record) -> list[tuple[datetime, dict]]:
    """Performed EMGs of any age (completed Procedures, final reports), oldest first."""
    vs = valueset("emg_ncs")
    out = []
    for rtype, statuses in (("Procedure", {"completed"}), ("DiagnosticReport", {"final", "amended", "corrected"})):
        for found in record.coded(rtype, vs):
            raw = readable(record, found)
            when = when_on_file(raw) if raw is not None else None
            if raw is not None and one(raw.get("status")) in statuses and when is not None:
                out.append((when, raw))
    return sorted(out, key=lambda pair: pair[0])


def _emgs_in_doubt(record: Record) -> list[dict]:
    """EMGs on file (any age) whose status cannot be read, or that were performed but whose reading
    (``outcome``, ``conclusionCode``, ``conclusion``) is there and cannot be read: each may be the
    abnormal EMG that answers the question, or a recent one (see the module doc)."""
    vs = valueset("emg_ncs")
    out = []
    for rtype, statuses in (("Procedure", {"completed"}), ("DiagnosticReport", {"final", "amended", "corrected"})):
        for raw in record.coded(rtype, vs):
            if order_status_in_doubt(raw):
                out.append(raw)
            elif one(raw.get("status")) in statuses and _reading_unreadable(raw):
                out.append(raw)
    return out


def _reading_unreadable(raw: dict) -> bool:
    conclusion = raw.get("conclusion")
    if conclusion is not None and one(conclusion) is None:
        return True
    codes = raw.get("conclusionCode")
    if codes is not None and (not items(codes) or any(concept_unreadable(c) for c in items(codes))):
        return True
    return concept_unreadable(raw.get("outcome"))


def _doubt_line(raw: dict) -> str:
    when = when_on_file(raw)
    dated = f" of {day(when)}" if when is not None else " (date unreadable)"
    return (f"An EMG or nerve conduction study ({raw.get('resourceType')}){dated} is on file whose status or result "
            "could not be read: whether it was done, and what it showed, could not be checked")


def _benign_after_emg(record: Record) -> list[tuple[Finding, datetime, dict]]:
    """Each present benign fasciculation diagnosis with the date it was made and the latest EMG before it."""
    emgs = _emgs(record)
    out = []
    for benign in findings(record, "benign_fasciculation"):
        made = first_time(benign.resource, "recordedDate") or benign.onset
        before = [raw for when, raw in emgs if made is not None and when <= made]
        if made is not None and before:
            out.append((benign, made, before[-1]))
    return out


@rule(id="emg-evaluation",
      triggers=(("fasciculation",),),
      title=("Persistent or symptomatic limb twitching, no diagnosis or answering "
             "EMG yet: needle EMG and nerve conduction studies"),
      hooks=("patient-view",), indicator="warning",
      reads={"conditions": _FINDINGS, "observations": _FINDINGS, "serviceRequests": ("emg_ncs",),
             "procedures": ("emg_ncs",), "diagnosticReports": ("emg_ncs",)},
      source=Source(("000", "003"), sections=("Electrophysiologic Testing", "Critical Pitfalls",
                                               "Diagnostic Approach")),
      after=("mnd-red-flag",))
def evaluate(call: Call) -> Card | None:
    if call.fired("mnd-red-flag"):
        return None
    twitch, _face = body_twitching(call.record)
    if not twitch or findings(call.record, *_DIAGNOSES):
        return None
    began = onset(twitch)
    persistent = began is not None and began <= call.now - timedelta(days=call.settings.persistent_days)
    symptoms = findings(call.record, *_SYMPTOMS)
    if not persistent and not symptoms:
        return None
    if already_done(call.record, "emg_ncs", call.now, call.settings.study_window_days) is not None:
        return None
    if any(_abnormal(emg) for _, emg in _emgs(call.record)):
        return None
    if _benign_after_emg(call.record):
        return None

    why = [f"Fasciculation: {findings_fact(twitch)}"]
    if persistent and began is not None:
        days = (call.now - began).days
        why.append(f"Persistent: twitching since {day(began)} ({days} days; persistent means at least "
                   f"{call.settings.persistent_days} days)")
    if symptoms:
        why.append("With other symptoms: " + "; ".join(finding_fact(f) for f in symptoms))
    doubt = _emgs_in_doubt(call.record)
    if doubt:
        why += [_doubt_line(raw) for raw in doubt]
    else:
        why.append(absence(call.record, ORDER_TYPES,
                           f"No EMG or nerve conduction study on file in the last {call.settings.study_window_days} "
                           "days", "an EMG or nerve conduction study is already on file",
                           unsure=order_unsure(call.record, "emg_ncs", call.now, call.settings.study_window_days)))
    guideline = [
        f"Clinical examination alone cannot reliably distinguish benign from pathologic fasciculations: do not skip "
        f"EMG in uncertain cases ({_CITE} — Critical Pitfalls).",
        f"Needle EMG detects fasciculations, fibrillations and positive sharp waves of denervation; motor unit "
        f"analysis separates neuropathic from myopathic processes ({_CITE} — Electrophysiologic Testing).",
        f"For persistent twitching (more than 2-4 weeks) or twitching with additional symptoms, order EMG and nerve "
        f"conduction studies ({_CITE_003} — Diagnostic Approach).",
    ]
    resource = service_request(call.patient_id, "emg_ncs", text="Needle EMG with nerve conduction studies",
                               category="procedure", reasons=twitch + symptoms)
    return Card(summary="Persistent or symptomatic fasciculations: order needle EMG and nerve conduction studies",
                indicator="warning", detail=render_detail(why, guideline),
                suggestions=[offer(resource, recommended=True)])
