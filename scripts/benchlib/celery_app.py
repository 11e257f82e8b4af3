"""The Celery side of scripts/bench.py: Redis as broker and result backend, a no-op task."""

import os

from celery import Celery

_url = os.environ.get("CELERY_BENCH_REDIS", "redis://127.0.0.1:6379/0")
app = Celery("bench", broker=_url, backend=_url)
app.conf.update(task_ignore_result=False, result_expires=3600, worker_hijack_root_logger=False,
                broker_connection_retry_on_startup=True, task_serializer="json",
                result_serializer="json", accept_content=["json"])


@app.task
def noop():
    return 1
