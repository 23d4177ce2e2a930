# Two commands do all the set-up on a fresh machine with Python 3.11+ and make:
#   make serve   create .venv if missing, install, run the service on 127.0.0.1:8080 (gunicorn)
#   make test    create the same .venv, run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

# Local demo defaults: no client authentication, the service may call its own /fhir endpoint.
SERVE_ENV := CDSHOOKS_AUTH=$${CDSHOOKS_AUTH:-off} \
             CDSHOOKS_FHIR_SERVERS=$${CDSHOOKS_FHIR_SERVERS:-http://127.0.0.1:8080/fhir,http://localhost:8080/fhir} \
             CDSHOOKS_PUBLIC_URL=$${CDSHOOKS_PUBLIC_URL:-http://127.0.0.1:8080}

.PHONY: serve test bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,postgres]'
	@touch $(STAMP)

serve: $(STAMP)
	$(SERVE_ENV) $(BIN)/gunicorn -c python:cdshooks.gunicorn_conf 'cdshooks:create_app()'

test: $(STAMP)
	$(BIN)/ruff check cdshooks tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) instance .pytest_cache
