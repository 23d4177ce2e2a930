"""Terminology data: the shipped value sets and medication table load, carry provenance, keep
unverified codes out, and match the way RULES.md §1 says (codes, ICD prefixes, whole-word names)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from importlib import resources

import pytest
import simple_icd_10_cm as icd

from cdshooks.fhir import terminology as t
from cdshooks.fhir.record import Record

VERIFICATIONS = {"V", "C", "verified-here"}

REQUIRED = {
    # findings / conditions
    "fasciculation", "muscle_weakness", "muscle_atrophy", "motor_neuron_disease", "respiratory_involvement",
    "neuromuscular_diagnosis", "cramp", "paresthesia", "sensory_change", "insomnia", "muscle_stiffness",
    "neuromyotonia", "benign_fasciculation", "cirrhosis", "hamstring_injury", "thigh_pain", "claudication_pad",
    "lumbar_radiculopathy", "sciatica", "spasticity", "site_hamstring", "site_thigh", "site_lower_limb",
    # labs
    "potassium_lab", "magnesium_lab", "calcium_total_lab", "calcium_ionized_lab", "albumin_lab", "lgi1_antibody_lab",
    # orders / procedures / reports
    "emg_ncs", "nerve_conduction", "neurology_referral", "pulmonology_referral", "phrenic_test", "bmp_panel",
    "magnesium_order", "thigh_mri", "abi", "lgi1_test",
}
LABS = {"potassium_lab", "magnesium_lab", "calcium_total_lab", "calcium_ionized_lab", "albumin_lab", "lgi1_antibody_lab"}
# Value sets whose coding a card puts into a suggested ServiceRequest, with the code RULES.md names.
SUGGESTED = {
    "emg_ncs": None, "nerve_conduction": None, "neurology_referral": "308474002",
    "pulmonology_referral": "306275005", "bmp_panel": "24321-2", "magnesium_order": "19123-9",
    "thigh_mri": "24702-3", "abi": None, "lgi1_test": "82978-8",
}
# Codes terminology.md marks M: they may ship only when verified in this project ("verified-here").
MARKED_M = {
    t.RXNORM: {"1292", "7715", "6845", "6135", "28031", "21212", "85762", "282446", "31565", "114289", "134748",
               "83395", "195088", "9384", "55672", "258326", "4719"},
    t.CPT: {"95860", "95863", "95864", "95870", "95885", "95866", "95912", "95913", "95937", "93924", "72148"},
    t.SNOMED: {"42803009", "68367000", "61685007"},
    t.LOINC: {"2601-3", "2000-8", "1994-3", "17863-2", "1995-0"},
}

SNOMED, ICD10CM, LOINC, RXNORM = t.SNOMED, t.ICD10CM, t.LOINC, t.RXNORM


def _files() -> dict[str, dict]:
    folder = resources.files("cdshooks.fhir.valuesets")
    return {p.name: json.loads(p.read_text("utf-8")) for p in folder.iterdir() if p.name.endswith(".json")}


def _valueset_files() -> dict[str, dict]:
    return {k: v for k, v in _files().items() if k != "medications.json"}


def _all_codings() -> list[tuple[str, dict]]:
    return [(data["name"], c) for data in _valueset_files().values() for c in data["codes"]]


def _meds() -> dict:
    return _files()["medications.json"]


def concept(system: str | None = None, code: str | None = None, display: str | None = None,
            text: str | None = None) -> dict:
    coding = {k: v for k, v in (("system", system), ("code", code), ("display", display)) if v is not None}
    out: dict = {"coding": [coding]} if coding else {}
    if text is not None:
        out["text"] = text
    return out


# ---------------------------------------------------------------- loading and provenance
def test_every_file_loads_under_its_own_name():
    files = _valueset_files()
    assert {f"{name}.json" for name in t.valueset_names()} == set(files)
    for filename, data in files.items():
        assert filename == f"{data['name']}.json"
        assert data["title"] and isinstance(data["names"], list)
    assert t.drug_class("diuretic")  # medications.json loads too


def test_every_required_value_set_exists():
    assert REQUIRED <= set(t.valueset_names())


def test_every_code_has_a_verification_and_a_source():
    for name, c in _all_codings():
        assert c["system"] and c["code"] and c["display"], (name, c)
        assert c["verification"] in VERIFICATIONS, (name, c)
        assert len(c["source"]) > 10, (name, c)
    meds = _meds()
    for key, ing in meds["ingredients"].items():
        assert ing["names"] and ing["source"], key
        if "rxnorm" in ing:
            assert ing["verification"] in VERIFICATIONS, key
    for p in meds["products"]:
        assert p["verification"] in VERIFICATIONS and p["source"], p["rxnorm"]


def test_no_code_marked_m_ships_unless_verified_here():
    shipped = [(c["system"], c["code"], c["verification"]) for _, c in _all_codings()]
    meds = _meds()
    shipped += [(RXNORM, i["rxnorm"], i["verification"]) for i in meds["ingredients"].values() if "rxnorm" in i]
    shipped += [(RXNORM, p["rxnorm"], p["verification"]) for p in meds["products"]]
    for system, code, verification in shipped:
        assert verification != "M"
        if code in MARKED_M.get(system, ()):
            assert verification == "verified-here", (system, code)


def test_every_icd10cm_code_exists_in_the_official_code_set():
    checked = 0
    for name, c in _all_codings():
        if c["system"] != ICD10CM:
            continue
        checked += 1
        assert icd.is_valid_item(c["code"]), (name, c["code"])
        if c.get("prefix"):
            # a category matched by prefix is not itself billable: FHIR searches skip it
            assert not icd.is_leaf(c["code"]) and c.get("query") is False, (name, c["code"])
        else:
            assert icd.is_leaf(c["code"]), (name, c["code"])  # a billable code, as EHRs send
        assert c["display"] == icd.get_description(c["code"])
    assert checked > 100


def test_a_prefix_entry_lists_its_billable_children_for_searches():
    for name, data in _valueset_files().items():
        tokens = set(t.valueset(data["name"]).query_codes())
        for c in data["codes"]:
            if c.get("prefix") and c["system"] == ICD10CM:
                children = [k for k in icd.get_descendants(c["code"]) if icd.is_leaf(k)]
                assert children and all(f"{ICD10CM}|{k}" in tokens for k in children), (name, c["code"])
                assert f"{ICD10CM}|{c['code']}" not in tokens


def test_lab_value_sets_carry_no_names():
    for name in LABS:
        vs = t.valueset(name)
        assert vs.names == () and {s for s, _ in vs.exact} == {LOINC}


def test_each_suggested_order_value_set_has_a_suggest_coding():
    for name, expected in SUGGESTED.items():
        codings = [c for c in t.valueset(name).codings if c.get("suggest")]
        assert codings, name
        for c in codings:
            assert not c.get("prefix") and c.get("query", True) and c["verification"] in VERIFICATIONS
        if expected:
            assert expected in {c["code"] for c in codings}, name


def test_the_phrenic_test_is_named_and_never_a_generic_nerve_conduction_order():
    phrenic = t.valueset("phrenic_test")
    assert phrenic.matches(concept(text="Phrenic nerve conduction study, bilateral"))
    assert phrenic.matches(concept(text="Twitch transdiaphragmatic pressure"))
    generic = concept("http://www.ama-assn.org/go/cpt", "95907", "Nerve conduction studies; 1-2 studies")
    assert not phrenic.matches(generic)
    assert t.valueset("nerve_conduction").matches(generic)


# ---------------------------------------------------------------- code matching
def test_icd_codes_match_with_or_without_the_dot():
    fasciculation = t.valueset("fasciculation")
    assert fasciculation.matches(concept(ICD10CM, "R25.3"))
    assert fasciculation.matches(concept(ICD10CM, "R253"))
    assert fasciculation.matches(concept(ICD10CM, "r25.3"))
    assert not fasciculation.matches(concept(ICD10CM, "R25.2"))


def test_prefix_entries_match_their_children_only():
    hamstring = t.valueset("hamstring_injury")
    assert hamstring.matches(concept(ICD10CM, "S76.311A"))
    assert hamstring.matches(concept(ICD10CM, "S76312D"))
    assert not hamstring.matches(concept(ICD10CM, "S76.111A"))  # quadriceps, not hamstring
    cirrhosis = t.valueset("cirrhosis")
    assert cirrhosis.matches(concept(ICD10CM, "K74.60"))
    assert cirrhosis.matches(concept(ICD10CM, "K70.31"))
    assert not cirrhosis.matches(concept(ICD10CM, "K74.02"))  # advanced fibrosis: Excludes1 cirrhosis
    assert not cirrhosis.matches(concept(ICD10CM, "K74.00"))
    assert t.valueset("thigh_pain").matches(concept(ICD10CM, "M79.652"))
    assert t.valueset("claudication_pad").matches(concept(ICD10CM, "I70.213"))
    assert not t.valueset("claudication_pad").matches(concept(ICD10CM, "I70.221"))  # rest pain is not in the set


def test_same_code_in_another_system_does_not_match():
    assert not t.valueset("fasciculation").matches(concept(SNOMED, "R25.3"))
    assert not t.valueset("potassium_lab").matches(concept(SNOMED, "2823-3"))


# ---------------------------------------------------------------- the documented name fallback
def test_names_match_whole_words_when_no_coding_is_known():
    fasciculation = t.valueset("fasciculation")
    assert fasciculation.matches(concept(SNOMED, "1234567", "Muscle twitching of left calf"))
    assert fasciculation.matches(concept(text="Fasciculations, both thighs"))
    assert not fasciculation.matches(concept(text="Twitchy mood"))
    assert not fasciculation.matches(concept(text="Twitch transdiaphragmatic pressure"))  # a phrenic test result
    lower_limb = t.valueset("site_lower_limb")
    assert lower_limb.matches(concept(text="Left leg"))
    assert not lower_limb.matches(concept(text="Legacy record"))
    assert t.valueset("site_hamstring").matches(concept(text="Right biceps femoris"))


def test_names_are_not_consulted_when_a_coding_is_known():
    cramp_coded = concept(ICD10CM, "R25.2", "Cramp and spasm", text="muscle twitching")
    assert not t.valueset("fasciculation").matches(cramp_coded)
    assert t.valueset("cramp").matches(cramp_coded)


@pytest.mark.parametrize(("valueset", "text"), [
    ("cramp", "Abdominal cramps"),
    ("cramp", "Menstrual cramps"),
    ("claudication_pad", "Neurogenic claudication"),
    ("spasticity", "Spastic colon"),
    ("lumbar_radiculopathy", "Cervical radiculopathy"),
    ("cirrhosis", "Hepatic fibrosis"),
])
def test_look_alike_texts_do_not_match(valueset, text):
    assert not t.valueset(valueset).matches(concept(text=text))


@pytest.mark.parametrize(("valueset", "text"), [
    ("cramp", "Nocturnal leg cramps"),
    ("claudication_pad", "Intermittent claudication"),
    ("spasticity", "Spasticity due to multiple sclerosis"),
    ("lumbar_radiculopathy", "L5 radiculopathy"),
    ("cirrhosis", "Alcoholic cirrhosis with ascites"),
    ("benign_fasciculation", "Benign fasciculation syndrome"),
    ("neuromyotonia", "Isaacs' syndrome"),
    ("neuromuscular_diagnosis", "Guillain-Barré syndrome"),
    ("sensory_change", "Numbness of foot"),
])
def test_clinical_texts_match(valueset, text):
    assert t.valueset(valueset).matches(concept(text=text))


# ---------------------------------------------------------------- medications
def test_penicillin_v_potassium_names_no_ingredient_and_is_no_potassium_lab():
    penicillin = concept(RXNORM, "834061", "Penicillin V Potassium 250 MG Oral Tablet", text="Penicillin V Potassium")
    assert t.ingredients(penicillin) == frozenset()
    assert not t.valueset("potassium_lab").matches(penicillin)


def test_lasix_is_furosemide_through_the_product_and_brand_tables():
    assert t.ingredients(concept(RXNORM, "315971", "Lasix 40mg")) == {"furosemide"}
    assert t.ingredients(concept(RXNORM, "99999999", "Lasix 40mg")) == {"furosemide"}  # the brand table
    assert t.ingredients(concept(text="Lasix 40mg")) == {"furosemide"}
    assert "furosemide" in t.drug_class("diuretic")


MULTUM = "https://fhir.cerner.com/ec2458f2-1e24-41c8-b71b-0e701af7583d/codeSet/72"


@pytest.mark.parametrize("brand,ingredient", [
    ("Nizoral 200 mg tablet", "ketoconazole"), ("Biaxin 500 mg", "clarithromycin"),
    ("TEGRETOL 200 MG TAB", "carbamazepine"), ("Dilantin 100 mg capsule", "phenytoin"),
    ("Lioresal 10 mg", "baclofen"), ("Camptosar 100 mg/5 mL", "irinotecan"), ("Rifadin 300 mg cap", "rifampin"),
])
def test_brand_names_map_to_their_ingredient_in_displays_and_texts(brand, ingredient):
    assert t.ingredients(concept(MULTUM, "d00123", brand)) == {ingredient}  # a local / Multum code, brand display
    assert t.ingredients(concept(text=brand)) == {ingredient}
    assert t.ingredients(concept(text=brand.lower().replace(" ", "-"))) == {ingredient}


def test_brands_are_data_with_provenance_and_a_known_ingredient():
    meds = _meds()
    assert {"Nizoral", "Biaxin", "Tegretol", "Dilantin", "Lioresal", "Camptosar", "Rifadin"} <= set(meds["brands"])
    for brand, entry in meds["brands"].items():
        assert entry["ingredient"] in meds["ingredients"], brand
        assert entry["verification"] in VERIFICATIONS and len(entry["source"]) > 20, brand
    assert t.ingredients(concept(text="Tegretolx")) == frozenset()  # whole words only


def test_ingredient_codes_and_names_resolve():
    assert t.ingredients(concept(RXNORM, "51499", "irinotecan")) == {"irinotecan"}
    assert t.ingredients(concept(RXNORM, "1726319")) == {"irinotecan"}
    assert t.ingredients(concept(text="Paxlovid (nirmatrelvir and ritonavir)")) == {"ritonavir"}
    assert t.ingredients(concept(text="St. John's Wort 300 mg capsule")) == {"st_johns_wort"}
    assert t.ingredients(concept(text="quinine sulfate 324 mg")) == frozenset()  # quinine is not quinidine
    assert t.ingredient_coding("carbamazepine") == {"system": RXNORM, "code": "2002", "display": "carbamazepine"}
    assert t.ingredient_coding("baclofen") == {"display": "baclofen"}  # unverified RxCUI stays out


def test_baclofen_tablets_carry_their_strength():
    for code, mg in (("197391", 10), ("197392", 20)):
        p = t.product(concept(RXNORM, code))
        assert p is not None and p.ingredients == {"baclofen"}
        assert (p.strength_mg, p.unit_form) == (mg, "tablet")


def test_interaction_classes_name_known_ingredients():
    meds = _meds()
    for name, members in meds["classes"].items():
        assert members and set(members) <= set(meds["ingredients"]), name
    assert {"ketoconazole", "clarithromycin", "ritonavir", "voriconazole"} <= t.drug_class("cyp3a4_inhibitor")
    assert {"rifampin", "carbamazepine", "phenytoin", "phenobarbital", "st_johns_wort"} <= t.drug_class("cyp3a4_inducer")
    assert t.drug_class("ugt1a1_inhibitor") == {"atazanavir", "gemfibrozil", "indinavir"}
    for p in meds["products"]:
        assert set(p["ingredients"]) <= set(meds["ingredients"])
        assert ("strength_mg" in p or "strengths_mg" in p) == ("unit_form" in p)


# ---------------------------------------------------------------- Record.coded over the data
def _condition(rid: str, code_concept: dict) -> dict:
    return {"resourceType": "Condition", "id": rid, "subject": {"reference": "Patient/p1"}, "code": code_concept}


def test_record_finds_conditions_by_icd_prefix_and_by_display_name():
    resources_ = [
        _condition("ham", concept(ICD10CM, "S76.311A", "Strain of posterior thigh muscle, right, initial")),
        _condition("twitch", concept(SNOMED, "999999991", "Muscle twitching (finding)")),
        _condition("fibrosis", concept(ICD10CM, "K74.02", "Hepatic fibrosis, advanced fibrosis")),
        _condition("cirr", concept(ICD10CM, "K7460")),
    ]
    record = Record("p1", resources_, datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert [r["id"] for r in record.coded("Condition", t.valueset("hamstring_injury"))] == ["ham"]
    assert [r["id"] for r in record.coded("Condition", t.valueset("fasciculation"))] == ["twitch"]
    assert [r["id"] for r in record.coded("Condition", t.valueset("cirrhosis"))] == ["cirr"]


def test_order_names_match_as_word_sets_in_any_order():
    phrenic = t.valueset("phrenic_test")
    assert phrenic.matches(concept("urn:oid:1.2.3", "EMG0457", "EMG HEMIDIAPHRAGM"))
    assert phrenic.name_matches("Nerve conduction study, phrenic, bilateral")
    assert phrenic.name_matches("Diaphragm EMG, left")
    assert not phrenic.name_matches("EMG left arm") and not phrenic.name_matches("Nerve conduction study, median")
    rec = Record("p1", [{"resourceType": "Procedure", "id": "p", "status": "completed",
                         "subject": {"reference": "Patient/p1"}, "code": {"text": "EMG hemidiaphragm"}}],
                 datetime(2026, 3, 1, tzinfo=timezone.utc))
    assert len(rec.coded("Procedure", phrenic)) == 1


def test_the_generic_referral_to_service_is_not_a_neurology_referral():
    neuro = t.valueset("neurology_referral")
    assert not neuro.matches(concept(SNOMED, "306206005", "Referral to service"))
    assert not neuro.matches(concept(SNOMED, "306206005", "Referral to service", text="Referral to cardiology"))
    assert neuro.matches(concept(SNOMED, "308474002", "Referral to neurologist"))


def test_common_lab_codes_are_in_the_value_sets():
    assert {"38230-9", "17863-2", "1994-3", "1995-0", "47596-2", "17864-0"} <= {c for _, c in t.valueset(
        "calcium_ionized_lab").exact}
    assert {"2593-2", "2601-3", "19123-9"} <= {c for _, c in t.valueset("magnesium_lab").exact}
    assert {"61151-7", "61152-5", "1751-7"} <= {c for _, c in t.valueset("albumin_lab").exact}
