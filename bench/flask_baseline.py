"""The Flask + SQLite baseline of bench_serving.py: the same lookup, the usual Flask way.

Run by gunicorn (sync workers), one read-only connection per worker process:
    gunicorn -w 2 'bench.flask_baseline:create_app("/path/recs-x.sqlite")'
"""

from __future__ import annotations

import sqlite3

from flask import Flask, Response


def create_app(serving_file: str) -> Flask:
    app = Flask(__name__)
    opened: list[sqlite3.Connection] = []

    def connection() -> sqlite3.Connection:
        if not opened:  # opened in the worker, after gunicorn forks
            uri = f"file:{serving_file}?mode=ro&immutable=1"
            opened.append(sqlite3.connect(uri, uri=True, check_same_thread=False))
        return opened[0]

    @app.get("/recommend/<user_id>")
    def recommend(user_id: str) -> Response:
        if not user_id.isascii() or not user_id.isdigit():
            return Response("user id must be decimal digits", status=400, mimetype="text/plain")
        row = connection().execute("SELECT items FROM recs WHERE user_id = ?", (int(user_id),)).fetchone()
        if row is None:
            row = connection().execute("SELECT value FROM meta WHERE key = 'fallback'").fetchone()
        return Response(row[0], mimetype="text/plain")

    return app
