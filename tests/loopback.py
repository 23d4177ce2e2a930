"""Loopback: run a WSGI app on a real threaded HTTP server at 127.0.0.1 for the length of a test."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from werkzeug.serving import WSGIRequestHandler, make_server

__all__ = ["serve_wsgi"]


class _QuietHandler(WSGIRequestHandler):
    """Request handler that does not print a line per request."""

    def log_request(self, code="-", size="-") -> None:  # noqa: D401 - werkzeug's signature
        pass


@contextmanager
def serve_wsgi(app, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` on ``host`` at a free port; yields the base URL (``http://127.0.0.1:PORT``)."""
    server = make_server(host, 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
