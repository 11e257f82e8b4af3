"""Where the bus is (architect/bus/transport.py: one place) and the broker's ipc folder
(architect/bus/localbus.py): the choice, the long-path fallback, the lock, stale sockets."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
from pathlib import Path

import pytest
import zmq

from architect.bus import localbus
from architect.bus.transport import (Endpoints, bind_endpoints, bus_endpoints,
                                     connect_endpoints, local_bus_dir)
from architect.config import Config


def test_ipc_endpoints_name_the_four_sockets(tmp_path):
    ep = Endpoints.ipc(tmp_path)
    assert ep.as_dict() == {n: f"ipc://{tmp_path}/{n}"
                            for n in ("heartbeat", "work", "control", "events")}
    assert ep.describe() == f"ipc://{tmp_path}/{{heartbeat,work,control,events}}"
    assert Endpoints("::1", 6000).control == "tcp://[::1]:6002"
    assert Endpoints("127.0.0.1").describe() == "127.0.0.1:5555-5558"


def test_local_bus_dir_inside_the_data_dir_or_the_tmp_fallback(tmp_path):
    assert local_bus_dir(tmp_path / "data") == Path(os.path.realpath(tmp_path)) / "data" / "bus"
    link = tmp_path / "link"
    link.symlink_to(tmp_path, target_is_directory=True)
    assert local_bus_dir(link / "data") == local_bus_dir(tmp_path / "data")  # symlinks resolved
    deep = tmp_path / ("x" * 120)
    digest = hashlib.sha256(os.fsencode(os.path.realpath(deep))).hexdigest()[:12]
    assert local_bus_dir(deep) == Path(f"/tmp/architect-{os.getuid()}-{digest}")
    assert local_bus_dir(deep) == local_bus_dir(str(deep))  # deterministic
    # the longest socket path that still fits stays inside; one byte more moves out
    base = str(Path(os.path.realpath(tmp_path)))
    room = 107 - len(base) - len("/bus/heartbeat") - 1
    fits = Path(base) / ("f" * room)
    assert local_bus_dir(fits) == fits / "bus"
    assert len(str(fits / "bus" / "heartbeat")) == 107
    assert local_bus_dir(Path(base) / ("f" * (room + 1))).parent == Path("/tmp")


@pytest.mark.parametrize("host, local, curve, ipc", [
    ("127.0.0.1", "ipc", False, True), ("localhost", "ipc", False, True),
    ("::1", "ipc", False, True), ("127.0.0.1", "tcp", False, False),
    ("127.0.0.1", "ipc", True, False), ("0.0.0.0", "ipc", False, False),
    ("10.0.0.5", "ipc", True, False)])
def test_what_the_broker_binds(tmp_path, host, local, curve, ipc):
    ep = bind_endpoints(host, 7000, data_dir=tmp_path, bus_local=local, curve=curve)
    assert (ep.ipc_dir is not None) is ipc
    if not ipc:
        assert ep == Endpoints(host, 7000)


def test_config_callers_use_the_same_choice(tmp_path):
    cfg = Config(data_dir=str(tmp_path)).validate()
    assert bus_endpoints(cfg) == Endpoints.ipc(local_bus_dir(tmp_path))
    cfg = Config(data_dir=str(tmp_path), bus_curve="on").validate()
    assert bus_endpoints(cfg) == Endpoints("127.0.0.1", 5555)
    cfg = Config(data_dir=str(tmp_path), bus_local="tcp").validate()
    assert bus_endpoints(cfg) == Endpoints("127.0.0.1", 5555)
    cfg = Config(data_dir=str(tmp_path), bus_host="0.0.0.0").validate()
    assert bus_endpoints(cfg) == Endpoints("0.0.0.0", 5555)


def test_clients_pick_ipc_only_when_the_control_socket_is_there(tmp_path):
    def pick(**kw):
        return connect_endpoints("127.0.0.1", 7000, data_dir=tmp_path, **kw)
    assert pick() == Endpoints("127.0.0.1", 7000)          # no broker yet: tcp, as before
    bus = local_bus_dir(tmp_path)
    bus.mkdir()
    (bus / "control").write_text("not a socket")
    assert pick() == Endpoints("127.0.0.1", 7000)
    (bus / "control").unlink()
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(bus / "control"))
        assert pick() == Endpoints.ipc(bus)
        assert pick(bus_local="tcp") == Endpoints("127.0.0.1", 7000)
        assert connect_endpoints("10.0.0.5", 7000, data_dir=tmp_path) == Endpoints("10.0.0.5", 7000)


def test_prepare_makes_a_private_folder_and_locks_it(tmp_path):
    bus = tmp_path / "data" / "bus"
    bus.mkdir(parents=True, mode=0o777)
    os.chmod(bus, 0o777)
    lock = localbus.prepare(bus)
    try:
        assert stat.S_IMODE(os.stat(bus).st_mode) == 0o700
        assert localbus.in_use(bus)
        with pytest.raises(localbus.LocalBusError, match="another broker .* is using the bus"):
            localbus.prepare(bus)
    finally:
        localbus.release(bus, lock)
    assert not localbus.in_use(bus)
    localbus.release(bus, localbus.prepare(bus))  # free again


def test_prepare_refuses_a_symlink(tmp_path):
    real = tmp_path / "elsewhere"
    real.mkdir()
    (tmp_path / "bus").symlink_to(real)
    with pytest.raises(localbus.LocalBusError, match="must be a folder"):
        localbus.prepare(tmp_path / "bus")


def test_stale_socket_files_are_removed_and_bound_again(tmp_path):
    """libzmq unlinks the path on bind and leaves it on close; the lock keeps a second
    broker from taking over a live one's sockets (bind alone would)."""
    bus = tmp_path / "bus"
    lock = localbus.prepare(bus)
    ctx = zmq.Context()
    try:
        first = ctx.socket(zmq.ROUTER)
        first.bind(Endpoints.ipc(bus).control)
        first.close(0)
        assert stat.S_ISSOCK(os.lstat(bus / "control").st_mode)  # left behind on close
        localbus.release(bus, lock)
        assert not (bus / "control").exists()                     # release removes it
        lock = localbus.prepare(bus)
        with socket.socket(socket.AF_UNIX) as s:  # a socket file nobody listens on, as a
            s.bind(str(bus / "control"))         # killed broker leaves (and its lock goes)
        localbus.release(bus, lock, remove=False)
        lock = localbus.prepare(bus)             # removes it; binding the path works again
        assert not (bus / "control").exists()
        again = ctx.socket(zmq.ROUTER)
        again.bind(Endpoints.ipc(bus).control)
        again.close(0)
    finally:
        localbus.release(bus, lock)
        ctx.term()


def test_a_tcp_broker_clears_stale_sockets_but_not_a_live_ones(tmp_path):
    bus = tmp_path / "bus"
    lock = localbus.prepare(bus)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(bus / "control"))
    localbus.clear_stale(bus)                 # held by a broker: left alone
    assert (bus / "control").exists()
    localbus.release(bus, lock, remove=False)
    localbus.clear_stale(bus)                 # nobody holds it: stale, removed
    assert not (bus / "control").exists()


def test_why_unreachable_says_why(tmp_path):
    assert localbus.why_unreachable({"control": "tcp://127.0.0.1:1"}) is None
    kind, text = localbus.why_unreachable({"control": f"ipc://{tmp_path}/none/control"})
    assert kind == "absent" and "only on the master" in text
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "control"))
        s.listen()
        assert localbus.why_unreachable({"control": f"ipc://{tmp_path}/control"}) is None
    # a stale file: zmq reconnects by itself once the broker is back
    assert localbus.why_unreachable({"control": f"ipc://{tmp_path}/control"}) is None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kind, text = localbus.why_unreachable({"control": f"tcp://127.0.0.1:{port}"},
                                          tmp_path / "bus", ("127.0.0.1", port))
    assert kind == "waiting" and "no broker yet" in text
