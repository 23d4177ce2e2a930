"""CDS Hooks 2.0 service for muscle twitching (fasciculations).

``create_app(settings)`` builds the Flask application; ``gunicorn 'cdshooks:create_app()'``
serves it with settings from the ``CDSHOOKS_*`` environment variables.
"""

from __future__ import annotations

import gc
import logging

from flask import Flask

__all__ = ["create_app"]


def create_app(settings=None) -> Flask:
    from . import logs
    from .config import Settings
    from .service import endpoints, errors, observability
    from .service.engine import Engine
    from .service.jsoncodec import JSONCodecProvider
    from .store import Store

    settings = settings or Settings.from_env()
    logs.configure(settings.log_level)
    app = Flask(__name__, static_folder=None, instance_path=str(settings.instance_dir()))
    # one byte of slack: service/body.py tells "exactly the limit" from "past it" for chunked bodies too
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1
    app.json = JSONCodecProvider(app)  # compact, keys in insertion order

    store = Store(settings.db_url(), **settings.store_options())
    store.init()
    engine = Engine(settings, store)
    verifier = None
    if settings.auth == "required":
        from .trust.verifier import Verifier

        verifier = Verifier(settings, store)
    else:
        logs.event("auth.off", logging.WARNING,
                   message="CDSHOOKS_AUTH=off: client JWTs are NOT checked; any caller can use this service")
    app.extensions["cdshooks"] = endpoints.State(settings, store, engine, verifier)

    app.register_blueprint(endpoints.bp)
    app.register_blueprint(observability.bp)
    if not settings.production:
        app.register_blueprint(endpoints.floor_blueprint())
        _register_dev(app, settings)
    errors.register(app)
    # Nothing loads on a worker's first call: one synthetic call per hook, and one request
    # through Flask, now (under gunicorn once, in the master: the app is preloaded).
    warm_ms = engine.warm_up()
    with app.test_client() as client:
        client.get("/cds-services")  # answered, or 401 when authentication is required: either warms Flask
    # Everything loaded so far (FHIR model classes, value sets, rules) lives as long as the
    # process: keep it out of the garbage collector's full passes. A large prefetch body
    # allocates tens of thousands of objects that die with the request, so young-generation
    # collections are spaced out accordingly (measured: -25% latency on a 1 MB record).
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    rule_ids = sorted({r.id for s in engine.services.values() for r in s.rules})
    logs.event("service.started", env=settings.env, auth=settings.auth, services=sorted(engine.services),
               rules=rule_ids, warm_up_ms=warm_ms)
    return app


def _register_dev(app: Flask, settings) -> None:
    """Development conveniences (the fixtures FHIR endpoint, the playground); off in production."""
    from .tryit import fhir_endpoint, playground
    from .tryit.loader import fixture_folders

    app.register_blueprint(fhir_endpoint.blueprint(fixture_folders(settings.fixtures_dir or None)))
    app.register_blueprint(playground.blueprint())
