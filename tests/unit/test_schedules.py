"""Tier 1: the schedule book (architect/broker/schedules.py): due times, late and missed
runs, overlap, pause and resume, and the checks on a new schedule. Pure; time passed in."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from architect.broker import schedules as S

T0 = 1_700_000_000.0          # 2023-11-14 22:13:20 UTC
SPEC = {"task_type": "shell", "payload": {"command": "true"}}


def book_with(**kw) -> tuple[S.ScheduleBook, S.Schedule]:
    book = S.ScheduleBook()
    kw.setdefault("name", "s")
    kw.setdefault("spec", SPEC)
    s = book.add(S.Schedule(**kw), T0)
    return book, s


def outcomes(book):
    return [(r[3], r[1]) for r in book.take_dirty()[1]]


def never_running(_task_id):
    return False


def test_every_fires_once_per_due_time():
    book, s = book_with(every=10.0)
    assert s.next_due == T0 + 10
    assert book.due(T0 + 9.9, never_running) == []
    fires = book.due(T0 + 10.05, never_running)
    assert [(f.schedule, f.due, f.outcome) for f in fires] == [(s, T0 + 10, "fired")]
    book.fired(fires[0], 7, T0 + 10.05)
    assert s.next_due == T0 + 20 and s.last_due == T0 + 10 and s.last_task == 7
    assert book.due(T0 + 10.5, never_running) == []          # not twice
    assert outcomes(book) == [("fired", T0 + 10)]


def test_cron_in_a_time_zone():
    book, s = book_with(cron="0 3 * * *", tz="Europe/Berlin")
    due = datetime.fromtimestamp(s.next_due, ZoneInfo("Europe/Berlin"))
    assert (due.hour, due.minute, due.second) == (3, 0, 0)
    assert 0 < s.next_due - T0 <= 86400
    seconds = book_with(name="x", cron="*/2 * * * * *")[1]    # 6 fields: seconds last
    assert seconds.next_due - T0 <= 60


def test_late_within_the_grace_fires_the_latest_and_records_the_rest_missed():
    book, s = book_with(every=1.0)
    fires = book.due(T0 + 3.2, never_running)                # due T0+1, +2, +3
    assert [(f.due, f.outcome) for f in fires] == [(T0 + 3, "fired")]
    book.fired(fires[0], 1, T0 + 3.2)
    assert outcomes(book) == [("missed", T0 + 1), ("missed", T0 + 2), ("fired", T0 + 3)]
    assert s.next_due == T0 + 4


def test_past_the_grace_skip_fires_nothing_and_once_catches_up_once():
    book, s = book_with(every=60.0)                          # grace: 30 s
    assert book.due(T0 + 60 * 5 + 45, never_running) == []
    assert [o for o, _ in outcomes(book)] == ["missed"] * 5
    assert s.next_due == T0 + 360
    book, s = book_with(every=60.0, missed="once")
    fires = book.due(T0 + 60 * 5 + 45, never_running)
    assert [(f.due, f.outcome) for f in fires] == [(T0 + 300, "caught_up")]
    book.fired(fires[0], 9, T0 + 345)
    assert [o for o, _ in outcomes(book)] == ["missed"] * 4 + ["caught_up"]


def test_a_huge_backlog_is_counted_not_listed():
    book, s = book_with(every=1.0)
    fire, = book.due(T0 + 5000.5, never_running)             # 5,000 due times passed
    assert fire.due == T0 + 5000
    book.fired(fire, 1, T0 + 5000.5)
    rows = book.take_dirty()[1]
    assert len(rows) == S.MAX_MISSED_ROWS + 2                # 1000 listed, 1 count, 1 fired
    assert "and 3999 more missed" in rows[-2][5]             # 1000 + 3999 = 4999 missed
    assert rows[-1][3] == "fired" and s.next_due == T0 + 5001


def test_overlap_skip_while_the_previous_task_runs():
    book, s = book_with(every=5.0, overlap="skip")
    book.fired(book.due(T0 + 5, never_running)[0], 1, T0 + 5)
    assert book.due(T0 + 10, lambda task_id: task_id == 1) == []
    assert outcomes(book)[-1] == ("skipped", T0 + 10) and s.last_outcome == "skipped"
    fires = book.due(T0 + 15, lambda task_id: False)          # it ended: fires again
    assert [f.due for f in fires] == [T0 + 15]
    book2, s2 = book_with(every=5.0)                          # allow (the default)
    book2.fired(book2.due(T0 + 5, never_running)[0], 1, T0 + 5)
    assert len(book2.due(T0 + 10, lambda task_id: True)) == 1


def test_pause_and_resume():
    book, s = book_with(every=10.0)
    book.set_paused(s, True, T0 + 1)
    assert book.due(T0 + 100, never_running) == []
    book.set_paused(s, False, T0 + 100.5)
    assert s.next_due == T0 + 110.5                           # the first due after now
    assert outcomes(book) == []                               # paused time is no runs at all


def test_put_back_after_a_failed_write():
    book, s = book_with(every=1.0)
    taken = book.take_dirty()
    assert taken and not book.take_dirty()
    book.put_back(taken)
    assert book.take_dirty()[0] == {"s": s}
    book.remove("s")
    dirty, _ = book.take_dirty()
    assert dirty == {"s": None}


@pytest.mark.parametrize("kw,message", [
    (dict(name="bad name"), "name must be"),
    (dict(cron=None, every=None), "exactly one of"),
    (dict(cron="* * *"), "not a valid expression"),
    (dict(cron="61 * * * *"), "not a valid expression"),
    (dict(cron=None, every=0.5), "every must be"),
    (dict(cron=None, every=True), "every must be"),
    (dict(tz="Mars/Olympus"), "unknown time zone"),
    (dict(missed="maybe"), "missed must be"),
    (dict(overlap="never"), "overlap must be"),
])
def test_checks_name_what_is_wrong(kw, message):
    args = dict(name="ok", cron="*/5 * * * *", every=None, tz="UTC", missed="skip",
                overlap="allow")
    args.update(kw)
    with pytest.raises(S.ScheduleError, match=message):
        S.check(**args)


def test_parse_every():
    assert [S.parse_every(x) for x in ("30s", "5m", "2h", "1d", "90", 2.5)] == \
        [30, 300, 7200, 86400, 90, 2.5]
    with pytest.raises(S.ScheduleError, match="use a number"):
        S.parse_every("soon")


def test_a_second_schedule_with_the_same_name_is_refused():
    book, _ = book_with(every=1.0)
    with pytest.raises(S.ScheduleError, match="exists"):
        book.add(S.Schedule(name="s", spec=SPEC, every=2.0), T0)
