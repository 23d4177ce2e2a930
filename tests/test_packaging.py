"""The deployment files say what the README says: docker-compose, settings table, make targets."""

from __future__ import annotations

import re
from dataclasses import fields

import yaml

from cdshooks.config import RuleSettings, Settings

from .conftest import REPO


def readme() -> str:
    return (REPO / "README.md").read_text()


def test_compose_file_parses_and_names_the_services():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"cdshooks", "hapi", "fixtures", "proxy", "postgres"} <= set(services)
    assert services["hapi"]["image"].startswith("hapiproject/hapi")
    assert services["cdshooks"]["build"] == "."
    env = services["cdshooks"]["environment"]
    assert "http://hapi:8080/fhir" in env["CDSHOOKS_FHIR_SERVERS"]
    assert services["fixtures"]["command"][:2] == ["cdshooks", "load-fixtures"]
    assert (REPO / "Dockerfile").is_file()
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "gunicorn" in dockerfile and "cdshooks:create_app()" in dockerfile
    text = readme()
    for name in ("docker compose up", "hapi", "8090"):
        assert name in text, f"README does not mention {name}"


def test_every_setting_is_documented_in_the_readme_table():
    text = readme()
    names = {"CDSHOOKS_" + f.name.upper() for f in fields(Settings) if f.name != "rules"}
    names |= {"CDSHOOKS_RULES_" + f.name.upper() for f in fields(RuleSettings)}
    names |= {"CDSHOOKS_WORKERS", "CDSHOOKS_THREADS"}  # read by gunicorn_conf.py
    table = set(re.findall(r"^\| `(CDSHOOKS_[A-Z_]+)`", text, flags=re.M))
    assert names <= table, f"undocumented settings: {sorted(names - table)}"
    assert table <= names, f"documented but unknown: {sorted(table - names)}"


def test_readme_shows_the_two_commands():
    text = readme()
    assert "make serve" in text and "make test" in text
    assert "make test" in (REPO / ".ci" / "run").read_text()
