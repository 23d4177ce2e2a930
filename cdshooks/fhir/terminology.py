"""Terminology: value sets and the medication product table, loaded from data files.

Every code the rules use lives in ``cdshooks/valuesets/*.json`` with a provenance note;
this module only reads them and answers two questions: *does this CodeableConcept
belong to value set X?* and *which ingredients does this medication concept name?*

Matching follows the catalogue's shared definitions:

* by ``system`` + ``code`` (ICD-10-CM with or without the dot, by prefix where the
  value set marks a code ``"prefix": true``);
* else, for a coding whose code this service does not know at all (in no value set and
  not in the product table), by the value set's names in ``coding.display``; and for a
  concept none of whose codings is known, in ``CodeableConcept.text``. Names match
  case-insensitively as whole words ("Penicillin V Potassium" is not a potassium lab:
  lab value sets carry no names and match by LOINC only).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache, cached_property, lru_cache
from importlib import resources
from typing import Iterable

__all__ = [
    "SNOMED", "ICD10CM", "LOINC", "RXNORM", "CPT", "UCUM",
    "ValueSet", "Product", "valueset", "valueset_names", "valuesets_keyed", "normalize_code",
    "ingredients", "product", "products_of", "drug_class", "ingredient_coding", "is_known",
    "concept_words", "one", "items", "codings",
]

SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CPT = "http://www.ama-assn.org/go/cpt"
UCUM = "http://unitsofmeasure.org"

_WORD = re.compile(r"[a-z0-9]+")


def one(value: object) -> str | None:
    """A string element as read tolerantly: the string, or the only string of a one-item list; else None."""
    if value.__class__ is str:
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    return value if isinstance(value, str) else None


def items(value: object) -> list:
    """A repeating element as read tolerantly: the list, or one object where a list belongs; else []."""
    if value.__class__ is list:
        return value
    return [value] if isinstance(value, dict) else []


def codings(concept: object) -> list[dict]:
    """The Coding objects of a CodeableConcept (a lone Coding object counts as a list of one)."""
    if not isinstance(concept, dict):
        return []
    return [c for c in items(concept.get("coding")) if isinstance(c, dict)]


def normalize_code(system: object, code: object) -> str:
    """ICD-10-CM codes compare without the dot and in upper case; others as given ("" for a non-string)."""
    code = (one(code) or "").strip()
    if system == ICD10CM:
        return code.replace(".", "").upper()
    return code


def concept_words(text: object) -> list[str]:
    """Lower-case words of a display or text, the unit name matching works on (none for a non-string)."""
    return list(_words(one(text) or ""))


@lru_cache(maxsize=8192)
def _words(text: str) -> tuple[str, ...]:
    # records repeat the same displays ("Potassium", "Heart rate") thousands of times
    return tuple(_WORD.findall(text.replace("\u200b", "").lower()))


def _name_pattern(names: Iterable[str]) -> re.Pattern[str] | None:
    phrases = [" ".join(concept_words(n)) for n in names if concept_words(n)]
    if not phrases:
        return None
    alternation = "|".join(re.escape(p) for p in sorted(phrases, key=len, reverse=True))
    return re.compile(rf"(?<![a-z0-9])(?:{alternation})(?![a-z0-9])")


def _norm_text(text: object) -> str:
    return " ".join(concept_words(text))


@dataclass(frozen=True)
class ValueSet:
    """A named set of codes, with names as the documented fallback."""

    name: str
    title: str
    exact: frozenset[tuple[str, str]]
    prefixes: frozenset[tuple[str, str]]
    names: tuple[str, ...]
    codings: tuple[dict, ...] = field(repr=False, default=())
    # Names matched as sets of words in any order ("EMG HEMIDIAPHRAGM" holds {emg, hemidiaphragm}).
    word_sets: tuple[frozenset[str], ...] = ()

    @cached_property
    def keys(self) -> frozenset[tuple[str, str]]:
        """Every (system, code) key of the set, exact and prefix alike: what a record's code index is probed with."""
        return self.exact | self.prefixes

    @cached_property
    def first_words(self) -> frozenset[str]:
        firsts = {concept_words(n)[0] for n in self.names if concept_words(n)}
        return frozenset(firsts | {min(ws) for ws in self.word_sets if ws})

    def has_code(self, system: object, code: object) -> bool:
        system, code = one(system), one(code)
        if not system or not code:
            return False
        norm = normalize_code(system, code)
        if (system, norm) in self.exact:
            return True
        return any(system == s and norm.startswith(p) for s, p in self.prefixes)

    def name_matches(self, text: object) -> bool:
        text = one(text)
        if not text:
            return False
        pattern = _pattern_for(self.name)
        if pattern and pattern.search(_norm_text(text)):
            return True
        if self.word_sets:
            words = set(concept_words(text))
            return any(ws <= words for ws in self.word_sets)
        return False

    def matching_coding(self, concept: dict | None) -> dict | None:
        """The coding that places ``concept`` in this set (by code, else by name), or None."""
        if not isinstance(concept, dict):
            return None
        found = codings(concept)
        for coding in found:
            if self.has_code(coding.get("system"), coding.get("code")):
                return coding
        if not self.names and not self.word_sets:
            return None
        any_known = False
        for coding in found:
            if is_known(coding.get("system"), coding.get("code")):
                any_known = True
            elif self.name_matches(coding.get("display")):
                return coding
        if not any_known and self.name_matches(concept.get("text")):
            return {"display": one(concept.get("text"))}
        return None

    def matches(self, concept: dict | None) -> bool:
        return self.matching_coding(concept) is not None

    def query_codes(self) -> list[str]:
        """``system|code`` tokens for a FHIR search, as the codes are sent by EHRs (dotted ICD)."""
        out = []
        for c in self.codings:
            if c.get("query", True):
                out.append(f"{c['system']}|{c['code']}")
        return out


@dataclass(frozen=True)
class Product:
    """One RxNorm product (SCD/SBD) with its ingredients and, when known, its strength."""

    rxnorm: str
    display: str
    ingredients: frozenset[str]
    strength_mg: float | None = None
    unit_form: str | None = None  # e.g. "tablet": what one unit of doseQuantity counts
    # When one code is listed for several strengths and the source does not say which is which
    # (quinidine sulfate 852877 / 852913: 200 or 300 mg), every possible strength; else empty.
    strengths_mg: tuple[float, ...] = ()


def _load_json(name: str) -> dict:
    return json.loads(resources.files("cdshooks.fhir.valuesets").joinpath(name).read_text("utf-8"))


@cache
def _all_valuesets() -> dict[str, ValueSet]:
    out: dict[str, ValueSet] = {}
    for entry in sorted(resources.files("cdshooks.fhir.valuesets").iterdir(), key=lambda p: p.name):
        if not entry.name.endswith(".json") or entry.name == "medications.json":
            continue
        data = json.loads(entry.read_text("utf-8"))
        exact: set[tuple[str, str]] = set()
        prefixes: set[tuple[str, str]] = set()
        for c in data.get("codes", []):
            key = (c["system"], normalize_code(c["system"], c["code"]))
            (prefixes if c.get("prefix") else exact).add(key)
        vs = ValueSet(
            name=data["name"],
            title=data.get("title", data["name"]),
            exact=frozenset(exact),
            prefixes=frozenset(prefixes),
            names=tuple(data.get("names", [])),
            codings=tuple(data.get("codes", [])),
            word_sets=tuple(frozenset(w.lower() for w in ws) for ws in data.get("word_sets", [])),
        )
        if vs.name in out:
            raise ValueError(f"duplicate value set {vs.name!r} in {entry.name}")
        out[vs.name] = vs
    return out


@cache
def _pattern_for(name: str) -> re.Pattern[str] | None:
    return _name_pattern(valueset(name).names)


def valueset(name: str) -> ValueSet:
    try:
        return _all_valuesets()[name]
    except KeyError:
        raise KeyError(f"unknown value set {name!r}") from None


def valueset_names() -> list[str]:
    return sorted(_all_valuesets())


@cache
def valuesets_keyed() -> tuple[dict[tuple[str, str], tuple[ValueSet, ...]], dict[str, tuple[ValueSet, ...]]]:
    """(every value set key -> the sets that hold it, every first word of a name -> the sets it may
    name): what a record's code index is looked up in to find which sets may match it."""
    by_key: dict[tuple[str, str], list[ValueSet]] = {}
    by_word: dict[str, list[ValueSet]] = {}
    for vs in _all_valuesets().values():
        for key in vs.keys:
            by_key.setdefault(key, []).append(vs)
        for word in vs.first_words:
            by_word.setdefault(word, []).append(vs)
    return ({k: tuple(v) for k, v in by_key.items()}, {k: tuple(v) for k, v in by_word.items()})


@cache
def _medications() -> dict:
    data = _load_json("medications.json")
    ingredients_by_code: dict[str, str] = {}
    for name, ing in data["ingredients"].items():
        if ing.get("rxnorm"):
            ingredients_by_code[ing["rxnorm"]] = name
    products: dict[str, Product] = {}
    for p in data.get("products", []):
        products[p["rxnorm"]] = Product(
            rxnorm=p["rxnorm"],
            display=p.get("display", ""),
            ingredients=frozenset(p["ingredients"]),
            strength_mg=p.get("strength_mg"),
            unit_form=p.get("unit_form"),
            strengths_mg=tuple(p.get("strengths_mg", ())),
        )
    # An ingredient's names, plus the brand names the brand table maps to it ("Tegretol" is carbamazepine).
    brand_names: dict[str, list[str]] = {}
    for brand, entry in data.get("brands", {}).items():
        if entry["ingredient"] not in data["ingredients"]:
            raise ValueError(f"brand {brand!r} names an unknown ingredient {entry['ingredient']!r}")
        brand_names.setdefault(entry["ingredient"], []).append(brand)
    names = {name: _name_pattern([*ing.get("names", [name]), *brand_names.get(name, [])])
             for name, ing in data["ingredients"].items()}
    classes = {k: frozenset(v) for k, v in data.get("classes", {}).items()}
    return {"data": data, "by_code": ingredients_by_code, "products": products, "names": names, "classes": classes}


@cache
def _known_codes() -> frozenset[tuple[str, str]]:
    known: set[tuple[str, str]] = set()
    for vs in _all_valuesets().values():
        known |= vs.exact
    meds = _medications()
    known |= {(RXNORM, c) for c in meds["by_code"]}
    known |= {(RXNORM, c) for c in meds["products"]}
    return frozenset(known)


def is_known(system: object, code: object) -> bool:
    """Whether any value set or the product table knows this code (then names are not consulted)."""
    system, code = one(system), one(code)
    if not system or not code:
        return False
    norm = normalize_code(system, code)
    if (system, norm) in _known_codes():
        return True
    return any(
        system == s and norm.startswith(p) for vs in _all_valuesets().values() for s, p in vs.prefixes
    )


def product(concept: dict | None) -> Product | None:
    """The product table entry for a medication concept's RxNorm product code, if any."""
    if not isinstance(concept, dict):
        return None
    products = _medications()["products"]
    for coding in codings(concept):
        code = one(coding.get("code"))
        if one(coding.get("system")) == RXNORM and code in products:
            return products[code]
    return None


def products_of(ingredient: str) -> list[Product]:
    """The product table's single-ingredient products of an ingredient, in table order."""
    return [p for p in _medications()["products"].values() if p.ingredients == frozenset({ingredient})]


def ingredients(concept: dict | None) -> frozenset[str]:
    """Ingredient names (keys of medications.json) that a medication concept names."""
    if not isinstance(concept, dict):
        return frozenset()
    meds = _medications()
    found: set[str] = set()
    any_known = False
    found_codings = codings(concept)
    for coding in found_codings:
        system, code = one(coding.get("system")), one(coding.get("code"))
        if system == RXNORM and code in meds["by_code"]:
            found.add(meds["by_code"][code])
            any_known = True
        elif system == RXNORM and code in meds["products"]:
            found |= meds["products"][code].ingredients
            any_known = True
    if found:
        return frozenset(found)
    texts = [one(c.get("display")) for c in found_codings if not is_known(c.get("system"), c.get("code"))]
    if not any_known:
        texts.append(one(concept.get("text")))
    for text in texts:
        norm = _norm_text(text)
        if not norm:
            continue
        for name, pattern in meds["names"].items():
            if pattern and pattern.search(norm):
                found.add(name)
    return frozenset(found)


def drug_class(name: str) -> frozenset[str]:
    """Ingredient names in a class such as ``cyp3a4_inhibitor`` (see medications.json)."""
    try:
        return _medications()["classes"][name]
    except KeyError:
        raise KeyError(f"unknown drug class {name!r}") from None


def ingredient_coding(name: str) -> dict:
    """The RxNorm ingredient Coding for an ingredient name, for suggested orders."""
    ing = _medications()["data"]["ingredients"][name]
    coding = {"display": ing.get("display", name)}
    if ing.get("rxnorm"):
        coding = {"system": RXNORM, "code": ing["rxnorm"], **coding}
    return coding
