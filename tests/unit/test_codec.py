"""Tier 1: the wire codec (ARCHITECTURE.md §2, TESTING.md B1).

Every message type round-trips; decode() raises ProtocolError, and never anything else,
for any frame that is not a valid message.
"""

from __future__ import annotations

import dataclasses
import struct
import typing
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from architect.bus import codec
from architect.bus.errors import BusError, ProtocolError
from architect.bus.messages import REGISTRY

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ROUND = settings(max_examples=80, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow])
FEW = settings(max_examples=15, deadline=None, database=None,
               suppress_health_check=[HealthCheck.too_slow])

TYPES = sorted(REGISTRY)
INT_MIN, UINT_MAX = -(2 ** 63), 2 ** 64 - 1  # what msgpack can carry


# ---------------------------------------------------------------------------------------------
# What each field accepts, worked out here from the annotations (independently of codec.py).

def _accepts(hint) -> tuple | None:
    if hint is Any:
        return None
    if typing.get_origin(hint) is typing.Union:
        out: tuple = ()
        for arg in typing.get_args(hint):
            sub = _accepts(arg)
            if sub is None:
                return None
            out += sub
        return out
    if hint is type(None):
        return (type(None),)
    return {str: (str,), int: (int,), float: (int, float), bool: (bool,),
            dict: (dict,), list: (list,)}[hint]


def fields_of(mtype: str):
    """[(name, accepted types or None for anything, required)] for one message type."""
    cls = REGISTRY[mtype]
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out.append((f.name, _accepts(hints[f.name]), required))
    return out


def is_accepted(value, accepted) -> bool:
    if accepted is None:
        return True
    if isinstance(value, bool):
        return bool in accepted
    return isinstance(value, accepted)


# ---------------------------------------------------------------------------------------------
# Strategies

wire_ints = st.integers(INT_MIN, UINT_MAX)
wire_floats = st.floats(allow_nan=False)
text = st.text(max_size=40)
keys = st.one_of(text, st.binary(max_size=10))  # the keys strict_map_key lets through

# Values that survive a msgpack round trip unchanged and compare equal (no NaN, no tuples).
plain = st.recursive(
    st.one_of(st.none(), st.booleans(), wire_ints, wire_floats, text, st.binary(max_size=40)),
    lambda inner: st.one_of(st.lists(inner, max_size=5),
                            st.dictionaries(keys, inner, max_size=5)),
    max_leaves=15)


def strategy_for(accepted):
    if accepted is None:
        return plain
    options = []
    for kind in accepted:
        options.append({
            str: text,
            int: wire_ints,
            float: wire_floats,
            bool: st.booleans(),
            dict: st.dictionaries(keys, plain, max_size=6),
            list: st.lists(plain, max_size=6),
            type(None): st.none(),
        }[kind])
    return st.one_of(*options)


@st.composite
def messages(draw, mtype: str):
    kwargs = {}
    for name, accepted, required in fields_of(mtype):
        if required or draw(st.booleans()):
            kwargs[name] = draw(strategy_for(accepted))
    return REGISTRY[mtype](**kwargs)


# Arbitrary msgpack-able objects, including what a message must never contain.
ext_types = st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=20))
timestamps = st.builds(msgpack.Timestamp, st.integers(0, 2 ** 34 - 1), st.integers(0, 999_999_999))
any_key = st.one_of(text, st.binary(max_size=8), wire_ints, st.booleans(), st.none(),
                    st.floats(), ext_types)
anything = st.recursive(
    st.one_of(st.none(), st.booleans(), wire_ints, st.sampled_from([INT_MIN, UINT_MAX, 2 ** 63]),
              st.floats(), text, st.binary(max_size=40), ext_types, timestamps),
    lambda inner: st.one_of(st.lists(inner, max_size=6),
                            st.dictionaries(any_key, inner, max_size=6)),
    max_leaves=40)

junk_version = st.one_of(st.just(True), st.just(1.0), st.just("1"), st.just(b"\x01"), anything)
junk_type = st.one_of(st.sampled_from(TYPES), st.sampled_from([t.upper() for t in TYPES]),
                      st.sampled_from([t.encode() for t in TYPES]), anything)


@st.composite
def near_envelopes(draw):
    """Maps that look like messages: a real or junk v/type, each field valid, junk or absent."""
    body: dict = {}
    if draw(st.integers(0, 4)):
        body["v"] = draw(st.one_of(st.just(codec.PROTOCOL_VERSION), junk_version))
    mtype = draw(st.sampled_from(TYPES))
    if draw(st.integers(0, 4)):
        body["type"] = draw(st.one_of(st.just(mtype), junk_type))
    for name, accepted, _required in fields_of(mtype):
        choice = draw(st.integers(0, 3))
        if choice == 1:
            body[name] = draw(strategy_for(accepted))
        elif choice >= 2:
            body[name] = draw(anything)
    body.update(draw(st.dictionaries(any_key, anything, max_size=3)))
    return body


def pack(obj, use_bin_type=True) -> bytes:
    return msgpack.packb(obj, use_bin_type=use_bin_type)


def decode_or_protocol_error(data):
    """decode() either returns a registered message or raises ProtocolError; nothing else."""
    try:
        msg = codec.decode(data)
    except ProtocolError as exc:
        assert str(exc)  # a message someone can read in the log
        return None
    assert type(msg) in REGISTRY.values()
    return msg


def envelope(mtype: str, **fields) -> dict:
    return {"v": codec.PROTOCOL_VERSION, "type": mtype, **fields}


def valid_fields(mtype: str) -> dict:
    """Required fields only, each with a valid value."""
    sample = {str: "x", int: 3, float: 1.5, bool: True, dict: {"a": 1}, list: ["a"],
              type(None): None}
    out = {}
    for name, accepted, required in fields_of(mtype):
        if required:
            out[name] = "any" if accepted is None else sample[accepted[0]]
    return out


# ---------------------------------------------------------------------------------------------
# Registry

def test_registry_is_not_empty_and_keys_match_type():
    assert {"heartbeat", "request", "reply", "event"} <= set(REGISTRY)
    for name, cls in REGISTRY.items():
        assert cls.TYPE == name
        assert dataclasses.is_dataclass(cls)


@pytest.mark.parametrize("mtype", TYPES)
def test_every_message_class_has_its_own_docstring(mtype):
    cls = REGISTRY[mtype]
    doc = cls.__dict__.get("__doc__")
    assert doc and doc.strip()
    # dataclass() invents "Name(field: type, ...)" when a class has none; that does not count
    assert not doc.startswith(f"{cls.__name__}("), f"{cls.__name__} has no written docstring"


@pytest.mark.parametrize("mtype", TYPES)
def test_no_field_collides_with_the_envelope(mtype):
    names = {name for name, _, _ in fields_of(mtype)}
    assert not names & {"v", "type"}


# ---------------------------------------------------------------------------------------------
# Round trips

@pytest.mark.parametrize("mtype", TYPES)
@ROUND
@given(data=st.data())
def test_round_trip(mtype, data):
    msg = data.draw(messages(mtype))
    frame = codec.encode(msg)
    assert isinstance(frame, bytes)
    back = codec.decode(frame)
    assert type(back) is type(msg)
    assert back == msg


@pytest.mark.parametrize("mtype", TYPES)
@FEW
@given(data=st.data())
def test_encoded_envelope_shape(mtype, data):
    msg = data.draw(messages(mtype))
    body = msgpack.unpackb(codec.encode(msg), raw=False)
    assert body["v"] == codec.PROTOCOL_VERSION and not isinstance(body["v"], bool)
    assert body["type"] == mtype
    assert set(body) == {"v", "type"} | {f.name for f in dataclasses.fields(msg)}


@pytest.mark.parametrize("mtype", TYPES)
def test_optional_fields_take_their_defaults(mtype):
    msg = codec.decode(pack(envelope(mtype, **valid_fields(mtype))))
    assert msg == REGISTRY[mtype](**valid_fields(mtype))


def test_float_field_accepts_an_int():
    msg = codec.decode(pack(envelope("event", topic="t", ts=5)))
    assert msg.ts == 5


def test_decode_accepts_bytearray_and_memoryview():
    frame = codec.encode(REGISTRY["event"](topic="node.a.offline", ts=1.0, data={"x": 1}))
    assert codec.decode(bytearray(frame)) == codec.decode(frame)
    assert codec.decode(memoryview(frame)) == codec.decode(frame)


def test_protocol_error_is_a_bus_error():
    assert issubclass(ProtocolError, BusError)


# ---------------------------------------------------------------------------------------------
# Fuzz: only ProtocolError, never another exception (B1)

@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data):
    decode_or_protocol_error(data)


@FUZZ
@given(anything, st.booleans())
def test_random_msgpack_objects(obj, use_bin_type):
    decode_or_protocol_error(pack(obj, use_bin_type))


@FUZZ
@given(near_envelopes(), st.booleans())
def test_near_valid_envelopes(body, use_bin_type):
    msg = decode_or_protocol_error(pack(body, use_bin_type))
    if msg is not None:
        # whatever decodes also re-encodes to the same message
        assert codec.decode(codec.encode(msg)) == msg


@FUZZ
@given(st.sampled_from(TYPES).flatmap(messages), st.data())
def test_mutated_valid_frames(msg, data):
    frame = bytearray(codec.encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        pos = data.draw(st.integers(0, max(len(frame) - 1, 0)))
        if op == "flip" and frame:
            frame[pos] = data.draw(st.integers(0, 255))
        elif op == "truncate":
            del frame[pos:]
        elif op == "insert":
            frame[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and frame:
            del frame[pos]
    decode_or_protocol_error(bytes(frame))


@pytest.mark.parametrize("data", [None, "text", 123, 1.5, [b"x"], {"v": 1}, object()],
                         ids=["None", "str", "int", "float", "list", "dict", "object"])
def test_non_bytes_input(data):
    with pytest.raises(ProtocolError):
        codec.decode(data)


@pytest.mark.parametrize("frame", [
    b"",
    b"\xc1",                          # never-used byte
    b"\x81",                          # truncated map
    b"\xa2\xff\xfe",                  # str with invalid UTF-8
    b"\x82\xa1v\x01\xa4type",         # map missing a value
    b"\xd9\x10abc",                   # str8 with too short payload
    b"\xdf\xff\xff\xff\xff",          # map32 announcing 4 billion entries
    b"\xdd\xff\xff\xff\xff",          # array32 announcing 4 billion entries
], ids=["empty", "c1", "truncated-map", "bad-utf8", "map-missing-value", "short-str8",
        "huge-map-header", "huge-array-header"])
def test_malformed_msgpack(frame):
    with pytest.raises(ProtocolError):
        codec.decode(frame)


def test_trailing_bytes_after_a_valid_frame():
    frame = codec.encode(REGISTRY["event"](topic="t", ts=1.0))
    with pytest.raises(ProtocolError):
        codec.decode(frame + b"\xc0")


@pytest.mark.parametrize("depth", [100, 1_000, 10_000, 200_000])
@pytest.mark.parametrize("opener", [b"\x91", b"\x81\xa1k"], ids=["arrays", "maps"])
def test_deep_nesting(opener, depth):
    decode_or_protocol_error(opener * depth + b"\xc0")


@pytest.mark.parametrize("depth", [10, 500, 2_000])
def test_deep_nesting_inside_a_valid_envelope(depth):
    head = pack({"v": 1, "type": "request", "method": "m"})
    # same map with one more entry: "id" -> [[[...nil...]]]
    frame = bytes([head[0] + 1]) + head[1:] + pack("id") + b"\x91" * depth + b"\xc0"
    decode_or_protocol_error(frame)


def test_ext_types_are_rejected_anywhere():
    for where in ({"v": msgpack.ExtType(1, b"x"), "type": "event", "topic": "t", "ts": 1.0},
                  envelope("request", id=msgpack.ExtType(5, b"abc"), method="m"),
                  envelope("request", id=1, method="m", params={"a": [msgpack.ExtType(0, b"")]}),
                  envelope("event", topic="t", ts=1.0, data={"k": msgpack.ExtType(127, b"z")})):
        with pytest.raises(ProtocolError, match="ext"):
            codec.decode(pack(where))


@pytest.mark.parametrize("where", ["id", "params"])
def test_timestamp_ext_type_is_rejected(where):
    ts = msgpack.Timestamp(5, 0)     # packs as fixext4, type -1: d6 ff 00 00 00 05
    body = envelope("request", id=ts if where == "id" else 1, method="m",
                    params={"when": ts} if where == "params" else {})
    with pytest.raises(ProtocolError):
        codec.decode(pack(body))


def test_bytes_and_int_map_keys():
    # int keys are refused by strict_map_key; bytes keys are not a "v"/"type" key
    with pytest.raises(ProtocolError):
        codec.decode(pack({1: 1, "v": 1, "type": "event", "topic": "t", "ts": 1.0}))
    with pytest.raises(ProtocolError):
        codec.decode(pack({b"v": 1, b"type": "event", b"topic": "t", b"ts": 1.0}))
    with pytest.raises(ProtocolError):
        codec.decode(pack(envelope("event", topic="t", ts=1.0, data={3: "x"})))


@pytest.mark.parametrize("value", [UINT_MAX, INT_MIN, 2 ** 63])
def test_huge_ints(value):
    decode_or_protocol_error(pack(envelope("heartbeat", name="n", ts=value, metrics={},
                                           seq=value)))
    decode_or_protocol_error(pack(envelope("request", id=value, method="m")))


# ---------------------------------------------------------------------------------------------
# Envelope

@pytest.mark.parametrize("body", [None, True, 1, 1.5, "heartbeat", b"\x01", [],
                                  [1, "event", "t", 1.0], [{"v": 1, "type": "event"}]],
                         ids=["nil", "bool", "int", "float", "str", "bin", "empty-list",
                              "list", "list-of-map"])
def test_non_map_envelope(body):
    with pytest.raises(ProtocolError, match="not a map"):
        codec.decode(pack(body))


def test_empty_map():
    with pytest.raises(ProtocolError):
        codec.decode(pack({}))


@pytest.mark.parametrize("mtype", TYPES)
def test_missing_v(mtype):
    body = envelope(mtype, **valid_fields(mtype))
    del body["v"]
    with pytest.raises(ProtocolError, match="version"):
        codec.decode(pack(body))


@pytest.mark.parametrize("version", [
    0, 2, -1, 255, 2 ** 63, UINT_MAX, True, False, None, "1", "v1", b"\x01", [1], {"v": 1},
    1.5, msgpack.ExtType(1, b"\x01"),
    1.0,
], ids=lambda v: repr(v))
def test_wrong_v(version):
    body = {"v": version, "type": "event", "topic": "t", "ts": 1.0}
    with pytest.raises(ProtocolError):
        codec.decode(pack(body))


@pytest.mark.parametrize("mtype", ["", "nope", "HEARTBEAT", "Heartbeat", "heartbeat ",
                                   "__init__", "TYPE", None, 1, True, 1.5, b"heartbeat",
                                   ["heartbeat"], {"t": "heartbeat"}])
def test_unknown_type(mtype):
    body = {"v": 1, "type": mtype, "name": "n", "ts": 1.0, "metrics": {}}
    with pytest.raises(ProtocolError, match="type"):
        codec.decode(pack(body))


def test_missing_type():
    with pytest.raises(ProtocolError):
        codec.decode(pack({"v": 1, "name": "n", "ts": 1.0, "metrics": {}}))


def _required_cases():
    for mtype in TYPES:
        for name, _accepted, required in fields_of(mtype):
            if required:
                yield pytest.param(mtype, name, id=f"{mtype}.{name}")


@pytest.mark.parametrize("mtype,field", list(_required_cases()))
def test_missing_required_field(mtype, field):
    body = envelope(mtype, **valid_fields(mtype))
    del body[field]
    with pytest.raises(ProtocolError, match=field):
        codec.decode(pack(body))


WRONG_VALUES = ["s", 7, 1.5, True, False, None, [1], {"k": 1}, b"bin"]


def _mistyped_cases():
    for mtype in TYPES:
        for name, accepted, _required in fields_of(mtype):
            for value in WRONG_VALUES:
                if not is_accepted(value, accepted):
                    yield pytest.param(mtype, name, value, id=f"{mtype}.{name}={value!r}")


@pytest.mark.parametrize("mtype,field,value", list(_mistyped_cases()))
def test_mistyped_field(mtype, field, value):
    body = envelope(mtype, **valid_fields(mtype))
    body[field] = value
    with pytest.raises(ProtocolError, match=field):
        codec.decode(pack(body))


def test_bool_where_int_or_float_expected():
    for field, value in (("seq", True), ("ts", False)):
        body = envelope("heartbeat", name="n", ts=1.0, metrics={})
        body[field] = value
        with pytest.raises(ProtocolError, match=field):
            codec.decode(pack(body))
    with pytest.raises(ProtocolError, match="ok"):
        codec.decode(pack(envelope("reply", id=1, ok=1)))


def test_mistyped_cases_cover_every_typed_field():
    typed = {(m, n) for m in TYPES for n, acc, _ in fields_of(m) if acc is not None}
    covered = {(p.values[0], p.values[1]) for p in _mistyped_cases()}
    assert typed == covered


# ---------------------------------------------------------------------------------------------
# Size limit

def frame_of_size(size: int) -> bytes:
    """A valid request frame of exactly `size` bytes."""
    pad = 0
    for _ in range(10):
        frame = pack(envelope("request", id=1, method="m", params={"pad": "x" * pad}))
        if len(frame) == size:
            return frame
        pad += size - len(frame)
        pad = max(pad, 0)
    raise AssertionError(f"could not build a frame of {size} bytes")


def test_frame_at_the_default_limit_decodes():
    frame = frame_of_size(codec.MAX_MESSAGE_SIZE)
    assert codec.MAX_MESSAGE_SIZE == 1 << 20
    assert codec.decode(frame).method == "m"


def test_frame_over_the_default_limit():
    frame = frame_of_size(codec.MAX_MESSAGE_SIZE + 1)
    with pytest.raises(ProtocolError, match="limit"):
        codec.decode(frame)


@pytest.mark.parametrize("extra", [1, 100, 1 << 20])
def test_frame_over_a_given_max_size(extra):
    frame = frame_of_size(2000)
    assert codec.decode(frame, max_size=2000)
    with pytest.raises(ProtocolError, match="limit"):
        codec.decode(frame, max_size=2000 - extra if extra < 2000 else 1)
    with pytest.raises(ProtocolError):
        codec.decode(b"\xc0" * (2000 + extra), max_size=2000)


def test_oversized_garbage_is_refused_before_unpacking():
    with pytest.raises(ProtocolError, match="limit"):
        codec.decode(b"\x91" * (codec.MAX_MESSAGE_SIZE + 1))
