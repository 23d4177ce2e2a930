"""Try-it tools for developers: the development FHIR endpoint, the fixtures, the playground, fixture loading.
"""

from .fixtures import FIXTURES_DIR, Scenario, for_scenario, scenarios

__all__ = ["FIXTURES_DIR", "Scenario", "for_scenario", "scenarios"]
