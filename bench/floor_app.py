"""The benchmark's bare floor: a minimal Flask app that only parses the body with the standard ``json``.

``bench/run.py`` serves it under gunicorn with the service's worker count and worker class, so the
ratio service / floor is what the service costs above the cheapest Python answer on this stack.

    gunicorn -b 127.0.0.1:PORT -w N 'bench.floor_app:app'
"""

from __future__ import annotations

import json

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/parse")
def parse():
    body = json.loads(request.get_data())
    return jsonify({"keys": len(body) if isinstance(body, dict) else 0})


@app.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})
