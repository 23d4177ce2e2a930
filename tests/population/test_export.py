"""Bulk Data: the development endpoint's ``$export`` (async: Content-Location, Retry-After, manifest, files) and
``cdshooks export`` against it on loopback, with SMART Backend Services (client credentials, private_key_jwt
RS384 / ES384 verified by a token endpoint on loopback). Exported data simulates to the same cards as the fixtures."""

from __future__ import annotations

import io
import json
import secrets
import time
from datetime import datetime, timezone

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from flask import Flask, Response, request

from cdshooks.cli import main
from cdshooks.population.bulk_client import ExportError, export
from cdshooks.population.simulation import simulate
from cdshooks.tryit.fhir_endpoint import blueprint
from cdshooks.tryit.fixtures import FIXTURES_DIR

from ..loopback import serve_wsgi

NOW = datetime.now(timezone.utc).replace(microsecond=0)
CLIENT = "silent-mode-client"


def _pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class BulkServer:
    """The dev FHIR endpoint (with ``$export``) behind a token check, and a SMART token endpoint."""

    def __init__(self, public_key, kid: str):
        self.public_key, self.kid = public_key, kid
        self.tokens: set[str] = set()
        self.jtis: set[str] = set()
        self.seen: list[tuple[str, str, dict]] = []  # (method, path, args) of export requests
        self.scopes: list[str] = []
        self.discoveries = 0
        self.app = Flask("bulk-test")
        self.app.register_blueprint(blueprint([FIXTURES_DIR], clock=lambda: NOW, export_delay=1.0))
        self.app.add_url_rule("/auth/token", "token", self.token, methods=["POST"])
        self.app.add_url_rule("/fhir/.well-known/smart-configuration", "smart", self.smart)
        self.app.before_request(self.check)
        self.base = ""

    def check(self):
        if request.path.startswith("/auth/") or request.path.endswith("/.well-known/smart-configuration"):
            return None
        self.seen.append((request.method, request.path, request.args.to_dict(flat=False)))
        if "/$export-file/" in request.path:  # the manifest says requiresAccessToken: false
            assert "Authorization" not in request.headers
            return None
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[len("Bearer "):] not in self.tokens:
            return Response(json.dumps({"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "login", "diagnostics": "unauthorized"}]}), status=401)
        return None

    def smart(self):
        self.discoveries += 1
        return {"token_endpoint": f"{self.base}/auth/token", "grant_types_supported": ["client_credentials"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"]}

    def token(self):
        form = request.form
        if (form.get("grant_type") != "client_credentials" or form.get("client_assertion_type")
                != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"):
            return Response(json.dumps({"error": "invalid_request"}), status=400)
        assertion = form.get("client_assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            algorithm = "RS384" if isinstance(self.public_key, rsa.RSAPublicKey) else "ES384"
            claims = jwt.decode(assertion, self.public_key, algorithms=[algorithm],
                                audience=f"{self.base}/auth/token", issuer=CLIENT,
                                options={"require": ["exp", "iat", "jti", "sub", "iss", "aud"]})
        except jwt.PyJWTError:
            return Response(json.dumps({"error": "invalid_client"}), status=401)
        if (header.get("kid") != self.kid or header.get("typ") != "JWT" or claims["sub"] != CLIENT
                or claims["exp"] - claims["iat"] > 300 or claims["jti"] in self.jtis):
            return Response(json.dumps({"error": "invalid_client"}), status=401)
        self.jtis.add(claims["jti"])
        self.scopes.append(form.get("scope", ""))
        token = secrets.token_urlsafe(24)
        self.tokens.add(token)
        return {"access_token": token, "token_type": "bearer", "expires_in": 300, "scope": form.get("scope")}


@pytest.fixture(params=["RS384", "ES384"])
def server(request, tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if request.param == "RS384" \
        else ec.generate_private_key(ec.SECP384R1())
    key_file = tmp_path / "client.pem"
    key_file.write_bytes(_pem(key))
    bulk = BulkServer(key.public_key(), kid="client-key-1")
    with serve_wsgi(bulk.app) as base:
        bulk.base = base
        yield bulk, base, key_file, request.param


def _cli_export(base, key_file, out, *extra):
    return main(["export", f"{base}/fhir", "--out", str(out), "--client-id", CLIENT, "--key", str(key_file),
                 "--kid", "client-key-1", "--token-url", f"{base}/auth/token", *extra])


def test_export_then_simulate_gives_the_fixtures_cards(server, tmp_path, capsys):
    bulk, base, key_file, alg = server
    code = _cli_export(base, key_file, tmp_path / "export", "--hook", "patient-view")
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "next poll in 1 s" in captured.err  # Retry-After was honoured
    files = sorted(p.name for p in (tmp_path / "export").glob("*.ndjson"))
    assert "Patient.001.ndjson" in files and "Condition.001.ndjson" in files
    kickoff = next(s for s in bulk.seen if s[1].endswith("$export"))
    assert kickoff[0] == "POST" or kickoff[2].get("_typeFilter")  # narrowed; POSTed when too long for a URL
    polls = [s for s in bulk.seen if "$export-status" in s[1]]
    assert len(polls) >= 2 and polls[-1][0] == "DELETE"
    assert "system/Condition.read" in bulk.scopes[0].split()
    exported, _ = simulate([str(tmp_path / "export")], "patient-view", NOW, None, lambda m: None, jobs=1,
                           stream=io.StringIO())
    direct, _ = simulate([str(FIXTURES_DIR)], "patient-view", NOW, None, lambda m: None, jobs=1,
                         stream=io.StringIO())
    assert exported["patients"] == direct["patients"]
    assert [(r["rule"], r["cards"]) for r in exported["rules"]] == [(r["rule"], r["cards"]) for r in direct["rules"]]


def test_simulate_from_a_server_exports_then_simulates_with_the_token_endpoint_discovered(server, tmp_path, capsys):
    """``simulate --from URL``: one command; no --token-url: the token endpoint comes from the server's
    .well-known/smart-configuration."""
    bulk, base, key_file, _ = server
    out = tmp_path / "silent"
    code = main(["simulate", "--from", f"{base}/fhir", "--client-id", CLIENT, "--key", str(key_file),
                 "--kid", "client-key-1", "--out", str(out), "--now", NOW.isoformat(), "--jobs", "1", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "cdshooks simulate: export started" in captured.err and bulk.scopes  # a token was obtained
    assert bulk.discoveries == 1
    report = json.loads(captured.out)
    direct, _ = simulate([str(FIXTURES_DIR)], "patient-view", NOW, None, lambda m: None, jobs=1,
                         stream=io.StringIO())
    assert report["patients"] == direct["patients"] > 0
    assert [(r["rule"], r["cards"]) for r in report["rules"]] == [(r["rule"], r["cards"]) for r in direct["rules"]]
    assert (out / "cards.ndjson").read_text() and not (out / "work").exists()
    # with the work folder kept, a second run uses the finished export instead of exporting again
    kept = tmp_path / "kept"
    args = ["simulate", "--from", f"{base}/fhir", "--client-id", CLIENT, "--key", str(key_file), "--kid",
            "client-key-1", "--out", str(kept), "--now", NOW.isoformat(), "--jobs", "1", "--keep-work"]
    assert main(args) == 0 and (kept / "work" / "export" / "manifest.json").is_file()
    exports = sum(1 for m, p, _ in bulk.seen if p.endswith("$export"))
    capsys.readouterr()
    assert main(args) == 0 and sum(1 for m, p, _ in bulk.seen if p.endswith("$export")) == exports
    assert "using the export already in" in capsys.readouterr().err


def test_simulate_from_refuses_paths_and_a_server_without_smart_configuration(tmp_path, capsys):
    app = Flask("no-smart")
    with serve_wsgi(app) as base:
        code = main(["simulate", "--from", f"{base}/fhir", "--client-id", CLIENT, "--key", str(tmp_path / "k.pem"),
                     "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
    assert code == 2 and f"no --token-url given and {base}/fhir/.well-known/smart-configuration answered 404" in err
    assert main(["simulate", str(FIXTURES_DIR), "--from", "https://ehr.example.org/fhir"]) == 2
    assert "give PATHs or --from URL, not both" in capsys.readouterr().err
    assert main(["simulate"]) == 2 and "--from FHIR_BASE_URL" in capsys.readouterr().err


def test_type_filter_narrows_what_is_exported(server, tmp_path):
    bulk, base, key_file, _ = server
    from cdshooks.population.bulk_client import Auth

    auth = Auth(f"{base}/auth/token", CLIENT, str(key_file), kid="client-key-1")
    only = export(f"{base}/fhir", tmp_path / "a", level="patient", types=["Patient", "Observation"],
                  type_filters=["Observation?code=http://loinc.org|2823-3"], auth=auth)
    assert sorted(p.name for p in only) == ["Observation.001.ndjson", "Patient.001.ndjson"]
    lines = [json.loads(line) for line in (tmp_path / "a" / "Observation.001.ndjson").read_text().splitlines()]
    assert lines and all(any(c.get("code") == "2823-3" for c in r["code"]["coding"]) for r in lines)
    group = export(f"{base}/fhir", tmp_path / "b", level="group", group="fixtures", types=["Patient"], auth=auth)
    assert len((tmp_path / "b" / "Patient.001.ndjson").read_text().splitlines()) == len(
        (tmp_path / "a" / "Patient.001.ndjson").read_text().splitlines())
    assert group and json.loads((tmp_path / "b" / "manifest.json").read_text())["output"][0]["type"] == "Patient"


def test_a_client_with_the_wrong_key_gets_no_token(server, tmp_path, capsys):
    _, base, _, _ = server
    other = tmp_path / "other.pem"
    other.write_bytes(_pem(ec.generate_private_key(ec.SECP384R1())))
    code = _cli_export(base, other, tmp_path / "out")
    err = capsys.readouterr().err
    assert code == 2 and "the token endpoint refused the client (401: invalid_client)" in err
    assert not list((tmp_path / "out").glob("*.ndjson"))


def test_without_credentials_the_server_refuses(server, tmp_path):
    _, base, _, _ = server
    with pytest.raises(ExportError, match="did not start the export \\(401"):
        export(f"{base}/fhir", tmp_path / "out")


def test_plain_http_only_on_loopback(tmp_path):
    with pytest.raises(ExportError, match="https"):
        export("http://fhir.example.org/R4", tmp_path)


# -- the development endpoint's $export ---------------------------------------------------------

@pytest.fixture
def dev():
    app = Flask("dev-export")
    app.register_blueprint(blueprint([FIXTURES_DIR], clock=lambda: NOW, export_delay=0.5))
    return app.test_client()


def test_dev_export_async_pattern(dev):
    assert dev.get("/fhir/$export").status_code == 400  # no Prefer: respond-async
    resp = dev.get("/fhir/$export?_type=Patient", headers={"Prefer": "respond-async"})
    assert resp.status_code == 202
    status = resp.headers["Content-Location"].replace("http://localhost", "")
    first = dev.get(status)
    assert first.status_code == 202 and first.headers["Retry-After"] == "1"
    time.sleep(0.6)
    manifest = dev.get(status).get_json()
    assert [o["type"] for o in manifest["output"]] == ["Patient"] and manifest["requiresAccessToken"] is False
    body = dev.get(manifest["output"][0]["url"].replace("http://localhost", ""))
    assert body.mimetype == "application/fhir+ndjson"
    assert all(json.loads(line)["resourceType"] == "Patient" for line in body.get_data(as_text=True).splitlines())
    assert dev.delete(status).status_code == 202 and dev.get(status).status_code == 404
    assert dev.get("/fhir/Group/nope/$export", headers={"Prefer": "respond-async"}).status_code == 404
    bad = dev.get("/fhir/$export?_outputFormat=text/csv", headers={"Prefer": "respond-async"})
    assert bad.status_code == 400 and bad.get_json()["resourceType"] == "OperationOutcome"
    assert dev.get("/fhir/$export?_typeFilter=nonsense", headers={"Prefer": "respond-async"}).status_code == 400
