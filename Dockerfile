# The CDS service under gunicorn. Build: docker compose build
# Only what serving needs: the package and its runtime dependencies, pinned by constraints.txt
# (`make constraints` regenerates it from the development venv). No tests, no fixtures: the
# compose stack mounts fhir_fixtures/ where it needs them.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY constraints.txt pyproject.toml README.md ./
COPY cdshooks ./cdshooks
RUN python -m venv /opt/cdshooks \
 && /opt/cdshooks/bin/pip install --constraint constraints.txt ".[postgres]" \
 && /opt/cdshooks/bin/pip uninstall --yes pip

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/cdshooks/bin:$PATH
COPY --from=build /opt/cdshooks /opt/cdshooks
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin cds \
 && mkdir -p /app/instance /certs && chown cds /app/instance /certs
WORKDIR /app
USER cds
ENV CDSHOOKS_HOST=0.0.0.0 CDSHOOKS_PORT=8080 CDSHOOKS_INSTANCE_PATH=/app/instance
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz/ready', timeout=2).status == 200 else 1)"]
# --preload: the app (rules, value sets, FHIR models) is built once, before the workers fork.
CMD ["gunicorn", "--preload", "-c", "python:cdshooks.gunicorn_conf", "cdshooks:create_app()"]
