"""`tinydancer analytics --db FILE|EXPORT_DIR REPORT`: a history report as a table, JSON or CSV."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import date, datetime
from typing import Any, TextIO

from tinydancer.cli import Command

__all__ = ["COMMAND", "add_arguments", "format_table", "run", "write_csv", "write_json"]


def add_arguments(analytics: argparse.ArgumentParser) -> None:
    analytics.add_argument(
        "--db", required=True, help="history .duckdb file (writer stopped) or export directory"
    )
    analytics.add_argument(
        "report", help="agents, savings, timeseries, breakers, gateway, models or integrity"
    )
    analytics.add_argument("--since", help="window start, UTC: ISO-8601 or Unix seconds")
    analytics.add_argument("--until", help="window end (exclusive), UTC: ISO-8601 or Unix seconds")
    analytics.add_argument("--bucket", default="hour", help="timeseries bucket: hour or day")
    output = analytics.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the rows as JSON")
    output.add_argument("--csv", action="store_true", help="print the rows as CSV")


def run(args: argparse.Namespace) -> int:
    from tinydancer.history.analytics import (
        REPORT_COLUMNS,
        HistoryReader,
        check_bucket,
        check_report,
        parse_time,
    )

    # Check every argument before touching the file, so a typo is reported as such.
    report = check_report(args.report)
    check_bucket(args.bucket)
    parse_time(args.since, "since")
    parse_time(args.until, "until")
    with HistoryReader(args.db) as reader:
        rows = reader.report(report, since=args.since, until=args.until, bucket=args.bucket)
    columns = REPORT_COLUMNS[report]
    if args.json:
        write_json(rows, sys.stdout)
    elif args.csv:
        write_csv(rows, columns, sys.stdout)
    else:
        print(format_table(rows, columns))
    return 0


def _plain(value: Any) -> Any:
    """A JSON-ready value: times as ISO-8601, maps as they are."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def write_json(rows: list[dict[str, Any]], out: TextIO) -> None:
    json.dump([{k: _plain(v) for k, v in row.items()} for row in rows], out, indent=2)
    out.write("\n")


def write_csv(rows: list[dict[str, Any]], columns: tuple[str, ...], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        cells = []
        for name in columns:
            value = _plain(row.get(name))
            cells.append(
                "" if value is None else json.dumps(value) if isinstance(value, dict) else value
            )
        writer.writerow(cells)


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, dict):
        return " ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value)


def format_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """Aligned columns, numbers right-aligned; '(no rows)' when there are none."""
    if not rows:
        return "  ".join(columns) + "\n(no rows)"
    cells = [[_cell(row.get(name)) for name in columns] for row in rows]
    widths = [max(len(name), *(len(r[i]) for r in cells)) for i, name in enumerate(columns)]
    numeric = [
        all(isinstance(row.get(name), int | float) or row.get(name) is None for row in rows)
        for name in columns
    ]
    header = (
        n.rjust(w) if r else n.ljust(w) for n, w, r in zip(columns, widths, numeric, strict=True)
    )
    lines = ["  ".join(header).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for line in cells:
        lines.append(
            "  ".join(
                c.rjust(w) if r else c.ljust(w)
                for c, w, r in zip(line, widths, numeric, strict=True)
            ).rstrip()
        )
    return "\n".join(lines)


COMMAND = Command(
    "analytics",
    "a report over the routing history (DuckDB file or Parquet exports)",
    add_arguments,
    run,
)
