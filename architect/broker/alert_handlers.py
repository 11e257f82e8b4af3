"""Per-node thresholds and custom alert rules: the control methods, and the broker's glue
(init, the samples and the tick) between alert_rules.AlertConfig and the AlertBook.

Reads for viewers; writes for admins: a threshold or a rule decides what pages people for
the whole cluster (raising one can hide a real problem), so it is configuration
(methods.py: "admin configures"), like keys and users, not operations like drain.

Every alert opened or resolved here reaches Broker.alert_events, which emits it as
`alert.<id>` {"action": "opened" | "resolved", **alert}, as level alerts are.
"""

from __future__ import annotations

from architect.broker import alert_rules as R
from architect.broker.alerts import RULE
from architect.broker.handlers import _node
from architect.broker.methods import ADMIN, read, write
from architect.broker.params import NotFound, RequestError, get
from architect.broker.persist import Stream

RULE_CHECK_INTERVAL = 0.5   # seconds between checks of `for` timers and heartbeat_age rules


# --- the broker's glue ------------------------------------------------------------------------
def init(b) -> None:
    """Load the rules and node thresholds (Broker.__init__)."""
    b.alert_config = R.AlertConfig()
    rules, thresholds = b.store.load_alert_config()
    b.alert_config.load(rules, thresholds)
    b.registry.node_thresholds = b.alert_config.thresholds(b.registry.thresholds)
    b._next_rule_check = 0.0


def config_stream(b) -> Stream:
    return Stream("alert_config", b.alert_config,
                  lambda st, taken: st.save_alert_config(taken), urgent=True)


def _apply(b, decisions, now: float) -> list[tuple[dict, str]]:
    out = []
    for verb, rule, node, value in decisions:
        if verb == "fire":
            alert = b.alerts.open_rule(rule.name, node, rule.level, [rule.describe(value)],
                                       f"{node.name}: {rule.describe(value)} "
                                       f"({rule.level})", now)
            if alert is not None:
                out.append((alert, "opened"))
        else:
            name = rule.name if rule is not None else value
            node_id = node.id if node is not None else None
            if node_id is None:   # the node is gone: its open rule alerts
                keys = [k for k in b.alerts.rule_open if k[0] == name
                        and k[1] not in b.registry.by_id]
            else:
                keys = [(name, node_id)]
            for key in keys:
                alert = b.alerts.resolve_rule(key[0], key[1], now)
                if alert is not None:
                    out.append((alert, "resolved"))
    return out


def on_sample(b, node, now: float) -> list[tuple[dict, str]]:
    """A node agent's heartbeat: its metric rules (cached per node; no database)."""
    cfg = b.alert_config
    if not cfg.rules:
        return []
    found = cfg.sample(node, now, b.alerts.rule_open)
    return _apply(b, [(verb, rule, node, value) for verb, rule, value in found], now)


def tick(b, now: float) -> list[tuple[dict, str]]:
    """`for` timers that ran out, heartbeat_age rules, and flapping nodes that are stable."""
    if now < b._next_rule_check:
        return []
    b._next_rule_check = now + RULE_CHECK_INTERVAL
    out = b.alerts.tick(b.registry.by_id, now)
    if b.alert_config.rules or b.alerts.rule_open:
        out += _apply(b, b.alert_config.tick(b.registry.by_id, now, b.alerts.rule_open), now)
    return out


def node_removed(b, node) -> None:
    b.alert_config.node_removed(node.name, node.id)
    b.registry.node_thresholds.pop(node.name, None)


# --- control methods -------------------------------------------------------------------------


def _thresholds_out(b, node) -> dict:
    overrides = b.alert_config.overrides.get(node.name, {})
    updated_at, updated_by = b.alert_config.override_meta.get(node.name, (None, None))
    return {"node": node.name, "overrides": overrides,
            "thresholds": b.registry.thresholds_for(node).as_dict(),
            "defaults": b.registry.thresholds.as_dict(),
            "updated_at": updated_at, "updated_by": updated_by}


def node_thresholds(b, params, ctx):
    """{node} → {node, overrides: {metric: {warning?, critical?}}, thresholds (what grades
    it: the defaults with its overrides), defaults, updated_at, updated_by}."""
    return _thresholds_out(b, _node(b, params))


def node_set_thresholds(b, params, ctx):
    """{node, thresholds: {cpu|memory|disk|load: {warning?, critical?} | null}} → as
    node.thresholds. Replaces the node's overrides ({} : none, the defaults again); they
    grade its next samples (through the hysteresis) and are kept in the database."""
    node = _node(b, params)
    try:
        overrides = R.check_overrides(get(params, "thresholds", dict), b.registry.thresholds)
    except R.RuleError as exc:
        raise RequestError(str(exc)) from None
    b.alert_config.set_overrides(node.name, overrides, ctx.now, ctx.caller.name)
    if overrides:
        b.registry.node_thresholds[node.name] = R.apply_overrides(b.registry.thresholds,
                                                                  overrides)
    else:
        b.registry.node_thresholds.pop(node.name, None)
    node.hold = type(node.hold)()   # a streak toward the old thresholds counts no more
    return _thresholds_out(b, node)


def _rule_out(b, rule) -> dict:
    firing = sorted(a["node_name"] for (name, _), a in b.alerts.rule_open.items()
                    if name == rule.name)
    return {**rule.public(), "firing": firing}


def rule_list(b, params, ctx):
    """{} → [rule] by name: {name, expr, level, node, capability, metric, op, value,
    duration, created_at, created_by, firing: [node names with an open alert]}."""
    return [_rule_out(b, r) for _, r in sorted(b.alert_config.rules.items())]


def rule_add(b, params, ctx):
    """{name, expr, level? (warning), node? (glob), capability?, replace? (false)} → rule.
    expr: `METRIC OP NUMBER[UNIT] [for DURATION]` (alert_rules.py). An existing name is a
    conflict unless replace."""
    name, replace = get(params, "name", str), get(params, "replace", bool, False)
    if name in b.alert_config.rules and not replace:
        raise RequestError(f"rule {name!r} exists (replace it with replace: true)",
                           code="conflict")
    try:
        rule = R.make_rule(name, get(params, "expr", str), get(params, "level", str, "warning"),
                           get(params, "node", str, None), get(params, "capability", str, None),
                           ctx.now, ctx.caller.name)
        old = b.alert_config.rules.get(name)
        b.alert_config.add(rule)
    except R.RuleError as exc:
        raise RequestError(str(exc)) from None
    if old is not None:   # replaced: its open alerts were for the old condition
        _resolve_rule_alerts(b, name, ctx.now)
    return _rule_out(b, rule)


def _resolve_rule_alerts(b, name: str, now: float) -> int:
    pairs = [(b.alerts.resolve_rule(n, node_id, now), "resolved")
             for n, node_id in list(b.alerts.rule_open) if n == name]
    b.alert_events(pairs)
    return len(pairs)


def rule_remove(b, params, ctx):
    """{name} → {removed: name, resolved: how many of its open alerts were resolved}."""
    name = get(params, "name", str)
    if b.alert_config.remove(name) is None:
        raise NotFound(f"no alert rule {name!r}")
    return {"removed": name, "resolved": _resolve_rule_alerts(b, name, ctx.now)}


ALERT_METHODS = {
    "node.thresholds": read(node_thresholds),
    "node.set_thresholds": write(node_set_thresholds, ADMIN),
    "alert_rule.list": read(rule_list),
    "alert_rule.add": write(rule_add, ADMIN),
    "alert_rule.remove": write(rule_remove, ADMIN),
}

__all__ = ["ALERT_METHODS", "RULE", "init", "config_stream", "on_sample", "tick"]
