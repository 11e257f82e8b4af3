import threading

import pytest

from architect import config as config_mod
from architect.broker.core import Broker
from architect.broker.loop import BrokerLoop
from architect.bus.rpc import RpcClient
from architect.bus.transport import Endpoints
from tests.helpers import free_port_block


class InProcessBroker:
    """A BrokerLoop on its own thread with real sockets on free loopback ports."""

    def __init__(self, tmp_path, **settings):
        self.base = free_port_block(4)
        env = {"ARCHITECT_DATA_DIR": str(tmp_path / "data"), "ARCHITECT_BUS_PORT": str(self.base)}
        self.config = config_mod.load(settings, env=env, config_file=tmp_path / "none.json")
        self.endpoints = Endpoints("127.0.0.1", self.base)
        self.loop = BrokerLoop(Broker(self.config), self.endpoints)
        self.thread = threading.Thread(target=self.loop.run, daemon=True)
        self.thread.start()
        self.rpc = RpcClient(self.endpoints.control, timeout=3)

    def stop(self):
        self.rpc.close()
        self.loop.stop()
        self.thread.join(5)


@pytest.fixture
def broker(tmp_path):
    b = InProcessBroker(tmp_path, heartbeat_interval=0.2, heartbeat_timeout=1.0)
    yield b
    b.stop()
