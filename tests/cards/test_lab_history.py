"""A long lab history is passed over on the time as sent first; the checks ``Record.coded`` makes
(resources about another patient, second copies of a ``Type/id``) are made on what is left.

That must leave exactly what making those checks first leaves: the reference below is the reading
in that order, and hypothesis draws histories with other patients' results, results without ids
ids that come twice and ids that are not strings, old and recent, in any order.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from cdshooks.cards.clinical import labs
from cdshooks.cards.clinical.labs import LABS, latest_lab
from cdshooks.fhir.record import Record
from cdshooks.fhir.terminology import LOINC, valueset

from .fhir_builders import NOW

MG = "19123-9"


def result(rid: object, days_ago: float, value: float, patient: str = "p1") -> dict:
    res = {"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{patient}"},
           "code": {"coding": [{"system": LOINC, "code": MG}]},
           "effectiveDateTime": (NOW - timedelta(days=days_ago)).isoformat(),
           "valueQuantity": {"value": value, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}}
    if rid is not None:
        res["id"] = rid
    return res


def coded_first(record: Record, since: str) -> list[tuple[dict, str]]:
    """The reading with the checks made first (as ``coded`` makes them), then the time."""
    out = labs._since(record.coded("Observation", valueset(LABS["magnesium"].valueset)), since)
    out.sort(key=lambda pair: pair[1], reverse=True)
    return out


SINCE = (NOW - timedelta(days=91)).date().isoformat()

histories = st.lists(st.tuples(
    st.one_of(st.none(), st.sampled_from(["a", "b", "c"]), st.text("0123456789", min_size=1, max_size=4),
              st.sampled_from([["a"], {"value": "a"}, 7])),  # ids as hostile clients send them
    st.sampled_from([1, 5, 30, 89, 120, 400, 2000]),
    st.sampled_from(["p1", "p1", "p1", "other"]),
), max_size=40)


@settings(max_examples=300, deadline=None)
@given(histories)
def test_time_first_leaves_what_checks_first_leave(history):
    resources = [result(rid, days, 1.0 + k / 100, patient) for k, (rid, days, patient) in enumerate(history)]
    mine = labs._candidates(Record("p1", resources, NOW), LABS["magnesium"], SINCE)
    theirs = coded_first(Record("p1", resources, NOW), SINCE)
    assert [(id(raw), key) for raw, key in mine] == [(id(raw), key) for raw, key in theirs]


def test_an_old_first_copy_keeps_a_recent_second_copy_out():
    # the same Observation/id twice: the first copy in record order counts, as everywhere
    old, recent = result("dup", 400, 2.0), result("dup", 3, 1.0)
    assert latest_lab(Record("p1", [old, recent], NOW), "magnesium", NOW, 90) is None
    found = latest_lab(Record("p1", [recent, old], NOW), "magnesium", NOW, 90)
    assert found is not None and found.value == 1.0 and found.low


def test_another_patients_recent_result_is_never_the_latest():
    mine, theirs = result("m", 30, 2.0), result("t", 2, 1.0, patient="other")
    found = latest_lab(Record("p1", [mine, theirs], NOW), "magnesium", NOW, 90)
    assert found is not None and found.value == 2.0


def test_old_results_are_not_checked_for_their_patient():
    # only what is read is counted as another patient's: an old result is passed over on its time
    history = [result(f"o{k}", 400 + k, 2.0, patient="other") for k in range(5)] + [result("m", 3, 2.0)]
    record = Record("p1", history, NOW)
    assert latest_lab(record, "magnesium", NOW, 90).value == 2.0
    assert record.other_patient == 0
