"""Every web request has an id: the caller's sane X-Request-Id or a new one, on the log lines
written while it is handled and in the response header (architect/api/request_ids.py)."""

import json
import logging

from flask import Flask

from architect import logsetup
from architect.api import request_ids


def app_and_records():
    app = Flask("t")
    request_ids.install(app)
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)
    log = logging.getLogger("architect.test.request_ids")
    log.setLevel(logging.INFO)
    handler = Keep()
    handler.addFilter(logsetup.ContextFilter("master"))
    log.addHandler(handler)

    @app.get("/x")
    def x():
        log.info("handling")
        return {"id": request_ids.current()}
    return app, records, handler


def test_a_request_id_is_made_or_kept_logged_and_returned():
    app, records, handler = app_and_records()
    client = app.test_client()
    made = client.get("/x")
    rid = made.headers["X-Request-Id"]
    assert len(rid) == 16 and made.json["id"] == rid
    assert records[-1].request_id == rid and records[-1].node == "master"
    line = json.loads(logsetup.formatter("json").format(records[-1]))
    assert line["request_id"] == rid and line["message"] == "handling"
    kept = client.get("/x", headers={"X-Request-Id": "lb-7f3a.2"})
    assert kept.headers["X-Request-Id"] == "lb-7f3a.2" and records[-1].request_id == "lb-7f3a.2"
    for bad in ("has space", "x" * 65, "semi;colon", ""):
        replaced = client.get("/x", headers={"X-Request-Id": bad})
        assert replaced.headers["X-Request-Id"] != bad and len(replaced.headers["X-Request-Id"]) == 16
    # outside a request, nothing is left behind
    logging.getLogger("architect.test.request_ids").info("after")
    assert records[-1].request_id is None
    logging.getLogger("architect.test.request_ids").removeHandler(handler)
