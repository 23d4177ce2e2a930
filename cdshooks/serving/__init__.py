"""Serving: what gunicorn runs around the app (``gunicorn_conf.py`` names them): a threaded
worker that reads each request whole before a thread sees it (``worker``), and a logger that
writes gunicorn's own lines as the service's JSON, with no request paths (``logger``).
"""

__all__: list[str] = []
