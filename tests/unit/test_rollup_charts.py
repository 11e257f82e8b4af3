"""Tier 1: the figures the health page and the task stream build (plain values in, a plotly
figure out): the x-axis is the chosen window, sparse series get markers, an empty one says
"no data yet", rolled-up resolutions get a min-max band, and gaps are not bridged."""

from __future__ import annotations

import datetime as dt

from architect.ui.pages import flow, health

NOW = 1_700_000_000.0
TH = {k: {"warning": 80.0, "critical": 90.0} for k in ("cpu", "memory", "disk")}
TH["load"] = {"warning": 4.0, "critical": 8.0}


def answer(series, resolution="raw", window=3600, bucket=12.0):
    return {"series": series, "resolution": resolution, "bucket": bucket, "range": "1h",
            "since": NOW - window, "until": NOW, "window": window, "thresholds": TH,
            "heartbeat_age": 1.0, "status": "healthy"}


def point(ts, cpu=10.0):
    p = {"ts": ts, "samples": 1}
    for v in ("cpu_percent", "memory_percent", "disk_percent", "load_1"):
        p[v], p[f"{v}_min"], p[f"{v}_max"] = cpu, cpu - 1, cpu + 1
    return p


def width(fig, axis="xaxis"):
    lo, hi = fig.layout[axis].range
    return (hi - lo).total_seconds() if isinstance(lo, dt.datetime) else None


def test_a_few_samples_are_markers_on_the_whole_window():
    fig = health.chart(answer([point(NOW - 10), point(NOW - 5)]))
    assert {t.mode for t in fig.data} == {"lines+markers"}
    assert all(width(fig, a) == 3600 for a in ("xaxis", "xaxis2", "xaxis3", "xaxis4"))
    assert not [a for a in fig.layout.annotations if a.text == health.NO_DATA]


def test_many_samples_are_lines_and_no_samples_say_no_data_yet():
    many = health.chart(answer([point(NOW - 3600 + i * 12) for i in range(300)]))
    assert {t.mode for t in many.data} == {"lines"}
    empty = health.chart(answer([]))
    assert [a.text for a in empty.layout.annotations].count(health.NO_DATA) == 4
    assert width(empty) == 3600


def test_rolled_up_resolutions_draw_a_band_and_gaps_stay_open():
    day = [point(NOW - 86400 + i * 300) for i in range(100)] + [point(NOW - 600)]
    fig = health.chart(answer(day, "1m", 86400, 288.0))
    assert [t.fill for t in fig.data].count("tonexty") == 4
    cpu = [t for t in fig.data if t.name == "CPU %"][0]
    assert None in cpu.y                     # the hours without samples are a hole
    assert width(fig) == 86400


def test_the_task_stream_axis_is_its_window_and_short_tasks_stay_visible():
    spans = [{"id": 1, "task_type": "shell", "status": "succeeded", "assigned_node": "n1",
              "started_at": NOW - 30, "finished_at": NOW - 29.995, "attempt": 1}]
    fig = flow.stream(spans, 3600, now=NOW)
    assert width(fig) == 3600
    assert fig.data[0].x[0] >= 3600 * 1000 / 300     # 5 ms drawn 12 s wide
    empty = flow.stream([], 900, now=NOW)
    assert width(empty) == 900 and empty.layout.annotations[0].text == "no recent tasks"
