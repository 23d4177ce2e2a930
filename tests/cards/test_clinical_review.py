"""docs/clinical-review.md, the sign-off page: a section per rule, naming every scenario that shows it."""

from __future__ import annotations

import re

from cdshooks.cards import registry as rules
from cdshooks.tryit.fixtures import scenarios

from ..conftest import REPO


def _sections() -> dict[str, str]:
    text = (REPO / "docs" / "clinical-review.md").read_text()
    parts = re.split(r"^## `([a-z0-9-]+)`", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_every_rule_has_a_section_saying_when_it_fires_stays_silent_and_what_it_suggests():
    sections = _sections()
    assert set(sections) == {r.id for r in rules.all_rules()}
    for rule_id, body in sections.items():
        for heading in ("**Fires:**", "**Silent:**", "**Suggests:**", "**Scenarios, fires:**",
                        "**Scenarios, silent:**"):
            assert heading in body, (rule_id, heading)


def test_the_scenarios_named_are_the_index_scenarios_of_that_rule():
    sections = _sections()
    known = scenarios()
    for rule_id, body in sections.items():
        fires = re.search(r"\*\*Scenarios, fires:\*\*(.*)", body).group(1)
        silent = re.search(r"\*\*Scenarios, silent:\*\*(.*)", body).group(1)
        assert set(re.findall(r"`([^`]+)`", fires)) == {s.name for s in known if rule_id in s.fires}, rule_id
        assert set(re.findall(r"`([^`]+)`", silent)) == {s.name for s in known if rule_id in s.silent}, rule_id
