"""`architect notify` (channels, rules, deliveries), `architect silence` and
`architect maintenance NODE on|off` (also `architect nodes maintenance`): the notify.*,
silence.* and node.maintenance methods (docs/NOTIFICATIONS.md)."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import click

from architect.cli.common import call, print_json, print_table

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _at(ts) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _matchers(pairs) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise click.BadParameter(f"{pair!r}: use LABEL=GLOB, e.g. alertname=NodeOffline",
                                     param_hint="--match")
        out[key] = value
    return out


@click.group()
def notify():
    """Notifications: where alerts are sent (channels), which go where (rules), and what
    was delivered.

    \b
      architect notify channels add ops-hook --webhook https://hooks.example/alert
      architect notify channels add ops-mail --smtp-host mail.example --from arch@example \\
          --to oncall@example --starttls --username arch --password-env SMTP_PASSWORD
      architect notify channels add chat --apprise "slack://T000/B000/XXXX"
      architect notify rules add oncall --channel ops-hook --channel ops-mail \\
          --min-level critical --node "db-*" --repeat 1h
      architect notify channels test ops-hook
      architect notify deliveries --failed
    """


@notify.group()
def channels():
    """Channels: a webhook (Alertmanager JSON), email over SMTP, or an apprise URL."""


@channels.command("list")
@json_option
@click.pass_context
def channels_list(ctx, as_json):
    """The channels; their secrets (URL paths, passwords) are shown to admins only."""
    rows = call(ctx, "notify.channels")
    if as_json:
        return print_json(rows)
    if not rows:
        return click.echo("no channels (add one with `architect notify channels add`)")
    print_table([{**r, "where": _where(r)} for r in rows],
                [("name", "name"), ("kind", "kind"), ("where", "where"),
                 ("by", "created_by")])


def _where(channel: dict) -> str:
    cfg = channel["config"]
    if channel["kind"] == "email":
        return f"{','.join(cfg['to'])} via {cfg['host']}:{cfg['port']}"
    return cfg.get("url", "")


@channels.command("add")
@click.argument("name")
@click.option("--webhook", "webhook", metavar="URL", help="POST Alertmanager-style JSON here.")
@click.option("--header", "headers", multiple=True, metavar="NAME=VALUE",
              help="An extra HTTP header for the webhook (repeatable).")
@click.option("--apprise", "apprise_url", metavar="URL", help="Any apprise URL "
              "(slack://, mailto://, json://, ...).")
@click.option("--smtp-host", help="Send email through this SMTP server.")
@click.option("--smtp-port", type=click.IntRange(1, 65535), help="SMTP port [25].")
@click.option("--from", "sender", help="The email's sender address.")
@click.option("--to", "to", multiple=True, help="A recipient (repeatable).")
@click.option("--starttls", is_flag=True, help="STARTTLS after connecting.")
@click.option("--ssl", "use_ssl", is_flag=True, help="Implicit TLS (usually port 465).")
@click.option("--username", help="SMTP login.")
@click.option("--password-env", metavar="VAR", help="Read the SMTP password from this "
              "environment variable (never from the command line).")
@click.option("--timeout", type=click.FloatRange(0.1, 120), help="One attempt's timeout "
              "in seconds [ARCHITECT_NOTIFY_TIMEOUT, 10].")
@click.option("--replace", is_flag=True, help="Replace a channel of that name.")
@json_option
@click.pass_context
def channels_add(ctx, name, webhook, headers, apprise_url, smtp_host, smtp_port, sender, to,
                 starttls, use_ssl, username, password_env, timeout, replace, as_json):
    """Add a channel (admin). Give one of --webhook, --apprise or --smtp-host."""
    import os
    kinds = [k for k, v in (("webhook", webhook), ("apprise", apprise_url),
                            ("email", smtp_host)) if v]
    if len(kinds) != 1:
        raise click.UsageError("give exactly one of --webhook, --apprise and --smtp-host")
    params: dict = {"name": name, "kind": kinds[0], "replace": replace or None,
                    "timeout": timeout}
    if webhook:
        params["url"] = webhook
        if headers:
            params["headers"] = dict(_header(h) for h in headers)
    elif apprise_url:
        params["url"] = apprise_url
    else:
        params.update({"host": smtp_host, "port": smtp_port, "from": sender, "to": list(to),
                       "starttls": starttls or None, "ssl": use_ssl or None,
                       "username": username})
        if password_env:
            if password_env not in os.environ:
                raise click.BadParameter(f"${password_env} is not set",
                                         param_hint="--password-env")
            params["password"] = os.environ[password_env]
    out = call(ctx, "notify.channel.add", {k: v for k, v in params.items() if v is not None})
    if as_json:
        return print_json(out)
    click.echo(f"channel {out['name']} ({out['kind']}): {_where(out)}")


def _header(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r}: use NAME=VALUE", param_hint="--header")
    return key, value


@channels.command("remove")
@click.argument("name")
@click.pass_context
def channels_remove(ctx, name):
    """Remove a channel (admin); refused while a rule sends to it."""
    call(ctx, "notify.channel.remove", {"name": name})
    click.echo(f"channel {name} removed")


@channels.command("test")
@click.argument("name")
@click.option("--wait/--no-wait", default=True, help="Wait for the first attempt's outcome.")
@json_option
@click.pass_context
def channels_test(ctx, name, wait, as_json):
    """Send a test message through a channel now (admin)."""
    out = call(ctx, "notify.channel.test", {"name": name})
    row = None
    if wait:
        deadline = time.monotonic() + 150
        while row is None and time.monotonic() < deadline:
            rows = call(ctx, "notify.deliveries", {"delivery": out["delivery"], "limit": 1})
            row = rows[0] if rows else None
            if row is None:
                time.sleep(0.3)
    if as_json:
        return print_json({**out, "attempt": row})
    if row is None:
        return click.echo(f"test message {out['delivery']} queued for {name}")
    if row["outcome"] != "sent":
        raise click.ClickException(f"test to {name} failed: {row['error']}"
                                   + (" (retrying)" if row["retry_at"] else ""))
    click.echo(f"test to {name}: sent ({row['detail']}, {row['duration']:.2f}s)")


@notify.group()
def rules():
    """Rules: which alerts (least level, node glob, labels) go to which channels."""


@rules.command("list")
@json_option
@click.pass_context
def rules_list(ctx, as_json):
    """The rules."""
    rows = call(ctx, "notify.rules")
    if as_json:
        return print_json(rows)
    if not rows:
        return click.echo("no rules (add one with `architect notify rules add`)")
    print_table([{**r, "to": ",".join(r["channels"]),
                  "labels": ",".join(f"{k}={v}" for k, v in r["match"].items()) or None,
                  "repeat": f"{r['repeat_interval']:g}s" if r["repeat_interval"] else None,
                  "resolved": "yes" if r["send_resolved"] else "no"} for r in rows],
                [("name", "name"), ("to", "to"), ("level", "min_level"), ("node", "node"),
                 ("labels", "labels"), ("repeat", "repeat"), ("resolved", "resolved")])


@rules.command("add")
@click.argument("name")
@click.option("--channel", "channels_", multiple=True, required=True,
              help="Send to this channel (repeatable).")
@click.option("--min-level", type=click.Choice(["warning", "critical"]),
              help="Least level: warning (warning, critical, offline) or critical "
              "(critical, offline) [warning].")
@click.option("--node", help="Only nodes matching this glob, e.g. 'db-*' [*].")
@click.option("--match", "match", multiple=True, metavar="LABEL=GLOB",
              help="Only alerts whose label matches (repeatable; labels: alertname, node, "
              "level, severity, kind, and the node's own labels).")
@click.option("--repeat", help="Send again while it fires unacknowledged: 30m, 4h [never].")
@click.option("--no-resolved", is_flag=True, help="Do not tell when the alert resolves.")
@click.option("--replace", is_flag=True, help="Replace a rule of that name.")
@json_option
@click.pass_context
def rules_add(ctx, name, channels_, min_level, node, match, repeat, no_resolved, replace,
              as_json):
    """Add a rule (admin)."""
    params = {"name": name, "channels": list(channels_), "min_level": min_level, "node": node,
              "match": _matchers(match) or None, "repeat_interval": repeat,
              "send_resolved": False if no_resolved else None, "replace": replace or None}
    out = call(ctx, "notify.rule.add", {k: v for k, v in params.items() if v is not None})
    if as_json:
        return print_json(out)
    click.echo(f"rule {out['name']}: {out['min_level']}+ on {out['node']} -> "
               f"{', '.join(out['channels'])}")


@rules.command("remove")
@click.argument("name")
@click.pass_context
def rules_remove(ctx, name):
    """Remove a rule (admin)."""
    call(ctx, "notify.rule.remove", {"name": name})
    click.echo(f"rule {name} removed")


@notify.command()
@click.option("--channel", help="One channel's.")
@click.option("--failed", is_flag=True, help="Failed attempts only.")
@click.option("--alert", "alert_id", type=int, help="One alert's.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
@click.pass_context
def deliveries(ctx, channel, failed, alert_id, limit, as_json):
    """Delivery attempts, newest first: sent, failed (and why), silenced."""
    params = {"channel": channel, "outcome": "failed" if failed else None,
              "alert_id": alert_id, "limit": limit}
    rows = call(ctx, "notify.deliveries", {k: v for k, v in params.items() if v is not None})
    if as_json:
        return print_json(rows)
    if not rows:
        return click.echo("no deliveries yet")
    print_table([{**r, "when": _at(r["at"]), "why": r["error"] or r["detail"],
                  "retry": _at(r["retry_at"])} for r in rows],
                [("when", "when"), ("channel", "channel"), ("event", "event"),
                 ("node", "node"), ("alert", "alert_id"), ("try", "attempt"),
                 ("outcome", "outcome"), ("why", "why"), ("retry at", "retry")])


@notify.command()
@json_option
@click.pass_context
def status(ctx, as_json):
    """The delivery queue: waiting, in flight, waiting to retry; counters."""
    out = call(ctx, "notify.status")
    if as_json:
        return print_json(out)
    click.echo(f"queued {out['queued']}, in flight {out['in_flight']}, retrying "
               f"{out['retrying']}; {out['firing']} alerts firing; {out['channels']} channels, "
               f"{out['rules']} rules, {out['silences']} active silences")


# --- silences ------------------------------------------------------------------------------

@click.group()
def silence():
    """Silences: mute a node's (or matching labels') notifications for a while.

    \b
      architect silence add --node web-3 --for 2h --comment "disk swap"
      architect silence add --match alertname=NodeWarning --for 1d --comment "noisy"
      architect silence list
      architect silence remove 4
    """


@silence.command("add")
@click.option("--node", help="Nodes matching this glob, e.g. web-3 or 'web-*'.")
@click.option("--match", "match", multiple=True, metavar="LABEL=GLOB",
              help="Alerts whose label matches (repeatable).")
@click.option("--for", "span", default="1h", show_default=True,
              help="How long: 30m, 2h, 1d.")
@click.option("--comment", "-m", required=True, help="Why (kept with who made it).")
@json_option
@click.pass_context
def silence_add(ctx, node, match, span, comment, as_json):
    """Add a silence (operator)."""
    params = {"node": node, "match": _matchers(match) or None, "duration": span,
              "comment": comment}
    out = call(ctx, "silence.add", {k: v for k, v in params.items() if v is not None})
    if as_json:
        return print_json(out)
    click.echo(f"silence {out['id']}: {_what(out)} until {_at(out['ends_at'])}")


def _what(s: dict) -> str:
    parts = ([f"node {s['node']}"] if s.get("node") else []) + \
        [f"{k}={v}" for k, v in (s.get("match") or {}).items()]
    return ", ".join(parts)


@silence.command("list")
@click.option("--all", "all_", is_flag=True, help="Expired ones too.")
@json_option
@click.pass_context
def silence_list(ctx, all_, as_json):
    """Silences, newest first: active and pending (--all: expired too)."""
    rows = call(ctx, "silence.list", {"all": all_})
    if as_json:
        return print_json(rows)
    if not rows:
        return click.echo("no silences")
    print_table([{**s, "what": _what(s), "until": _at(s["ends_at"]) or "turned off"}
                 for s in rows],
                [("id", "id"), ("kind", "kind"), ("what", "what"), ("state", "state"),
                 ("until", "until"), ("by", "created_by"), ("comment", "comment")])


@silence.command("remove")
@click.argument("silence_id", type=int)
@click.pass_context
def silence_remove(ctx, silence_id):
    """End a silence now (operator); its row stays in the history."""
    call(ctx, "silence.remove", {"id": silence_id})
    click.echo(f"silence {silence_id} ended")


# --- maintenance ----------------------------------------------------------------------------

@click.command()
@click.argument("node")
@click.argument("state", type=click.Choice(["on", "off"]))
@click.option("--for", "span", help="End the silence after this long (30m, 4h) [until off].")
@click.option("--comment", "-m", help="Why [maintenance].")
@json_option
@click.pass_context
def maintenance(ctx, node, state, span, comment, as_json):
    """Maintenance mode for NODE (operator): `on` drains it (no new tasks) and silences its
    notifications; `off` undrains it and ends that silence."""
    params = {"node": node, "on": state == "on", "duration": span, "comment": comment}
    out = call(ctx, "node.maintenance", {k: v for k, v in params.items() if v is not None})
    if as_json:
        return print_json(out)
    if out["maintenance"]:
        s = out["silences"][0] if out["silences"] else None
        click.echo(f"{node}: in maintenance (drained, silenced"
                   + (f" until {_at(s['ends_at'])}" if s and s["ends_at"] else "") + ")")
    else:
        click.echo(f"{node}: maintenance over (undrained, silence ended)")
