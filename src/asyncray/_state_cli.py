"""``asyncray list | summary | memory | timeline``: the state API against a running head.

Spelled as Ray's ``ray list tasks --filter "state=RUNNING" --format json``,
``ray summary tasks``, ``ray memory`` and ``ray timeline``. Each command joins
the head as a short-lived driver of its own, asks, and leaves.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

# What ``asyncray list`` lists: the command's word → the state API's function name.
RESOURCES = {
    "tasks": "list_tasks",
    "actors": "list_actors",
    "objects": "list_objects",
    "workers": "list_workers",
    "placement-groups": "list_placement_groups",
    "nodes": "list_nodes",
}
SUMMARIES = {
    "tasks": "summarize_tasks",
    "actors": "summarize_actors",
    "objects": "summarize_objects",
}


def add_commands(commands: Any, address_help: str) -> None:
    """The ``list``, ``summary``, ``memory`` and ``timeline`` subcommands."""
    listing = commands.add_parser("list", help="list tasks, actors, objects, ... of the head")
    listing.add_argument("resource", choices=sorted(RESOURCES))
    listing.add_argument(
        "-f",
        "--filter",
        action="append",
        default=[],
        help='KEY=VALUE or KEY!=VALUE, e.g. --filter "state=RUNNING" (repeatable: all must hold)',
    )
    listing.add_argument("--limit", type=int, default=100, help="at most this many rows")
    listing.add_argument("--detail", action="store_true", help="every column")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    listing.add_argument("--address", default=None, help=address_help)

    summary = commands.add_parser("summary", help="counts of tasks, actors or objects by state")
    summary.add_argument("resource", choices=sorted(SUMMARIES))
    summary.add_argument("--format", choices=("table", "json"), default="table")
    summary.add_argument("--address", default=None, help=address_help)

    memory = commands.add_parser("memory", help="objects by size, references, spilled bytes")
    memory.add_argument("--limit", type=int, default=100, help="at most this many objects")
    memory.add_argument("--address", default=None, help=address_help)

    timeline = commands.add_parser("timeline", help="write a Chrome trace of the tasks run")
    timeline.add_argument("--output", default=None, help="the file (default: in the temp dir)")
    timeline.add_argument("--address", default=None, help=address_help)


def run(args: argparse.Namespace, connect: Callable[[str | None], Any]) -> int:
    """Run one of the commands; ``connect(address)`` is a context manager joining the head."""
    with connect(args.address):
        if args.command == "list":
            return _list(args)
        if args.command == "summary":
            return _summary(args)
        if args.command == "memory":
            return _memory(args)
        return _timeline(args)


def parse_filters(specs: list[str]) -> list[tuple[str, str, str]]:
    """``["state=RUNNING", "name!=f"]`` → Ray's filter tuples.

    Raises:
        ValueError: a filter without ``=``.
    """
    filters = []
    for spec in specs:
        if "!=" in spec:
            key, value = spec.split("!=", 1)
            predicate = "!="
        elif "=" in spec:
            key, value = spec.split("=", 1)
            predicate = "="
        else:
            raise ValueError(
                f"Invalid filter {spec!r}: write KEY=VALUE or KEY!=VALUE, "
                'e.g. --filter "state=RUNNING".'
            )
        filters.append((key.strip(), predicate, value.strip()))
    return filters


def _list(args: argparse.Namespace) -> int:
    from .util import state

    lister = getattr(state, RESOURCES[args.resource])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = lister(filters=parse_filters(args.filter), limit=args.limit, detail=args.detail)
    dicts = [row.asdict() for row in rows]
    if not args.detail:
        columns = type(rows[0]).list_columns(detail=False) if rows else []
        dicts = [{c: d[c] for c in columns} for d in dicts]
    if args.format == "json":
        print(json.dumps(dicts, indent=2, default=str))
    elif not dicts:
        print("No resource in the cluster")
    else:
        print(f"======== List: {time.strftime('%Y-%m-%d %H:%M:%S')} ========")
        print("Stats:\n------------------------------")
        print(f"Total: {len(dicts)}\n")
        print(f"Table:\n------------------------------\n{_table(dicts)}")
    for warning in caught:
        print(str(warning.message))
    return 0


def _summary(args: argparse.Namespace) -> int:
    from .util import state

    result = getattr(state, SUMMARIES[args.resource])()["cluster"]
    if args.format == "json":
        print(json.dumps(result, indent=2, default=str))
        return 0
    print(f"======== {args.resource.capitalize()} Summary: {time.strftime('%Y-%m-%d %H:%M:%S')}")
    print("Stats:\n------------------------------------")
    for key, value in result.items():
        if key != "summary":
            print(f"{key}: {value}")
    print(f"\nTable (group by {result['summary_by']}):\n------------------------------------")
    rows = []
    for name, entry in result["summary"].items():
        counts = entry.get("state_counts") or entry.get("task_state_counts") or {}
        row = {"NAME": name}
        if "type" in entry:
            row["TYPE"] = entry["type"]
        row["STATE_COUNTS"] = "  ".join(f"{s}: {n}" for s, n in sorted(counts.items()))
        if "total_size_mb" in entry:
            row["TOTAL_SIZE_MB"] = f"{entry['total_size_mb']:.3f}"
        rows.append(row)
    print(_table(rows))
    return 0


def _memory(args: argparse.Namespace) -> int:
    from . import _api
    from .util import state

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        objects = state.list_objects(limit=state.MAX_LIMIT)
    _, raw = _api.state_rows("objects")
    detail = {row["object_id"]: row for row in raw}
    status = _api.session_status()
    store = status["objects"]
    ordered = sorted(objects, key=lambda o: o.object_size, reverse=True)
    rows = [
        {
            "OBJECT_ID": o.object_id,
            "SIZE": _bytes(o.object_size),
            "WHERE": detail.get(o.object_id, {}).get("location", ""),
            "REFS": detail.get(o.object_id, {}).get("ref_count", ""),
            "STATUS": o.task_status,
        }
        for o in ordered[: args.limit]
    ]
    print("======== Object references ========")
    print(_table(rows) if rows else "(no objects)")
    print("\n======== Object store ========")
    print(
        f"{store['count']} objects; shared memory {_bytes(store['store_used'])} used of "
        f"{_bytes(store['store_capacity'])}; {_bytes(store['spilled_bytes'])} spilled to disk"
    )
    return 0


def _timeline(args: argparse.Namespace) -> int:
    from . import timeline

    path = args.output or os.path.join(
        tempfile.gettempdir(), f"asyncray-timeline-{time.strftime('%Y-%m-%d_%H-%M-%S')}.json"
    )
    timeline(path)
    print(f"Trace file written to {path}")
    print("Open it in chrome://tracing or https://ui.perfetto.dev")
    return 0


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    columns = list(rows[0])
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"
