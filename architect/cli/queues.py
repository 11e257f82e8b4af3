"""`architect queues`: each queue's depth, running tasks, limits and oldest waiting task;
`architect queues set NAME --concurrency 2 --rate 5/s` changes its limits at runtime."""

from __future__ import annotations

import click

from architect.cli.common import call, print_json, print_table

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group(invoke_without_command=True)
@json_option
@click.pass_context
def queues(ctx, as_json):
    """Queues and their limits. Without a command: the table (depth, running, rate,
    concurrency, oldest waiting task's age, and why its tasks are held).

    \b
      architect queues
      architect queues set reports --concurrency 2 --rate 5/s
      architect queues set reports --no-limits
    """
    if ctx.invoked_subcommand is not None:
        return
    rows = call(ctx, "queue.list")
    if as_json:
        return print_json(rows)
    if not rows:
        return click.echo("no queues with tasks or limits")
    print_table([{**r, "age": None if r["oldest_age"] is None else f"{r['oldest_age']:.1f}s"}
                 for r in rows],
                [("queue", "name"), ("queued", "queued"), ("running", "running"),
                 ("concurrency", "concurrency"), ("rate", "rate"), ("oldest", "age"),
                 ("held", "held")])


@queues.command("set")
@click.argument("name")
@click.option("--concurrency", type=click.IntRange(1, 1_000_000),
              help="At most this many of its tasks assigned or running, cluster-wide.")
@click.option("--rate", help="At most N starts per second or minute: 5/s, 100/m.")
@click.option("--no-limits", is_flag=True, help="Remove both limits.")
@json_option
@click.pass_context
def set_(ctx, name, concurrency, rate, no_limits, as_json):
    """Set a queue's limits (they apply at once and are kept in the database). The limits
    given replace the queue's old ones."""
    if no_limits and (concurrency or rate):
        raise click.UsageError("--no-limits takes no --concurrency or --rate")
    if not no_limits and concurrency is None and rate is None:
        raise click.UsageError("give --concurrency, --rate or --no-limits")
    out = call(ctx, "queue.set", {"name": name, "concurrency": concurrency, "rate": rate})
    if as_json:
        return print_json(out)
    click.echo(f"queue {name}: concurrency {out['concurrency'] or 'no limit'}, "
               f"rate {out['rate'] or 'no limit'}")
