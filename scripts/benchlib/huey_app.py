"""The Huey side of bench_tasks.py: a SqliteHuey app with a no-op task."""

import os

from huey import SqliteHuey

huey = SqliteHuey("bench", filename=os.environ.get("HUEY_BENCH_DB", "/tmp/huey-bench.db"))


@huey.task()
def noop():
    return 1  # Huey does not store None results (store_none=False)
