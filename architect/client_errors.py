"""The Python client's errors (architect.client re-exports them: import them from there).

    ArchitectError
    ├── BrokerUnavailable   no answer from the broker within the timeout, or no bus found
    │   └── KeyPending      the bus is secured and this client's key waits to be accepted
    ├── RequestRejected     the broker refused the request (.code, .message)
    │   └── NotFound        no such task / node
    ├── WaitTimeout         the task was not final when the wait ended (.task)
    └── TaskFailed          map(): a task ended other than succeeded (.task)
"""

from __future__ import annotations


class ArchitectError(Exception):
    pass


class BrokerUnavailable(ArchitectError):
    pass


class KeyPending(BrokerUnavailable):
    def __init__(self, name: str):
        super().__init__("the bus is secured and this client's key is pending: set "
                         "ARCHITECT_USER/PASSWORD or accept it on the master")
        self.name = name  # the key to accept: `architect keys accept NAME`


class RequestRejected(ArchitectError):
    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


class NotFound(RequestRejected):
    pass


class WaitTimeout(ArchitectError):
    def __init__(self, task: dict | list):
        super().__init__("the task did not finish in time")
        self.task = task


class TaskFailed(ArchitectError):
    def __init__(self, task: dict):
        super().__init__(f"task {task['id']} {task['status']}: {task.get('error')}")
        self.task = task
