"""The notify.*, silence.* and node.maintenance control methods (issue 14), and the broker's
duty each loop turn: hand new messages to the delivery threads, take their results back.

Roles (ARCHITECTURE.md §10): reading is for viewers (channel secrets shown to admins only);
channels and rules are configuration (admin); silences and maintenance are for operators.
Secrets given to notify.channel.add (a webhook or apprise URL, header values, the SMTP
password) are replaced by their redacted form in the params, so the audit row keeps none.
"""

from __future__ import annotations

import re

from architect.broker import notify_channels as C
from architect.broker.methods import ADMIN, read, write
from architect.broker.notify import LEVELS, Channel, NotifyBook, Rule
from architect.broker.notify_channels import Deliverer
from architect.broker.params import NotFound, RequestError, get
from architect.broker.persist import Stream

MAX_CHANNELS, MAX_RULES, MAX_SILENCES = 200, 500, 10_000
MAX_SPAN = 366 * 86400.0
DURATION_RE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([smhd]?)$")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
RESERVED = ("name", "kind", "replace")
RULE_KEYS = frozenset({"name", "channels", "min_level", "node", "match", "repeat_interval",
                       "send_resolved", "replace"})
SILENCE_KEYS = frozenset({"node", "match", "duration", "ends_at", "starts_at", "comment"})


def init_notify(b, now: float) -> None:
    cfg = b.config
    url = cfg.external_url or f"http://{cfg.host}:{cfg.port}"
    b.notify = NotifyBook(cfg.notify_attempts, cfg.notify_backoff, url)
    b.notify.node_labels = lambda name: getattr(b.registry.by_name.get(name or ""), "labels",
                                                None)
    b.notify.load(b.store.load_notify(now), list(b.alerts.by_id.values()), now,
                  alert_of=lambda alert_id: b.alerts.by_id.get(alert_id) or
                  b.store.alert(alert_id))
    b.deliverer = Deliverer(cfg.notify_workers, cfg.notify_queue, cfg.notify_timeout)


def notify_stream(b) -> Stream:
    return Stream("notify", b.notify, lambda st, taken: st.save_notify(taken))


def on_alert(b, data: dict) -> None:
    """Every `alert.<id>` event (Broker.emit): opened, resolved, acknowledged."""
    when = data.get({"resolved": "resolved_at", "acknowledged": "acknowledged_at"}.get(
        data.get("action"), "created_at"))
    b.notify.on_alert(data, when if isinstance(when, (int, float)) else None)


def tick_notify(b, now: float) -> None:
    book = b.notify
    for job, error, note, started, ended in b.deliverer.take_results():
        book.result(job, error, note, started, ended)
        b.counters.inc("notify_sent" if error is None else "notify_failed")
    book.tick(now)
    for job in book.take_outbox():
        if not b.deliverer.submit(job):
            book.dropped(job, f"the delivery queue is full ({b.config.notify_queue} waiting)",
                         now)
            b.counters.inc("notify_dropped")


def close_notify(b) -> None:
    deliverer = getattr(b, "deliverer", None)
    if deliverer is not None:
        deliverer.close()


# --- parsing ------------------------------------------------------------------------------

def duration(value, name: str) -> float:
    """Seconds from a number or '30s', '15m', '2h', '1d'."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and DURATION_RE.match(value.strip()):
        m = DURATION_RE.match(value.strip())
        seconds = float(m.group(1)) * UNITS[m.group(2)]
    else:
        raise RequestError(f"'{name}' must be seconds or a duration like 30m, 2h, 1d")
    if not 0 <= seconds <= MAX_SPAN:
        raise RequestError(f"'{name}' must be 0 s - 366 days")
    return seconds


def matchers(params: dict) -> dict:
    match = get(params, "match", dict, {})
    if len(match) > 20 or not all(isinstance(k, str) and isinstance(v, str)
                                  and 0 < len(v) <= 200 for k, v in match.items()):
        raise RequestError("'match' maps at most 20 label names to globs (strings of "
                           "1-200 characters)")
    return dict(match)


def _only(params: dict, keys: frozenset) -> None:
    extra = sorted(set(params) - keys)
    if extra:
        raise RequestError(f"unknown parameter {', '.join(map(repr, extra))} (known: "
                           f"{', '.join(sorted(keys))})")


def glob(params: dict, name: str, default):
    value = get(params, name, str, default)
    if value is not None and not 0 < len(value) <= 200:
        raise RequestError(f"'{name}' must be a glob of 1-200 characters")
    return value


def _scrub(params: dict) -> None:
    """The audit row must not keep a channel's secrets (the audit redacts `password`)."""
    if isinstance(params.get("url"), str):
        # a webhook keeps scheme://host:port (its token is in the path); an apprise URL
        # only its scheme (apprise puts tokens in the host part: pover://user@token)
        kind = "webhook" if params.get("kind") == "webhook" else "apprise"
        params["url"] = C.redacted(kind, {"url": params["url"]})["url"]
    if isinstance(params.get("headers"), dict):
        params["headers"] = {str(k): C.HIDDEN for k in params["headers"]}


# --- channels -----------------------------------------------------------------------------

def channel_list(b, params, ctx):
    """{} → [{name, kind, config, redacted, created_at, created_by}] by name; `config`
    has its secrets only for an admin."""
    secrets = ctx.caller.role == ADMIN
    return [b.notify.channels[n].public(secrets) for n in sorted(b.notify.channels)]


def channel_add(b, params, ctx):
    """{name, kind: webhook|email|apprise, replace?, ...settings} → the channel (redacted).
    webhook: url, headers?; email: host, port?, from, to, starttls?, ssl?, username?,
    password?; apprise: url. Any: timeout? (seconds)."""
    settings = {k: v for k, v in params.items() if k not in RESERVED}
    _scrub(params)
    try:
        name = C.check_name(params.get("name"))
        config = C.check(params.get("kind"), settings)
    except C.ChannelError as exc:
        raise RequestError(str(exc)) from None
    replace = get(params, "replace", bool, False)
    if name in b.notify.channels and not replace:
        raise RequestError(f"a channel named {name!r} exists (replace: true to change it)",
                           code="conflict")
    if name not in b.notify.channels and len(b.notify.channels) >= MAX_CHANNELS:
        raise RequestError(f"at most {MAX_CHANNELS} channels")
    ch = Channel(name, params["kind"], config, ctx.now, ctx.caller.name)
    b.notify.set_channel(ch)
    return ch.public(False)


def channel_remove(b, params, ctx):
    """{name} → {name, removed: true}; refused while a rule sends to it."""
    name = get(params, "name", str)
    if name not in b.notify.channels:
        raise NotFound(f"no channel {name!r}")
    users = sorted(r.name for r in b.notify.rules.values() if name in r.channels)
    if users:
        raise RequestError(f"rules send to channel {name!r}: {', '.join(users)}; remove them "
                           "or their use of it first", code="conflict")
    b.notify.remove_channel(name)
    return {"name": name, "removed": True}


def channel_test(b, params, ctx):
    """{name} → {name, delivery}: a test message goes out now; its attempts are in
    notify.deliveries (delivery = this id)."""
    name = get(params, "name", str)
    ch = b.notify.channels.get(name)
    if ch is None:
        raise NotFound(f"no channel {name!r}")
    return {"name": name, "delivery": b.notify.test(ch, ctx.caller.name, ctx.now)}


# --- rules --------------------------------------------------------------------------------

def rule_list(b, params, ctx):
    """{} → [rule] by name."""
    return [b.notify.rules[n].public() for n in sorted(b.notify.rules)]


def rule_add(b, params, ctx):
    """{name, channels: [name], min_level? (warning|critical), node? (glob, *), match?
    ({label: glob}), repeat_interval? (seconds or 30m; 0: never), send_resolved? (true),
    replace?} → the rule."""
    try:
        name = C.check_name(params.get("name"))
    except C.ChannelError as exc:
        raise RequestError(str(exc)) from None
    channels = get(params, "channels", list)
    if not 1 <= len(channels) <= 20 or not all(isinstance(c, str) for c in channels):
        raise RequestError("'channels' must name 1-20 channels")
    missing = [c for c in channels if c not in b.notify.channels]
    if missing:
        raise RequestError(f"no channel {', '.join(map(repr, missing))}", code="not_found")
    level = get(params, "min_level", str, "warning")
    if level not in LEVELS:
        raise RequestError(f"'min_level' must be one of {', '.join(LEVELS)}")
    _only(params, RULE_KEYS)
    repeat = params.get("repeat_interval")
    repeat = 0.0 if repeat is None else duration(repeat, "repeat_interval")
    replace = get(params, "replace", bool, False)
    if name in b.notify.rules and not replace:
        raise RequestError(f"a rule named {name!r} exists (replace: true to change it)",
                           code="conflict")
    if name not in b.notify.rules and len(b.notify.rules) >= MAX_RULES:
        raise RequestError(f"at most {MAX_RULES} rules")
    rule = Rule(name, list(dict.fromkeys(channels)), level, glob(params, "node", "*"),
                matchers(params), repeat, get(params, "send_resolved", bool, True),
                ctx.now, ctx.caller.name)
    b.notify.set_rule(rule)
    return rule.public()


def rule_remove(b, params, ctx):
    """{name} → {name, removed: true}."""
    name = get(params, "name", str)
    if name not in b.notify.rules:
        raise NotFound(f"no rule {name!r}")
    b.notify.remove_rule(name)
    return {"name": name, "removed": True}


# --- deliveries ---------------------------------------------------------------------------

def deliveries(b, params, ctx):
    """{channel?, outcome? (sent|failed|silenced), alert_id?, delivery?, limit? (100)} →
    delivery attempts newest first: {id, delivery, attempt, channel, kind, event, rule,
    alert_id, node, outcome, error, detail, at, duration, retry_at}."""
    limit = get(params, "limit", int, 100)
    if not 1 <= limit <= 10_000:
        raise RequestError("'limit' must be 1-10000")
    outcome = get(params, "outcome", str, None)
    if outcome not in (None, "sent", "failed", "silenced"):
        raise RequestError("'outcome' must be sent, failed or silenced")
    return b.store.notifications(get(params, "channel", str, None), outcome,
                                 get(params, "alert_id", int, None),
                                 get(params, "delivery", int, None), limit)


def status(b, params, ctx):
    """{} → {queued, in_flight, retrying, firing, channels, rules, silences, counters}."""
    now = ctx.now
    book = b.notify
    return {"queued": b.deliverer.depth(), "in_flight": book.in_flight,
            "retrying": len(book.retries), "firing": len(book.firing),
            "channels": len(book.channels), "rules": len(book.rules),
            "silences": sum(1 for s in book.silences.values() if s.active(now)),
            "counters": {k: v for k, v in b.counters.items() if k.startswith("notify_")}}


# --- silences and maintenance ----------------------------------------------------------------

def silence_add(b, params, ctx):
    """{node? (glob), match? ({label: glob}), duration? (2h) | ends_at?, starts_at?,
    comment} → the silence. Give node or match; the comment says why."""
    _only(params, SILENCE_KEYS)
    node, match = glob(params, "node", None), matchers(params)
    if node is None and not match:
        raise RequestError("a silence needs 'node' (a glob) or 'match' (label globs)")
    comment = get(params, "comment", str, "").strip()
    if not 0 < len(comment) <= 500:
        raise RequestError("'comment' is required (at most 500 characters): say why")
    starts = float(get(params, "starts_at", float, ctx.now))
    if params.get("ends_at") is not None:
        ends = float(get(params, "ends_at", float))
        if params.get("duration") is not None:
            raise RequestError("give 'duration' or 'ends_at', not both")
    else:
        ends = starts + duration(get(params, "duration", (int, float, str), "1h"), "duration")
    if not ends > starts or ends - starts > MAX_SPAN or ends <= ctx.now:
        raise RequestError("a silence must end after it starts, in the future, within "
                           "366 days")
    if len(b.notify.silences) >= MAX_SILENCES:
        raise RequestError(f"at most {MAX_SILENCES} silences at once")
    s = b.notify.add_silence(node=node, match=match, starts_at=starts, ends_at=ends,
                             comment=comment, created_by=ctx.caller.name, created_at=ctx.now)
    return s.public(ctx.now)


def silence_list(b, params, ctx):
    """{all?: bool} → silences newest first: active and pending (all: expired too)."""
    if get(params, "all", bool, False):
        from architect.broker.notify import Silence
        return [Silence(**row).public(ctx.now) for row in b.store.silence_history(1000)]
    return [s.public(ctx.now) for s in sorted(b.notify.silences.values(), key=lambda s: -s.id)
            if s.ends_at is None or s.ends_at > ctx.now]


def silence_remove(b, params, ctx):
    """{id} → the silence, expired now (its row stays in the history)."""
    sid = get(params, "id", int)
    s = b.notify.silences.get(sid)
    if s is None:
        raise NotFound(f"no silence {sid} (or it has expired)")
    return b.notify.expire_silence(s, ctx.now).public(ctx.now)


def node_maintenance(b, params, ctx):
    """{node, on: bool, duration? (until turned off), comment?} → {node, maintenance,
    drained, silences}: on drains the node and silences its alerts; off undoes both."""
    from architect.broker.handlers import _node, _set_drained
    node = _node(b, params)
    on = get(params, "on", bool)
    mine = [s for s in b.notify.silences.values() if s.kind == "maintenance"
            and s.node == node.name and s.active(ctx.now)]
    if on:
        span = params.get("duration")
        span = 0.0 if span is None else duration(span, "duration")
        ends = ctx.now + span if span else None     # 0 or none: until turned off
        comment = get(params, "comment", str, "") or "maintenance"
        if len(comment) > 500:
            raise RequestError("'comment' is at most 500 characters")
        if not mine:
            mine = [b.notify.add_silence(node=node.name, match={}, starts_at=ctx.now,
                                         ends_at=ends, comment=comment,
                                         created_by=ctx.caller.name, created_at=ctx.now,
                                         kind="maintenance")]
        public = _set_drained(b, {"node": node.name}, ctx.now, True)
    else:
        for s in mine:
            b.notify.expire_silence(s, ctx.now)
        public = _set_drained(b, {"node": node.name}, ctx.now, False)
        mine = []
    return {"node": node.name, "maintenance": on, "drained": public["drained"],
            "silences": [s.public(ctx.now) for s in mine]}


NOTIFY_METHODS = {
    "notify.channels": read(channel_list),
    "notify.channel.add": write(channel_add, ADMIN),
    "notify.channel.remove": write(channel_remove, ADMIN),
    "notify.channel.test": write(channel_test, ADMIN),
    "notify.rules": read(rule_list),
    "notify.rule.add": write(rule_add, ADMIN),
    "notify.rule.remove": write(rule_remove, ADMIN),
    "notify.deliveries": read(deliveries),
    "notify.status": read(status),
    "silence.add": write(silence_add),
    "silence.list": read(silence_list),
    "silence.remove": write(silence_remove),
    "node.maintenance": write(node_maintenance),
}
