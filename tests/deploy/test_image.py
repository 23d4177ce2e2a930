"""The image's start command, run here with the image's layout: the package installed (not the
repository), fixtures mounted as compose mounts them, gunicorn with --preload and two workers;
then nginx from the compose stack's template in front of it, with a certificate made by
deploy/make_cert.py (skipped where nginx is not installed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from ..conftest import REPO
from .files import compose, dockerfile_cmd, dockerfile_env, render_nginx
from .serving import clean_env, free_port, running

PATIENT = "demo-twitching-weakness"


def _python_bin() -> str:
    return str(Path(sys.executable).parent)


def _image_env(tmp_path: Path, port: int, fixtures: Path, site: Path) -> dict[str, str]:
    """Dockerfile ENV, then the compose service's environment; bound to loopback, SQLite instead of PostgreSQL."""
    env = clean_env(**dockerfile_env())
    env.update({k: str(v) for k, v in compose()["services"]["cdshooks"]["environment"].items()})
    env.update(CDSHOOKS_HOST="127.0.0.1", CDSHOOKS_PORT=str(port), CDSHOOKS_WORKERS="2",
               CDSHOOKS_INSTANCE_PATH=str(tmp_path / "instance"), CDSHOOKS_FIXTURES_DIR=str(fixtures),
               CDSHOOKS_DATABASE_URL=f"sqlite:///{tmp_path / 'instance' / 'cdshooks.sqlite'}",
               PATH=f"{_python_bin()}{os.pathsep}{env.get('PATH', '')}", PYTHONPATH=str(site))
    return env


def _installed_copy(root: Path) -> Path:
    """The package as pip puts it in site-packages: without the repository around it."""
    shutil.copytree(REPO / "cdshooks", root / "cdshooks", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _check_answers(base: str, **kwargs) -> None:
    fixtures = requests.get(f"{base}/playground/fixtures", timeout=10, **kwargs)
    assert fixtures.status_code == 200, fixtures.text
    names = [f["name"] for f in fixtures.json()["fixtures"]]
    assert PATIENT in names and len(names) == len(set(names))
    assert requests.get(f"{base}/fhir/Patient/{PATIENT}", timeout=10, **kwargs).status_code == 200
    assert requests.get(f"{base}/cds-services", timeout=10, **kwargs).json()["services"]


def test_the_start_command_serves_with_the_image_layout(tmp_path):
    site = _installed_copy(tmp_path / "site")
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    port = free_port()
    env = _image_env(tmp_path, port, REPO / "fhir_fixtures", site)
    base = f"http://127.0.0.1:{port}"
    with running(dockerfile_cmd(), env, app_dir, tmp_path / "gunicorn.log", f"{base}/healthz/ready"):
        _check_answers(base)
    log = (tmp_path / "gunicorn.log").read_text()
    assert "Traceback" not in log


def test_the_fixtures_folder_named_twice_is_served_once(tmp_path):
    """The package's default fixtures folder and CDSHOOKS_FIXTURES_DIR the same folder: each scenario once."""
    app_dir = tmp_path / "app"
    _installed_copy(app_dir)
    shutil.copytree(REPO / "fhir_fixtures", app_dir / "fhir_fixtures")
    port = free_port()
    env = _image_env(tmp_path, port, app_dir / "fhir_fixtures", app_dir)
    base = f"http://127.0.0.1:{port}"
    with running(dockerfile_cmd(), env, app_dir, tmp_path / "gunicorn.log", f"{base}/healthz"):
        _check_answers(base)


@pytest.fixture
def nginx() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found:
        pytest.skip("nginx is not installed (.ci/run installs Debian's nginx-light)")
    return found


def test_nginx_in_front_terminates_tls_buffers_and_answers_operation_outcomes(tmp_path, nginx):
    site = _installed_copy(tmp_path / "site")
    app_port, https_port, status_port = free_port(), free_port(), free_port()
    env = _image_env(tmp_path, app_port, REPO / "fhir_fixtures", site)
    env["CDSHOOKS_PUBLIC_URL"] = f"https://localhost:{https_port}"
    certs = tmp_path / "certs"
    subprocess.run([sys.executable, str(REPO / "deploy" / "make_cert.py"), str(certs), "localhost", "127.0.0.1"],
                   check=True, capture_output=True)
    assert (certs / "cert.pem").is_file() and (certs / "key.pem").stat().st_mode & 0o077 == 0
    site_conf = render_nginx({"CDSHOOKS_UPSTREAM": f"127.0.0.1:{app_port}",
                              "PROXY_HTTPS_PORT": f"127.0.0.1:{https_port}", "PROXY_STATUS_PORT": str(status_port),
                              "PROXY_CERT_DIR": str(certs)})
    (tmp_path / "site.conf").write_text(site_conf)
    temp = tmp_path / "nginx-temp"
    temp.mkdir()
    user = "user root;\n" if os.geteuid() == 0 else ""
    (tmp_path / "nginx.conf").write_text(
        f"{user}worker_processes 1;\ndaemon off;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/nginx-error.log;\n"
        f"events {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n  client_body_temp_path {temp}/body;\n"
        f"  proxy_temp_path {temp}/proxy;\n  fastcgi_temp_path {temp}/fastcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n"
        f"  scgi_temp_path {temp}/scgi;\n  include {tmp_path}/site.conf;\n}}\n")
    nginx_cmd = [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
    test = subprocess.run(nginx_cmd + ["-t"], capture_output=True, text=True)
    assert test.returncode == 0, test.stderr
    public = f"https://localhost:{https_port}"
    verify = str(certs / "cert.pem")
    with running(dockerfile_cmd(), env, tmp_path, tmp_path / "gunicorn.log", f"http://127.0.0.1:{app_port}/healthz"), \
            running(nginx_cmd, clean_env(), tmp_path, tmp_path / "nginx.log", f"http://127.0.0.1:{status_port}/nginx-health"):
        _check_answers(public, verify=verify)
        # a hook call with a large prefetch goes through whole
        padding = [{"resourceType": "Observation", "id": f"o{i}", "status": "final", "code": {"text": "x" * 200},
                    "subject": {"reference": f"Patient/{PATIENT}"}} for i in range(8000)]
        body = {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
                "context": {"userId": "Practitioner/example", "patientId": PATIENT},
                "prefetch": {"observations": {"resourceType": "Bundle", "type": "searchset",
                                              "entry": [{"resource": r} for r in padding]}}}
        assert len(json.dumps(body)) > 2_000_000
        resp = requests.post(f"{public}/cds-services/fasciculation-patient-view", json=body, verify=verify, timeout=30)
        assert resp.status_code in (200, 412), resp.text
        # metrics are not served through the proxy
        resp = requests.get(f"{public}/metrics", verify=verify, timeout=10)
        assert resp.status_code == 404 and resp.json()["resourceType"] == "OperationOutcome"
        assert requests.get(f"http://127.0.0.1:{app_port}/metrics", timeout=10).status_code == 200
        # a 12 KB header line (a long JWT) fits the proxy's header buffers
        resp = requests.get(f"{public}/cds-services", headers={"X-Long": "a" * 12_000}, verify=verify, timeout=10)
        assert resp.status_code == 200
        # past the proxy's body limit: 413 with an OperationOutcome
        resp = requests.post(f"{public}/cds-services/fasciculation-patient-view", data=b"{" + b" " * (17 << 20),
                             headers={"Content-Type": "application/json"}, verify=verify, timeout=30)
        assert resp.status_code == 413
        assert resp.json()["resourceType"] == "OperationOutcome"
    with running(nginx_cmd, clean_env(), tmp_path, tmp_path / "nginx.log", f"http://127.0.0.1:{status_port}/nginx-health"):
        resp = requests.get(f"{public}/cds-services", verify=verify, timeout=10)  # no replica answers
        assert resp.status_code == 503
        assert resp.json()["resourceType"] == "OperationOutcome"
