"""The deployment files as data: docker-compose.yml, the Dockerfile, the nginx template, constraints.txt."""

from __future__ import annotations

import json
import re
import shlex
from functools import lru_cache

import yaml

from ..conftest import REPO

__all__ = ["compose", "dockerfile_env", "dockerfile_cmd", "dockerfile", "nginx_template", "render_nginx"]


@lru_cache(maxsize=1)
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def _final_stage() -> str:
    return re.split(r"^FROM ", dockerfile(), flags=re.M)[-1]


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_env() -> dict[str, str]:
    """The final stage's ENV values (``A=b C=d`` form)."""
    env: dict[str, str] = {}
    for word, rest in _instructions(_final_stage()):
        if word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def dockerfile_cmd() -> list[str]:
    cmds = [rest for word, rest in _instructions(_final_stage()) if word == "CMD"]
    return json.loads(cmds[-1])


def nginx_template() -> str:
    return (REPO / "deploy" / "nginx" / "cdshooks.conf.template").read_text()


def render_nginx(values: dict[str, str]) -> str:
    """The template as the nginx image's envsubst renders it (only ``${NAME}`` of the given names)."""
    return re.sub(r"\$\{([A-Z_]+)\}", lambda m: values.get(m.group(1), m.group(0)), nginx_template())
