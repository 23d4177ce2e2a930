# The CDS service under gunicorn. Build: docker compose build
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY cdshooks ./cdshooks
COPY fhir_fixtures ./fhir_fixtures
RUN pip install . && useradd --system --home /app cds && mkdir -p /app/instance && chown cds /app/instance
USER cds
ENV CDSHOOKS_HOST=0.0.0.0 CDSHOOKS_PORT=8080 CDSHOOKS_INSTANCE_PATH=/app/instance \
    CDSHOOKS_FIXTURES_DIR=/app/fhir_fixtures
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz').status == 200 else 1)"
CMD ["gunicorn", "-c", "python:cdshooks.gunicorn_conf", "cdshooks:create_app()"]
