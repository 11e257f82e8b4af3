"""Custom alert rules and per-node thresholds: parsing, validation and cheap evaluation.

A rule is `METRIC OP NUMBER[UNIT] [for DURATION]`, e.g. `disk_percent > 70 for 10m` or
`heartbeat_age > 30s`, with a level (warning or critical) and optional matches: `node` (a
glob on the node's name, e.g. `db-*`) and `capability` (a label the node reports). The
grammar (docs/HEALTH.md):

    rule     := metric op number [unit] ["for" duration]
    metric   := cpu_percent | memory_percent | disk_percent | load_1 | load_5 | load_15
              | process_count | net_bytes_sent | net_bytes_recv | uptime | heartbeat_age
    op       := ">" | ">=" | "<" | "<="
    unit     := "%" (percentages) | s m h d (uptime, heartbeat_age) | B KB MB GB TB KiB MiB
                GiB TiB (net_bytes_*)      (none: the metric's own unit, seconds for times)
    duration := number [s | m | h | d]     (none: seconds; no `for`: at once)

Anything else is a RuleError naming what was expected. Evaluation is in memory: a node's
metric rules on each of its samples (the rules matching it are cached), pending `for`
timers and `heartbeat_age` rules on the broker's tick. Pure state; time is a parameter.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from architect.bus.protocol import CRITICAL, WARNING
from architect.config import Thresholds

PERCENT, TIME, BYTES, PLAIN = "percent", "time", "bytes", "plain"
METRICS = {"cpu_percent": PERCENT, "memory_percent": PERCENT, "disk_percent": PERCENT,
           "load_1": PLAIN, "load_5": PLAIN, "load_15": PLAIN, "process_count": PLAIN,
           "net_bytes_sent": BYTES, "net_bytes_recv": BYTES, "uptime": TIME,
           "heartbeat_age": TIME}
OPS = {">": lambda v, t: v > t, ">=": lambda v, t: v >= t, "<": lambda v, t: v < t,
       "<=": lambda v, t: v <= t}
UNITS = {PERCENT: {"%": 1.0},
         TIME: {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0},
         BYTES: {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KiB": 1 << 10,
                 "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40},
         PLAIN: {}}
DURATION_UNITS = UNITS[TIME]
MAX_EXPR = 200
MAX_RULES = 1000
RULE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
RULE_LEVELS = (WARNING, CRITICAL)
THRESHOLD_METRICS = ("cpu", "memory", "disk", "load")
_TOKEN = re.compile(r"[ \t\r\n]*(?:(?P<num>-?(?:[0-9]+\.?[0-9]*|\.[0-9]+))|(?P<op>[<>=!]=?)|"
                    r"(?P<word>[A-Za-z_][A-Za-z0-9_]*)|(?P<pct>%)|(?P<other>[^ \t\r\n]))")
NODE_GLOB_RE = re.compile(r"[A-Za-z0-9_*?\[\]!-]{1,128}")
CAPABILITY_RE = re.compile(r"[!-~]{1,64}")


class RuleError(ValueError):
    """A rule or a threshold override that does not parse or fit; the message says why."""


@dataclass(frozen=True)
class Expr:
    metric: str
    op: str
    value: float        # in the metric's own unit (seconds, bytes, percent)
    duration: float     # seconds the condition must hold (0: at once)

    def holds(self, value) -> bool:
        return value is not None and OPS[self.op](value, self.value)


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:   # only trailing blanks are left
            break
        kind = m.lastgroup
        out.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return out


def parse(text) -> Expr:
    """`disk_percent > 70 for 10m` → Expr; RuleError with what was expected otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise RuleError("the rule is empty: write METRIC OP NUMBER [for DURATION], "
                        "e.g. 'disk_percent > 70 for 10m'")
    if len(text) > MAX_EXPR:
        raise RuleError(f"the rule is longer than {MAX_EXPR} characters")
    toks = _tokens(text)
    i = 0

    def peek():
        return toks[i] if i < len(toks) else ("end", "", len(text))

    def where(tok) -> str:
        return "at the end" if tok[0] == "end" else f"at position {tok[2] + 1} ({tok[1]!r})"

    kind, word, _ = tok = peek()
    if kind != "word" or word not in METRICS:
        raise RuleError(f"expected a metric {where(tok)}: one of {', '.join(METRICS)}")
    metric, i = word, i + 1
    kind, op, _ = tok = peek()
    if kind != "op" or op not in OPS:
        raise RuleError(f"expected a comparison (>, >=, <, <=) after {metric} {where(tok)}")
    i += 1
    kind, num, _ = tok = peek()
    if kind != "num":
        raise RuleError(f"expected a number after {op} {where(tok)}")
    value, i = float(num), i + 1
    kind, unit, _ = tok = peek()
    if (kind == "word" and unit != "for") or kind == "pct":
        scale = UNITS[METRICS[metric]].get(unit)
        if scale is None and any(unit in units for units in UNITS.values()):
            allowed = ", ".join(UNITS[METRICS[metric]]) or "none"
            raise RuleError(f"unit {unit!r} does not fit {metric} (units: {allowed})")
        if scale is None:
            raise RuleError(f"unexpected {unit!r} at position {tok[2] + 1}: after the number "
                            "comes a unit, 'for DURATION' or the end (one condition per rule)")
        value, i = value * scale, i + 1
    duration = 0.0
    kind, word, _ = tok = peek()
    if kind == "word" and word == "for":
        i += 1
        kind, num, _ = tok = peek()
        if kind != "num" or float(num) < 0:
            raise RuleError(f"expected a duration after 'for' {where(tok)}, e.g. 30s, 10m, 2h")
        duration, i = float(num), i + 1
        kind, unit, _ = tok = peek()
        if kind == "word":
            if unit not in DURATION_UNITS:
                raise RuleError(f"duration unit {unit!r} is not one of s, m, h, d")
            duration, i = duration * DURATION_UNITS[unit], i + 1
    tok = peek()
    if tok[0] != "end":
        raise RuleError(f"unexpected {tok[1]!r} at position {tok[2] + 1}: the rule ends after "
                        "the number and an optional 'for DURATION'")
    return Expr(metric, op, value, duration)


def _fmt_seconds(s: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size and s % size == 0:
            return f"{s / size:g}{unit}"
    return f"{s:g}s"


@dataclass(frozen=True)
class Rule:
    name: str
    expr: str
    level: str = WARNING
    node: str | None = None          # glob on the node's name
    capability: str | None = None    # the node reports this capability (label)
    created_at: float = 0.0
    created_by: str = ""

    @property
    def parsed(self) -> Expr:
        return _parse_cached(self.expr)

    def matches(self, node) -> bool:
        return (self.node is None or fnmatch.fnmatchcase(node.name, self.node)) and (
            self.capability is None or self.capability in node.capabilities)

    def row(self) -> dict:
        return {"name": self.name, "expr": self.expr, "level": self.level, "node": self.node,
                "capability": self.capability, "created_at": self.created_at,
                "created_by": self.created_by}

    def public(self) -> dict:
        e = self.parsed
        return {**self.row(), "metric": e.metric, "op": e.op, "value": e.value,
                "duration": e.duration}

    def describe(self, value: float) -> str:
        e = self.parsed
        shown = f"{value:.1f}" if isinstance(value, float) else str(value)
        limit = f"{e.value:g}"
        if METRICS[e.metric] == PERCENT:
            shown, limit = shown + "%", limit + "%"
        elif METRICS[e.metric] == TIME:
            shown, limit = f"{value:.0f}s", _fmt_seconds(e.value)
        held = f" for {_fmt_seconds(e.duration)}" if e.duration else ""
        return f"rule {self.name}: {e.metric} {shown} {e.op} {limit}{held}"


_PARSED: dict[str, Expr] = {}


def _parse_cached(expr: str) -> Expr:
    out = _PARSED.get(expr)
    if out is None:
        out = _PARSED[expr] = parse(expr)
    return out


def make_rule(name, expr, level=WARNING, node=None, capability=None, now: float = 0.0,
              by: str = "") -> Rule:
    """A checked Rule; RuleError names the field that is wrong."""
    if not isinstance(name, str) or not RULE_NAME_RE.fullmatch(name):
        raise RuleError(f"rule name {name!r} must be 1-64 letters, digits, '_', '.' or '-', "
                        "starting with a letter or digit")
    parse(expr)
    if level not in RULE_LEVELS:
        raise RuleError(f"level must be warning or critical, got {level!r}")
    if node is not None and (not isinstance(node, str) or not NODE_GLOB_RE.fullmatch(node)):
        raise RuleError("node must be a node name or a glob (letters, digits, _ - * ? [ ] !; "
                        "at most 128 characters)")
    if capability is not None and (not isinstance(capability, str)
                                   or not CAPABILITY_RE.fullmatch(capability)):
        raise RuleError("capability must be 1-64 printable characters without spaces")
    return Rule(name, expr.strip(), level, node, capability, now, by)


def check_overrides(overrides, defaults: Thresholds) -> dict:
    """{metric: {warning?, critical?}} → the same, checked: metrics cpu, memory, disk,
    load; numbers (percentages 0-100 for cpu, memory, disk; load > 0); the effective
    warning (with the default for what is not given) at most the critical."""
    if not isinstance(overrides, dict):
        raise RuleError("thresholds must be an object: {metric: {warning, critical}}")
    out = {}
    for metric, pair in overrides.items():
        if metric not in THRESHOLD_METRICS:
            raise RuleError(f"unknown metric {metric!r}: one of {', '.join(THRESHOLD_METRICS)}")
        if pair is None:
            continue
        if not isinstance(pair, dict) or set(pair) - {"warning", "critical"}:
            raise RuleError(f"{metric} must be an object with warning and/or critical")
        clean = {}
        for level in ("warning", "critical"):
            value = pair.get(level)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    value != value or value in (float("inf"), float("-inf")):
                raise RuleError(f"{metric} {level} must be a number")
            if metric != "load" and not 0 <= value <= 100:
                raise RuleError(f"{metric} {level} must be a percentage 0-100, got {value:g}")
            if metric == "load" and value <= 0:
                raise RuleError(f"load {level} must be greater than 0, got {value:g}")
            clean[level] = float(value)
        if not clean:
            continue
        warn = clean.get("warning", getattr(defaults, metric)[0])
        crit = clean.get("critical", getattr(defaults, metric)[1])
        if warn > crit:
            raise RuleError(f"{metric}: warning {warn:g} is above critical {crit:g}")
        out[metric] = clean
    return out


def apply_overrides(defaults: Thresholds, overrides: dict) -> Thresholds:
    from dataclasses import replace
    changes = {}
    for metric, pair in overrides.items():
        warn, crit = getattr(defaults, metric)
        changes[metric] = (pair.get("warning", warn), pair.get("critical", crit))
    return replace(defaults, **changes)


def override_row(node: str, overrides: dict, now: float, by: str) -> dict:
    row = {"node": node, "updated_at": now, "updated_by": by}
    for metric in THRESHOLD_METRICS:
        for level in ("warning", "critical"):
            row[f"{metric}_{level}"] = overrides.get(metric, {}).get(level)
    return row


def overrides_of(row: dict) -> dict:
    out = {}
    for metric in THRESHOLD_METRICS:
        pair = {lv: row[f"{metric}_{lv}"] for lv in ("warning", "critical")
                if row.get(f"{metric}_{lv}") is not None}
        if pair:
            out[metric] = pair
    return out


class AlertConfig:
    """The rules and per-node thresholds in memory, with their pending writes (the unit of
    work of persist.py: take_dirty / put_back), and the rules' evaluation state."""

    def __init__(self):
        self.rules: dict[str, Rule] = {}
        self.overrides: dict[str, dict] = {}      # node name → {metric: {warning, critical}}
        self.override_meta: dict[str, tuple] = {}  # node name → (updated_at, updated_by)
        self.since: dict[tuple[str, int], float] = {}   # (rule, node_id) → holds since
        self._matching: dict[int, tuple] = {}     # node_id → (capabilities, name, rules)
        self._age_rules: list[Rule] = []
        self._rule_changes: dict[str, dict | None] = {}
        self._threshold_changes: dict[str, dict | None] = {}

    # --- loading and changing ------------------------------------------------------------
    def load(self, rule_rows: list[dict], threshold_rows: list[dict]) -> None:
        for row in rule_rows:
            try:
                rule = make_rule(row["name"], row["expr"], row.get("level") or WARNING,
                                 row.get("node"), row.get("capability"),
                                 row.get("created_at") or 0.0, row.get("created_by") or "")
            except RuleError:
                continue    # a row edited by hand that no longer parses: skipped
            self.rules[rule.name] = rule
        for row in threshold_rows:
            self.overrides[row["node"]] = overrides_of(row)
            self.override_meta[row["node"]] = (row.get("updated_at"), row.get("updated_by"))
        self._changed()

    def add(self, rule: Rule) -> None:
        if rule.name not in self.rules and len(self.rules) >= MAX_RULES:
            raise RuleError(f"at most {MAX_RULES} rules")
        self.rules[rule.name] = rule
        self._rule_changes[rule.name] = rule.row()
        for key in [k for k in self.since if k[0] == rule.name]:
            del self.since[key]
        self._changed()

    def remove(self, name: str) -> Rule | None:
        rule = self.rules.pop(name, None)
        if rule is not None:
            self._rule_changes[name] = None
            for key in [k for k in self.since if k[0] == name]:
                del self.since[key]
            self._changed()
        return rule

    def set_overrides(self, node: str, overrides: dict, now: float, by: str) -> None:
        if overrides:
            self.overrides[node] = overrides
            self.override_meta[node] = (now, by)
            self._threshold_changes[node] = override_row(node, overrides, now, by)
        elif node in self.overrides:
            self.overrides.pop(node, None)
            self.override_meta.pop(node, None)
            self._threshold_changes[node] = None

    def node_removed(self, name: str, node_id: int) -> None:
        self.set_overrides(name, {}, 0.0, "")
        self._matching.pop(node_id, None)
        for key in [k for k in self.since if k[1] == node_id]:
            del self.since[key]

    def thresholds(self, defaults: Thresholds) -> dict[str, Thresholds]:
        """node name → its thresholds, for Registry.node_thresholds."""
        return {name: apply_overrides(defaults, o) for name, o in self.overrides.items() if o}

    def _changed(self) -> None:
        self._matching.clear()
        self._age_rules = [r for r in self.rules.values() if r.parsed.metric == "heartbeat_age"]

    # --- evaluation -------------------------------------------------------------------------
    def matching(self, node) -> list[Rule]:
        cached = self._matching.get(node.id)
        if cached is None or cached[0] != node.capabilities or cached[1] != node.name:
            rules = [r for r in self.rules.values() if r.matches(node)]
            cached = self._matching[node.id] = (list(node.capabilities), node.name, rules)
        return cached[2]

    def sample(self, node, now: float, firing) -> list[tuple[str, Rule, float]]:
        """A node's new sample: → [("fire" | "clear", rule, value)]. `firing`: the
        (rule, node_id) keys with an open alert."""
        out = []
        for rule in self.matching(node):
            e = rule.parsed
            value = 0.0 if e.metric == "heartbeat_age" else node.metrics.get(e.metric)
            self._judge(rule, node, value, now, firing, out)
        return out

    def tick(self, nodes, now: float, firing) -> list[tuple[str, Rule, object, float]]:
        """Pending `for` timers that ran out, and heartbeat_age rules for every node:
        → [("fire" | "clear", rule, node, value)]. nodes: id → Node."""
        out = []
        for (name, node_id), since in list(self.since.items()):
            rule, node = self.rules.get(name), nodes.get(node_id)
            if rule is None or node is None:
                del self.since[(name, node_id)]
                continue
            if (name, node_id) not in firing and now - since >= rule.parsed.duration:
                e = rule.parsed
                value = now - _seen(node) if e.metric == "heartbeat_age" else \
                    node.metrics.get(e.metric)
                out.append(("fire", rule, node, value))
        if self._age_rules:
            for node in nodes.values():
                for rule in self._age_rules:
                    if rule.matches(node):
                        found: list = []
                        self._judge(rule, node, now - _seen(node), now, firing, found)
                        out.extend((verb, r, node, v) for verb, r, v in found)
        for (name, node_id) in list(firing):
            if name not in self.rules or node_id not in nodes:
                out.append(("clear", None, nodes.get(node_id), name))   # rule or node gone
        return out

    def _judge(self, rule, node, value, now, firing, out) -> None:
        key = (rule.name, node.id)
        if rule.parsed.holds(value):
            since = self.since.setdefault(key, now)
            if key not in firing and now - since >= rule.parsed.duration:
                out.append(("fire", rule, value))
        else:
            self.since.pop(key, None)
            if key in firing:
                out.append(("clear", rule, value))

    # --- the unit of work (persist.py) ------------------------------------------------------
    @property
    def dirty(self) -> bool:
        return bool(self._rule_changes or self._threshold_changes)

    def take_dirty(self) -> list[dict]:
        """[rule changes, threshold changes] (name → row, or None: removed); [] if none."""
        if not self.dirty:
            return []
        taken = [self._rule_changes, self._threshold_changes]
        self._rule_changes, self._threshold_changes = {}, {}
        return taken

    def put_back(self, taken: list[dict]) -> None:
        if not taken:
            return
        rules, thresholds = taken
        self._rule_changes = {**rules, **self._rule_changes}
        self._threshold_changes = {**thresholds, **self._threshold_changes}


def _seen(node) -> float:
    return max(node.last_seen, node.registered_at)


def _spec_pattern() -> str:
    """The grammar as one regular expression (ECMA-compatible), for the OpenAPI spec: a
    string matches it exactly when parse() accepts it."""
    ws, end = "[ \\t\\r\\n]*", "(?![A-Za-z0-9_])"
    num, dur = "-?([0-9]+\\.?[0-9]*|\\.[0-9]+)", "([0-9]+\\.?[0-9]*|\\.[0-9]+)"
    op = "(>=|<=|>|<)"
    units = {PERCENT: f"({ws}%)?", PLAIN: "",
             TIME: f"({ws}[smhd]{end})?",
             BYTES: f"({ws}({'|'.join(sorted(UNITS[BYTES], key=len, reverse=True))}){end})?"}
    heads = []
    for kind, unit in units.items():
        names = "|".join(m for m, k in METRICS.items() if k == kind)
        heads.append(f"({names}){end}{ws}{op}{ws}{num}{unit}")
    return (f"^{ws}({'|'.join(heads)})({ws}for{end}{ws}{dur}({ws}[smhd]{end})?)?{ws}$")


SPEC_PATTERN = _spec_pattern()
