"""The compose stack, read as a file: it can start with the images it names, and it says what the README says."""

from __future__ import annotations

import re
import tomllib

from cdshooks.config import Settings
from cdshooks.fhir.client import allowed_server, routed

from ..conftest import REPO
from .files import compose, dockerfile, dockerfile_cmd, dockerfile_env, nginx_template

README = (REPO / "README.md").read_text()
LONG_RUNNING = ("proxy", "cdshooks", "postgres", "hapi", "hapi-db")
# What each image can run in a healthcheck. HAPI's image is distroless: no shell, no wget, no curl.
TOOLS = {"nginx": {"wget", "nginx"}, "postgres": {"pg_isready"}, "hapiproject/hapi": set(), "cdshooks": {"python"}}


def _image_kind(name: str, service: dict) -> str:
    if "build" in service:
        return "cdshooks"
    return next(k for k in TOOLS if service["image"].startswith(k))


def test_healthchecks_use_only_tools_their_images_have():
    for name, service in compose()["services"].items():
        check = service.get("healthcheck")
        if not check:
            continue
        test = check["test"]
        assert test[0] == "CMD", f"{name}: a healthcheck without a shell (CMD form)"
        assert test[1] in TOOLS[_image_kind(name, service)], f"{name}: {test[1]} is not in its image"


def test_every_dependency_condition_can_be_met():
    services = compose()["services"]
    for name, service in services.items():
        for dep, cond in (service.get("depends_on") or {}).items():
            condition = cond["condition"]
            if condition == "service_healthy":
                has_check = "healthcheck" in services[dep] or ("build" in services[dep] and "HEALTHCHECK" in dockerfile())
                assert has_check, f"{name} waits for {dep} to be healthy, but {dep} has no healthcheck"
            elif condition == "service_completed_successfully":
                assert services[dep].get("restart") == "no", f"{dep} must be a one-shot service"
            else:
                assert condition == "service_started"
    assert "healthcheck" not in services["hapi"], "the HAPI image is distroless: no healthcheck can run in it"
    fixtures = services["fixtures"]["command"]
    assert "--wait" in fixtures, "the loader waits for HAPI itself, since HAPI has no healthcheck"


def test_restart_policies_and_resource_limits():
    services = compose()["services"]
    for name in LONG_RUNNING:
        assert services[name].get("restart") in ("unless-stopped", "always"), name
        limits = services[name]["deploy"]["resources"]["limits"]
        assert limits.get("cpus") and limits.get("memory"), name
    assert services["fixtures"]["restart"].startswith("on-failure")


def test_two_replicas_share_postgresql_behind_the_proxy():
    services = compose()["services"]
    app = services["cdshooks"]
    assert app["deploy"]["replicas"] >= 2
    assert "ports" not in app, "the replicas are reached through the proxy only"
    env = app["environment"]
    assert env["CDSHOOKS_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in env["CDSHOOKS_DATABASE_URL"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])
    proxy = services["proxy"]
    assert proxy["image"].startswith("nginx:")
    assert proxy["environment"]["CDSHOOKS_UPSTREAM"] == "cdshooks:8080"
    assert "./deploy/nginx/cdshooks.conf.template:/etc/nginx/templates/default.conf.template:ro" in proxy["volumes"]
    assert proxy["ports"] == ["8443:8443"]
    assert env["CDSHOOKS_PUBLIC_URL"] == "https://localhost:8443"


def test_the_proxy_buffers_bodies_and_takes_large_headers():
    conf = nginx_template()
    assert re.search(r"^\s*proxy_request_buffering\s+on;", conf, re.M)
    assert re.search(r"^\s*client_body_timeout\s+\d+s;", conf, re.M)
    number, size = re.search(r"^\s*large_client_header_buffers\s+(\d+)\s+(\d+)k;", conf, re.M).groups()
    assert int(size) >= 16
    assert re.search(r"^\s*listen \$\{PROXY_HTTPS_PORT\} ssl;", conf, re.M)
    assert "X-Forwarded-Proto https" in conf


def test_hapi_keeps_its_data_on_a_volume():
    services = compose()["services"]
    url = services["hapi"]["environment"]["spring.datasource.url"]
    assert url.startswith("jdbc:postgresql://hapi-db:5432/")
    assert any(v.startswith("hapi-data:") for v in services["hapi-db"]["volumes"])
    assert {"hapi-data", "cdshooks-db", "certs"} <= set(compose()["volumes"])


def test_the_hapi_url_the_readme_gives_is_allowed_and_reached_inside_the_network():
    env = compose()["services"]["cdshooks"]["environment"]
    settings = Settings.from_env({k: str(v) for k, v in env.items()})
    public = "http://localhost:8090/fhir"
    assert public in README
    assert allowed_server(public, settings.fhir_servers, settings.fhir_allow_http)
    assert routed(public, settings.fhir_routes) == "http://hapi:8080/fhir"
    assert routed(public + "/Patient?_getpages=x", settings.fhir_routes) == "http://hapi:8080/fhir/Patient?_getpages=x"
    hapi = compose()["services"]["hapi"]
    assert hapi["ports"] == ["8090:8080"]
    assert hapi["environment"]["hapi.fhir.server_address"].rstrip("/") == public


def test_the_readme_names_what_the_compose_file_runs():
    for name in ("docker compose up", "https://localhost:8443/cds-services", "http://localhost:8090/fhir",
                 "nginx", "PostgreSQL", "replicas", "CDSHOOKS_FHIR_ROUTES", "make constraints"):
        assert name in README, f"README does not mention {name}"
    deploying = README.split("## Deploying", 1)[1].split("\n## ", 1)[0]
    for name in compose()["services"]:
        assert f"`{name}`" in deploying, f"the Deploying section does not name the {name} service"


def test_the_image_is_non_root_with_runtime_dependencies_only_pinned():
    text = dockerfile()
    final = re.split(r"^FROM ", text, flags=re.M)[-1]
    user = re.findall(r"^USER (\S+)", final, re.M)
    assert user and user[-1] not in ("root", "0")
    assert "--constraint constraints.txt" in text
    assert "[test]" not in text and "fhir_fixtures" not in re.sub(r"#.*", "", text)
    assert not re.search(r"^COPY (tests|bench)", text, re.M)
    cmd = dockerfile_cmd()
    assert cmd[:2] == ["gunicorn", "--preload"] and cmd[-1] == "cdshooks:create_app()"
    assert dockerfile_env()["CDSHOOKS_HOST"] == "0.0.0.0"


def test_constraints_pin_every_runtime_dependency():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pinned = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not pinned with =="
            pinned[re.sub(r"[-_.]+", "-", name).lower()] = version
    wanted = list(project["dependencies"])
    wanted += project.get("optional-dependencies", {}).get("postgres", [])
    for requirement in wanted:
        name = re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)).lower()
        assert name in pinned, f"{name} is not pinned in constraints.txt: run make constraints"


def test_pyproject_license_is_an_spdx_expression():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"


def test_make_serve_installs_no_test_extras():
    makefile = (REPO / "Makefile").read_text()
    serve_stamp = makefile.split("$(SERVE_STAMP): ", 1)[1].split("\n\n", 1)[0]
    assert "-e ." in serve_stamp and "[test]" not in serve_stamp
    assert re.search(r"^serve: \$\(SERVE_STAMP\)$", makefile, re.M)
    assert "CDSHOOKS_PUBLIC_URL" not in makefile and "CDSHOOKS_FHIR_SERVERS" not in makefile
