"""Notification channels (issue 14): what each kind needs, how its secrets are hidden, the
Alertmanager-compatible message, and one delivery attempt.

Kinds:
- `webhook`: POST of the Alertmanager webhook payload (version 4) as JSON to `url`, with
  optional extra `headers`. Any 2xx answer is success.
- `email`: one message over SMTP to `to` (a list) from `from`, on `host`:`port`, optionally
  with STARTTLS (`starttls`) or implicit TLS (`ssl`) and a login (`username`, `password`).
- `apprise`: any service apprise reaches by URL (`url`: `mailto://`, `slack://`, `json://`...).

Checking and rendering are pure; send() does the I/O and raises DeliveryError with the
reason on failure. It runs only in a Deliverer's threads (the bottom of this file), never in
the broker loop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import re
import smtplib
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from email.message import EmailMessage

log = logging.getLogger("architect.notify")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
KINDS = ("webhook", "email", "apprise")
HIDDEN = "***"
ZERO_TIME = "0001-01-01T00:00:00Z"     # Alertmanager's endsAt of an alert still firing
HEADER_RE = re.compile(r"^[A-Za-z0-9-]{1,64}$")
EMAIL_RE = re.compile(r"^[^@\s<>]{1,200}@[^@\s<>]{1,200}$")


class ChannelError(ValueError):
    """A channel's settings are wrong; the message names the field."""


class DeliveryError(Exception):
    """One attempt failed; str() is the reason recorded for it."""


def check_name(name) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ChannelError("a name is 1-64 letters, digits, '_', '.', ':' or '-' "
                           "(starting with a letter or digit)")
    return name


def _str(cfg: dict, key: str, required: bool = True, limit: int = 2000) -> str | None:
    value = cfg.get(key)
    if value is None or value == "":
        if required:
            raise ChannelError(f"'{key}' is required")
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise ChannelError(f"'{key}' must be a string of at most {limit} characters")
    return value


def _url(value: str, schemes=("http", "https")) -> str:
    parts = urllib.parse.urlsplit(value)
    try:
        parts.port
    except ValueError:
        raise ChannelError("'url' has a port out of range (1-65535)") from None
    if parts.scheme not in schemes or not parts.hostname or any(c.isspace() for c in value):
        raise ChannelError(f"'url' must be an {' or '.join(schemes)} URL with a host")
    return value


def check(kind, cfg) -> dict:
    """The channel's settings, checked and normalised (unknown keys refused)."""
    if kind not in KINDS:
        raise ChannelError(f"kind must be one of {', '.join(KINDS)}")
    if not isinstance(cfg, dict):
        raise ChannelError("settings must be an object")
    cfg = {k: v for k, v in cfg.items() if v is not None}     # null: not given
    allowed = {"webhook": {"url", "headers", "timeout"},
               "email": {"host", "port", "from", "to", "starttls", "ssl", "username",
                         "password", "timeout"},
               "apprise": {"url", "timeout"}}[kind]
    extra = sorted(set(cfg) - allowed)
    if extra:
        raise ChannelError(f"a {kind} channel takes no {', '.join(extra)} "
                           f"(it takes {', '.join(sorted(allowed))})")
    out: dict = {}
    timeout = cfg.get("timeout")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
                or not 0.1 <= timeout <= 120:
            raise ChannelError("'timeout' must be 0.1-120 seconds")
        out["timeout"] = float(timeout)
    if kind == "webhook":
        out["url"] = _url(_str(cfg, "url"))
        headers = cfg.get("headers") or {}
        if not isinstance(headers, dict) or len(headers) > 20 or not all(
                isinstance(k, str) and HEADER_RE.match(k) and isinstance(v, str)
                and len(v) <= 2000 and "\n" not in v and "\r" not in v
                for k, v in headers.items()):
            raise ChannelError("'headers' must map at most 20 header names to one-line strings")
        if headers:
            out["headers"] = dict(headers)
    elif kind == "email":
        out["host"] = _str(cfg, "host", limit=255)
        port = cfg.get("port", 25)
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ChannelError("'port' must be a TCP port 1-65535")
        out["port"] = port
        out["from"] = _str(cfg, "from", limit=400)
        to = cfg.get("to")
        if not isinstance(to, list) or not 1 <= len(to) <= 50 or not all(
                isinstance(t, str) and EMAIL_RE.match(t) for t in to):
            raise ChannelError("'to' must be 1-50 email addresses")
        out["to"] = to
        for flag in ("starttls", "ssl"):
            value = cfg.get(flag, False)
            if not isinstance(value, bool):
                raise ChannelError(f"'{flag}' must be true or false")
            out[flag] = value
        if out["starttls"] and out["ssl"]:
            raise ChannelError("choose 'starttls' or 'ssl', not both")
        username, password = _str(cfg, "username", False, 400), _str(cfg, "password", False, 400)
        if password and not username:
            raise ChannelError("a 'password' goes with a 'username'")
        if username:
            out["username"], out["password"] = username, password or ""
    else:
        url = _str(cfg, "url")
        import apprise
        if not apprise.Apprise().add(url):
            raise ChannelError("'url' is not a URL apprise supports (see its wiki for schemes)")
        out["url"] = url
    return out


def redacted(kind: str, cfg: dict) -> dict:
    """What a non-admin sees: no password, no URL path or query (tokens hide there), no
    header values."""
    out = dict(cfg)
    if "url" in out:
        parts = urllib.parse.urlsplit(out["url"])
        host = parts.hostname or ""
        try:
            port = f":{parts.port}" if parts.port else ""
        except ValueError:      # a port out of range: the URL fails when used
            port = ""
        out["url"] = f"{parts.scheme}://{host}{port}/{HIDDEN}" if kind == "webhook" \
            else f"{parts.scheme}://{HIDDEN}"
    if "headers" in out:
        out["headers"] = {k: HIDDEN for k in out["headers"]}
    if out.get("password"):
        out["password"] = HIDDEN
    return out


# --- the message ---------------------------------------------------------------------------

def iso(ts: float | None) -> str:
    if not ts:
        return ZERO_TIME
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def fingerprint(labels: dict) -> str:
    text = "\xff".join(f"{k}\xff{labels[k]}" for k in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def payload(event: str, alert: dict, labels: dict, receiver: str, external_url: str) -> dict:
    """The Alertmanager webhook body (version 4) for one alert. event: firing, resolved or
    test (a test is sent as firing)."""
    status = "resolved" if event == "resolved" else "firing"
    annotations = {"summary": alert.get("message") or f"{labels.get('alertname')} on "
                                                        f"{labels.get('node')}",
                   "description": "; ".join(alert.get("reasons") or []) or
                                  (alert.get("message") or ""),
                   "alert_id": str(alert.get("id"))}
    group = {k: labels[k] for k in ("alertname", "node") if k in labels}
    base = external_url.rstrip("/")
    one = {"status": status, "labels": labels, "annotations": annotations,
           "startsAt": iso(alert.get("created_at")),
           "endsAt": iso(alert.get("resolved_at")) if status == "resolved" else ZERO_TIME,
           "generatorURL": f"{base}/health", "fingerprint": fingerprint(labels)}
    key = ", ".join(f'{k}="{v}"' for k, v in group.items())
    return {"version": "4", "groupKey": f"{{}}:{{{key}}}", "truncatedAlerts": 0,
            "status": status, "receiver": receiver, "groupLabels": group,
            "commonLabels": labels, "commonAnnotations": annotations,
            "externalURL": base, "alerts": [one]}


def subject(message: dict) -> str:
    a = message["alerts"][0]
    lab = a["labels"]
    return (f"[{message['status'].upper()}] {lab.get('alertname')} {lab.get('node', '')} "
            f"({lab.get('level', '')})").replace("  ", " ")


def text(message: dict) -> str:
    a = message["alerts"][0]
    lines = [a["annotations"]["summary"], "", *(f"{k}: {v}" for k, v in sorted(
        a["labels"].items())), "", f"started: {a['startsAt']}"]
    if message["status"] == "resolved":
        lines.append(f"resolved: {a['endsAt']}")
    lines.append(f"see: {a['generatorURL']}")
    return "\n".join(lines)


# --- one attempt (delivery threads only) -------------------------------------------------------

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # no proxy from env


def send(kind: str, cfg: dict, message: dict, timeout: float) -> str:
    """Deliver once; returns a short note (the answer) or raises DeliveryError(reason)."""
    timeout = cfg.get("timeout", timeout)
    try:
        if kind == "webhook":
            return _webhook(cfg, message, timeout)
        if kind == "email":
            return _email(cfg, message, timeout)
        return _apprise(cfg, message, timeout)
    except DeliveryError:
        raise
    except (OSError, smtplib.SMTPException, ValueError) as exc:
        raise DeliveryError(_why(exc)) from None


def _why(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    if isinstance(exc, TimeoutError) or "timed out" in str(exc):
        return f"timed out ({type(exc).__name__}: {exc})"
    return f"{type(exc).__name__}: {exc}"[:500]


def _webhook(cfg: dict, message: dict, timeout: float) -> str:
    body = json.dumps(message).encode()
    req = urllib.request.Request(cfg["url"], data=body, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "architect-notify",
        **cfg.get("headers", {})})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            resp.read(65536)
            return f"HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"HTTP {exc.code} {exc.reason}") from None


def _email(cfg: dict, message: dict, timeout: float) -> str:
    msg = EmailMessage()
    msg["Subject"], msg["From"], msg["To"] = subject(message), cfg["from"], ", ".join(cfg["to"])
    msg.set_content(text(message))
    cls = smtplib.SMTP_SSL if cfg.get("ssl") else smtplib.SMTP
    with cls(cfg["host"], cfg["port"], timeout=timeout) as smtp:
        if cfg.get("starttls"):
            smtp.starttls(context=ssl.create_default_context())
        if cfg.get("username"):
            smtp.login(cfg["username"], cfg["password"])
        refused = smtp.send_message(msg)
    if refused:
        raise DeliveryError(f"refused recipients: {', '.join(sorted(refused))}")
    return f"accepted for {len(cfg['to'])} recipient(s)"


def _apprise(cfg: dict, message: dict, timeout: float) -> str:
    import apprise
    url = cfg["url"]
    if "cto=" not in url and "rto=" not in url:   # every plugin's own socket timeouts
        url += ("&" if "?" in url else "?") + f"cto={timeout:g}&rto={timeout:g}"
    client = apprise.Apprise()
    if not client.add(url):
        raise DeliveryError("apprise does not accept the URL")
    logs: list = []
    result = client.notify(body=text(message), title=subject(message),
                           notify_type=apprise.NotifyType.SUCCESS
                           if message["status"] == "resolved" else apprise.NotifyType.FAILURE,
                           log_callback=lambda entry, _plugin: logs.append(entry))
    if not result:
        why = "; ".join(str(getattr(e, "message", e)) for e in logs
                        if getattr(e, "level", "") in ("WARNING", "ERROR", "CRITICAL"))
        raise DeliveryError((why or "apprise reported a failure")[:500])
    return "sent"


class Deliverer:
    """A bounded queue and a few daemon threads doing one attempt each; results come back
    through a queue the broker loop drains (never blocking it). Started on first use."""

    def __init__(self, workers: int = 4, size: int = 1000, timeout: float = 10.0):
        self.workers, self.timeout = workers, timeout
        self.jobs: queue.Queue = queue.Queue(maxsize=size)
        self.results: queue.SimpleQueue = queue.SimpleQueue()
        self.threads: list[threading.Thread] = []

    def submit(self, job) -> bool:
        """Queue a notify.Job; False when the queue is full (never blocks)."""
        if not self.threads:
            self._start()
        try:
            self.jobs.put_nowait(job)
            return True
        except queue.Full:
            return False

    def _start(self) -> None:
        for i in range(self.workers):
            t = threading.Thread(target=self._run, name=f"notify-{i}", daemon=True)
            t.start()
            self.threads.append(t)

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            started = time.time()
            try:
                note, error = send(job.kind, job.config, job.message, self.timeout), None
            except DeliveryError as exc:
                note, error = "", str(exc) or "failed"
            except Exception as exc:   # a bug in a channel must not kill the thread
                log.exception("notification to %s failed unexpectedly", job.channel)
                note, error = "", f"{type(exc).__name__}: {exc}"[:500]
            self.results.put((job, error, note, started, time.time()))

    def take_results(self) -> list:
        out = []
        while True:
            try:
                out.append(self.results.get_nowait())
            except queue.Empty:
                return out

    def depth(self) -> int:
        return self.jobs.qsize()

    def close(self, wait: float = 1.0) -> None:
        for _ in self.threads:
            try:
                self.jobs.put_nowait(None)
            except queue.Full:
                break
        deadline = time.monotonic() + wait
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.threads = []
