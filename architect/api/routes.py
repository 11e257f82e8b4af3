"""Every HTTP route in one table: the Flask url map and the OpenAPI spec are built from it."""

from __future__ import annotations

from dataclasses import dataclass, field

from architect.api import views_accounts as accounts
from architect.api import views_alerts as alerting
from architect.api import views_backup as backups
from architect.api import views_keys as keys
from architect.api import views_nodes as nodes
from architect.api import views_notify as notify
from architect.api import views_schedules as schedules
from architect.api import views_ssh as ssh
from architect.api import views_tasks as tasks
from architect.bus import protocol


@dataclass(frozen=True)
class Route:
    rule: str
    methods: tuple
    view: object
    summary: str
    tag: str
    ok: str = "Object"                      # schema of the success response
    status: int = 200
    body: str | None = None                 # schema of the JSON body
    query: tuple = ()                       # (name, type, description)
    errors: tuple = (400, 404, 503)
    auth: bool = True
    extra_ok: tuple = field(default=())     # other success statuses


def rng(low, high=None):
    out = {"type": "integer", "minimum": low}
    if high is not None:
        out["maximum"] = high
    return out


LEVELS = {"type": "string", "enum": list(protocol.LEVELS)}
STATES = {"type": "string", "enum": list(protocol.STATES)}
NODE_Q = (("status", LEVELS, "only nodes at this level"),)
TASK_Q = (("status", STATES, "state"), ("node", "string", "placed on this node"),
          ("task_type", "string", "type"),
          ("label", {"type": "string", "pattern": "^([A-Za-z0-9][A-Za-z0-9_./-]{0,63}=.*)?$"},
           "key=value: tasks with this label (empty: any)"),
          ("q", {"type": "string", "maxLength": 200},
           "search the command or function, node, labels and error (empty: none)"),
          ("limit", rng(1, 1000), "1-1000 (100)"),
          ("offset", rng(0, 10**9), "skip this many"))

ROUTES = (
    Route("/api/nodes", ("GET",), nodes.list_nodes, "List nodes with health and metrics", "nodes",
          "NodeList", query=NODE_Q, errors=(400, 503)),
    Route("/api/nodes", ("POST",), nodes.register_node, "Register or update a node", "nodes",
          "Node", 201, body="NodeRegistration", errors=(400, 413, 503), extra_ok=(200,)),
    Route("/api/nodes/health", ("GET",), nodes.nodes_health,
          "Counts per level and each node's level", "nodes", "Health", errors=(503,)),
    Route("/api/nodes/alerts", ("GET",), nodes.list_alerts, "Active alerts (?all=1: history too)",
          "alerts", "AlertList", query=(("all", "string", "1 for history"),
                                        ("node", "string", "one node's alerts"),
                                        ("level", {"type": "string", "enum": [
                                            "warning", "critical", "offline"]},
                                         "warning, critical or offline"),
                                        ("kind", {"type": "string", "enum": [
                                            "level", "flapping", "rule", "security"]},
                                         "level, flapping, rule or security"),
                                        ("since", rng(1, 3660 * 86400),
                                         "opened within this many seconds"),
                                        ("limit", rng(1, 10_000), "1-10000"))),
    Route("/api/nodes/alerts/<int:alert_id>/ack", ("POST",), nodes.ack_alert,
          "Acknowledge an alert", "alerts", "Alert", errors=(400, 404, 413, 503)),
    Route("/api/nodes/recommend", ("GET",), nodes.recommend, "Best nodes with score breakdown",
          "placement", "Recommendations", query=(("count", rng(1, 1000), "1-1000 (3)"),
                                                 ("requirements", "string", "comma-separated"),
                                                 ("task_type", "string", "type to run")),
          errors=(400, 503)),
    Route("/api/nodes/distribution", ("GET",), nodes.distribution, "Tasks per node by state",
          "placement", "Distribution", errors=(503,)),
    Route("/api/nodes/<nodekey:key>", ("GET",), nodes.get_node, "One node by id or name", "nodes",
          "Node"),
    Route("/api/nodes/<nodekey:key>", ("DELETE",), nodes.remove_node, "Remove a node", "nodes",
          "Removed"),
    Route("/api/nodes/<nodekey:key>/drain", ("POST",), nodes.drain_node,
          "Stop placing tasks on a node", "nodes", "Node"),
    Route("/api/nodes/<nodekey:key>/undrain", ("POST",), nodes.undrain_node,
          "Place tasks on a node again", "nodes", "Node"),
    Route("/api/nodes/<nodekey:key>/thresholds", ("GET",), alerting.get_thresholds,
          "A node's health thresholds: its overrides and what grades it", "alerts",
          "NodeThresholds"),
    Route("/api/nodes/<nodekey:key>/thresholds", ("PUT",), alerting.set_thresholds,
          "Replace a node's threshold overrides (admin)", "alerts", "NodeThresholds",
          body="NodeThresholdsRequest", errors=(400, 404, 413, 503)),
    Route("/api/alert-rules", ("GET",), alerting.list_rules,
          "Custom alert rules, with the nodes each fires on", "alerts", "AlertRuleList",
          errors=(503,)),
    Route("/api/alert-rules", ("POST",), alerting.add_rule,
          "Add a custom alert rule: METRIC OP NUMBER [for DURATION] (admin)", "alerts",
          "AlertRule", 201, body="AlertRuleRequest", errors=(400, 409, 413, 503)),
    Route("/api/alert-rules/<name>", ("DELETE",), alerting.remove_rule,
          "Remove a custom alert rule; its open alerts resolve (admin)", "alerts",
          "AlertRuleRemoved", errors=(400, 404, 503)),
    Route("/api/nodes/<nodekey:key>/metrics", ("GET",), nodes.node_metrics,
          "A node's metrics history, at the resolution its window needs", "nodes",
          "NodeMetrics", query=(
              ("range", {"type": "string", "enum": list(nodes.METRIC_RANGES)},
               "window back from now (1h)"),
              ("points", rng(2, 5000), "at most this many buckets (300)"),
              ("resolution", {"type": "string", "enum": list(nodes.RESOLUTIONS)},
               "auto (raw up to 6 h, 1m up to 2 d, 1h beyond), or force one"))),
    Route("/api/tasks", ("GET",), tasks.list_tasks, "List tasks, newest first", "tasks", "TaskList",
          query=TASK_Q, errors=(400, 503)),
    Route("/api/tasks", ("POST",), tasks.submit_task, "Submit a task, or a JSON array of "
          "tasks in one commit", "tasks", "SubmittedOrBatch", 201,
          body="TaskSubmissions", errors=(400, 404, 413, 503), extra_ok=(200,)),
    Route("/api/tasks/retry", ("POST",), tasks.retry_tasks,
          "Retry every task that ended failed or timed out in a window", "tasks", "Retried",
          body="RetryRequest", errors=(400, 413, 503)),
    Route("/api/tasks/assign-optimal", ("POST",), tasks.assign_optimal,
          "Best node for a task now; with a payload, submit it there", "placement", "Assignment",
          body="AssignRequest", errors=(400, 404, 413, 503)),
    Route("/api/tasks/<int:task_id>", ("GET",), tasks.get_task, "One task with its result", "tasks",
          "Task", query=(("events", "string", "1: include the state history"),)),
    Route("/api/tasks/<int:task_id>/output", ("GET",), tasks.task_output, "Streamed output chunks",
          "tasks", "OutputList", query=(("after_seq", rng(-1, 10**9), "only chunks after this"),)),
    Route("/api/tasks/<int:task_id>/cancel", ("POST",), tasks.cancel_task, "Cancel a task", "tasks",
          "Task"),
    Route("/api/tasks/<int:task_id>/graph", ("GET",), tasks.task_graph,
          "The workflow a task is part of: its dependencies and dependents, as a graph",
          "tasks", "TaskGraph"),
    Route("/api/tasks/<int:task_id>/retry", ("POST",), tasks.retry_task,
          "Run a failed or timed-out task again (the same task, its history kept)", "tasks",
          "Task", errors=(400, 404, 409, 503)),
    Route("/api/schedules", ("GET",), schedules.list_schedules, "Schedules, by name", "schedules",
          "ScheduleList", errors=(503,)),
    Route("/api/schedules", ("POST",), schedules.add_schedule, "Add a schedule: a task on a "
          "cron expression or every N seconds", "schedules", "Schedule", 201,
          body="ScheduleRequest", errors=(400, 409, 413, 503)),
    Route("/api/schedules/<name>", ("GET",), schedules.get_schedule,
          "One schedule with its latest runs", "schedules", "ScheduleWithRuns",
          query=(("runs", rng(0, 500), "runs to include, newest first (20)"),)),
    Route("/api/schedules/<name>", ("DELETE",), schedules.remove_schedule,
          "Remove a schedule and its runs (their tasks stay)", "schedules", "ScheduleRemoved"),
    Route("/api/schedules/<name>/pause", ("POST",), schedules.pause_schedule,
          "Pause a schedule", "schedules", "Schedule"),
    Route("/api/schedules/<name>/resume", ("POST",), schedules.resume_schedule,
          "Resume a schedule (its next run is the first due time after now)", "schedules",
          "Schedule"),
    Route("/api/schedules/<name>/run", ("POST",), schedules.run_schedule,
          "Run a schedule's task now", "schedules", "ScheduleRun", 201),
    Route("/api/queues", ("GET",), schedules.list_queues,
          "Queues: depth, running, limits, oldest waiting task", "queues", "QueueList",
          errors=(503,)),
    Route("/api/queues/<name>", ("PUT",), schedules.set_queue,
          "Set a queue's limits: concurrency across the cluster and a start rate", "queues",
          "QueueLimits", body="QueueLimitsRequest", errors=(400, 413, 503)),
    Route("/api/notify/channels", ("GET",), notify.list_channels,
          "Notification channels (secrets shown to admins only)", "notify",
          "NotifyChannelList", errors=(503,)),
    Route("/api/notify/channels", ("POST",), notify.add_channel,
          "Add a channel: webhook (Alertmanager JSON), email (SMTP) or apprise URL (admin)",
          "notify", "NotifyChannel", 201, body="NotifyChannelRequest",
          errors=(400, 409, 413, 503)),
    Route("/api/notify/channels/<name>", ("DELETE",), notify.remove_channel,
          "Remove a channel no rule uses (admin)", "notify", "NotifyRemoved",
          errors=(400, 404, 409, 503)),
    Route("/api/notify/channels/<name>/test", ("POST",), notify.test_channel,
          "Send a test message through a channel now (admin)", "notify", "NotifyTest", 202),
    Route("/api/notify/rules", ("GET",), notify.list_rules, "Notification rules", "notify",
          "NotifyRuleList", errors=(503,)),
    Route("/api/notify/rules", ("POST",), notify.add_rule,
          "Add a rule: which alerts go to which channels (admin)", "notify", "NotifyRule", 201,
          body="NotifyRuleRequest", errors=(400, 404, 409, 413, 503)),
    Route("/api/notify/rules/<name>", ("DELETE",), notify.remove_rule, "Remove a rule (admin)",
          "notify", "NotifyRemoved"),
    Route("/api/notify/deliveries", ("GET",), notify.list_deliveries,
          "Delivery attempts, newest first: sent, failed (why), silenced", "notify",
          "NotifyDeliveryList",
          query=(("channel", "string", "one channel"),
                 ("outcome", {"type": "string", "enum": ["sent", "failed", "silenced"]},
                  "sent, failed or silenced"),
                 ("alert_id", rng(0, 1 << 62), "one alert's"),
                 ("delivery", rng(0, 1 << 62), "one message's attempts"),
                 ("limit", rng(1, 10_000), "1-10000 (100)")), errors=(400, 503)),
    Route("/api/notify/status", ("GET",), notify.notify_status,
          "Delivery queue, messages in flight and waiting to retry", "notify", "NotifyStatus",
          errors=(503,)),
    Route("/api/silences", ("GET",), notify.list_silences,
          "Silences: active and pending (?all=1: expired too)", "notify", "SilenceList",
          query=(("all", "string", "1 for expired ones too"),), errors=(503,)),
    Route("/api/silences", ("POST",), notify.add_silence,
          "Mute a node's (glob) or labels' alerts until a time, with a comment", "notify",
          "Silence", 201, body="SilenceRequest", errors=(400, 413, 503)),
    Route("/api/silences/<int:silence_id>", ("DELETE",), notify.remove_silence,
          "End a silence now", "notify", "Silence"),
    Route("/api/nodes/<nodekey:key>/maintenance", ("POST",), notify.node_maintenance,
          "Maintenance on (drain + silence) or off (undrain + end the silence)", "nodes",
          "Maintenance", body="MaintenanceRequest", errors=(400, 404, 413, 503)),
    Route("/api/workers", ("GET",), tasks.list_workers, "Connected task workers", "tasks",
          "WorkerList", errors=(503,)),
    Route("/api/cluster/topology", ("GET",), tasks.topology, "The master and nodes as a graph",
          "cluster", "Topology", errors=(503,)),
    Route("/api/cluster/flow", ("GET",), tasks.flow, "Task flow: submitted → node → outcome",
          "cluster", "Flow", query=(("window", rng(1, 30 * 86400), "seconds (3600)"),),
          errors=(400, 503)),
    Route("/api/cluster/stats", ("GET",), tasks.cluster_stats, "Broker figures and counters",
          "cluster", "Object", errors=(503,)),
    Route("/api/stats", ("GET",), tasks.dashboard_stats, "Dashboard figures", "cluster", "Object",
          errors=(503,)),
    Route("/api/ssh/pool/stats", ("GET",), ssh.pool_stats, "SSH pool figures per host", "ssh",
          "SSHPool", errors=(503,)),
    Route("/api/ssh/pool/cleanup", ("POST",), ssh.pool_cleanup, "Close idle SSH connections",
          "ssh", "Cleanup", errors=(503,)),
    Route("/api/ssh/execute", ("POST",), ssh.execute, "Run a command on one node over SSH", "ssh",
          "SSHResult", body="SSHExecute", errors=(400, 404, 413, 503)),
    Route("/api/ssh/broadcast", ("POST",), ssh.broadcast, "Run a command on many nodes at once",
          "ssh", "SSHBroadcast", body="SSHBroadcastRequest", errors=(400, 404, 413, 503)),
    Route("/api/ssh/trust", ("POST",), ssh.trust, "Trust a node's current SSH host key", "ssh",
          "Object", body="SSHTrust", errors=(400, 404, 413, 503)),
    Route("/api/ssh/audit", ("GET",), ssh.audit, "SSH audit log, newest first", "ssh", "AuditList",
          query=(("limit", rng(1, 10_000), "1-10000 (100)"), ("node", "string", "one node"))),
    Route("/api/bus", ("GET",), tasks.bus, "Bus endpoints and server key (open route)", "cluster",
          "Bus", errors=(503,), auth=False),
    Route("/api/bus/join", ("POST",), keys.join, "A node asks to join the secured bus (open route)",
          "cluster", "JoinStatus", body="JoinRequest", errors=(400, 409, 413, 503), auth=False,
          extra_ok=(202,)),
    Route("/api/keys", ("GET",), keys.list_keys, "Authorized and pending bus keys", "cluster",
          "Keys", errors=(503,)),
    Route("/api/keys/<name>/accept", ("POST",), keys.accept, "Let a pending node on the bus",
          "cluster", "JoinStatus", errors=(400, 404, 409, 503)),
    Route("/api/keys/<name>", ("DELETE",), keys.revoke, "Revoke a node's bus key", "cluster",
          "Object", errors=(400, 404, 409, 503)),
    Route("/api/keys/token", ("POST",), accounts.join_token, "Mint a join token (admin; ttl, uses)",
          "security", "Token", 201, body="JoinTokenRequest", errors=(400, 409, 413, 503)),
    Route("/api/keys/<name>/role", ("POST",), accounts.key_role, "Change a bus key's role (admin)",
          "security", "KeyRole", body="KeyRoleRequest", errors=(400, 404, 409, 413, 503)),
    Route("/api/me", ("GET",), accounts.me, "Who this request is: user, role, how it logged in",
          "security", "Me", errors=()),
    Route("/api/audit", ("GET",), accounts.audit,
          "Audit of state-changing requests, newest first (admin)", "security",
          "ControlAuditList",
          query=(("since", rng(0, 1 << 40), "epoch seconds"), ("who", "string", "caller"),
                 ("method", "string", "bus method, e.g. task.submit"),
                 ("limit", rng(1, 10_000), "1-10000 (100)")), errors=(400, 503)),
    Route("/api/users", ("GET",), accounts.list_users, "Web users and their roles (admin)",
          "security", "UserList", errors=(503,)),
    Route("/api/users", ("POST",), accounts.add_user, "Add a web user (admin)", "security", "User",
          201, body="UserAdd", errors=(400, 409, 413, 503)),
    Route("/api/users/<name>", ("PATCH",), accounts.change_user, "New password and/or role (admin)",
          "security", "User", body="UserChange", errors=(400, 404, 413, 503)),
    Route("/api/users/<name>", ("DELETE",), accounts.remove_user, "Remove a web user (admin)",
          "security", "Object", errors=(400, 404, 503)),
    Route("/api/tokens", ("GET",), accounts.list_tokens,
          "API and join tokens, without secrets (admin)", "security", "TokenList",
          query=(("kind", {"type": "string", "enum": ["api", "join"]}, "api or join"),),
          errors=(400, 503)),
    Route("/api/tokens", ("POST",), accounts.create_token,
          "Create an API token (admin; shown once)", "security", "Token", 201,
          body="TokenCreate", errors=(400, 413, 503)),
    Route("/api/tokens/<int:token_id>", ("DELETE",), accounts.revoke_token,
          "Revoke a token (admin)", "security", "Object", errors=(400, 404, 503)),
    Route("/api/backup", ("POST",), backups.run_backup,
          "Back the database up now, on the master (admin); answers when the copy is checked",
          "backup", "Backup", 201, query=(("keep_days", rng(0, 36500),
                                            "then remove this tool's copies older than this"),),
          errors=(400, 409, 500, 503)),
    Route("/api/backup", ("GET",), backups.backup_status,
          "The master's periodic backup: every, keep_days, last result, next (admin)",
          "backup", "BackupStatus", errors=(503,)),
    Route("/api/backup/schedule", ("PUT",), backups.backup_schedule,
          "Set the master's periodic backup (admin; every 0 or 'off' stops it)", "backup",
          "BackupStatus", body="BackupScheduleRequest", errors=(400, 413, 503)),
    Route("/api/openapi.json", ("GET",), tasks.openapi, "This specification", "meta", "Object",
          errors=()),
    Route("/healthz", ("GET",), tasks.healthz, "Liveness: broker reachability and store state",
          "meta", "Healthz", errors=(503,), auth=False),
    Route("/metrics", ("GET",), tasks.metrics, "Prometheus metrics", "meta", "Text", errors=()),
)


def register(app, routes=ROUTES) -> None:
    for i, route in enumerate(routes):
        app.add_url_rule(route.rule, endpoint=f"r{i}_{route.view.__name__}", view_func=route.view,
                         methods=list(route.methods))
