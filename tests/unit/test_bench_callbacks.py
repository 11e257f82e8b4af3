"""scripts/bench_ui.py (and bench_history.py) post the Dash callbacks a browser posts: each
must name outputs and inputs the app really has, or the benchmark measures an error page."""

from flask import Flask

from architect.ui.app import build
from scripts.bench_ui import CALLBACKS


def test_the_benchmarks_callbacks_match_the_apps():
    app = build(Flask("t"))
    for name, cb in CALLBACKS.items():
        assert cb["output"] in app.callback_map, (name, cb["output"])
        declared = app.callback_map[cb["output"]]
        wanted = [(i["id"], i["property"]) for i in declared["inputs"]]
        assert [(i["id"], i["property"]) for i in cb["inputs"]] == wanted, name
