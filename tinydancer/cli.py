"""The `tinydancer` command line: one sub-command per job, each in its own module.

tinydancer demo                 # the main job on embedded defaults; prints a summary, exits
tinydancer train ...            # fit a model and write safetensors
tinydancer promote ...          # install a model retrained from history, if no worse
tinydancer inspect FILE         # what a model file holds
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from tinydancer._errors import TinyDancerError

__all__ = ["main"]


def _cmd_inspect(args: argparse.Namespace) -> int:
    from tinydancer.weights import load_model

    model = load_model(args.file)
    summary = {
        "version": model.version,
        "mode": model.mode,
        "config": json.loads(model.config.to_json()),
        "embedding": model.embedding.to_dict(),
        "size_bytes": model.size_bytes,
        "sparsity": round(model.sparsity, 4),
        "conformal": {
            "alpha": model.calibration.alpha,
            "n": model.calibration.n,
            "qhat": model.calibration.qhat(),
        },
        "info": model.info,
    }
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from tinydancer import _cli_train

    return _cli_train.run(args)


def _cmd_eval(args: argparse.Namespace) -> int:
    from tinydancer import _cli_eval

    return _cli_eval.run_eval(args)


def _cmd_promote(args: argparse.Namespace) -> int:
    from tinydancer import _cli_learning

    return _cli_learning.run_promote(args)


def _add_window_arguments(parser: argparse.ArgumentParser) -> None:
    """--since / --until: the decision-time window read from a history (with --history)."""
    parser.add_argument("--since", help="history: decisions at or after (Unix s or ISO 8601)")
    parser.add_argument("--until", help="history: decisions before (Unix s or ISO 8601)")


def _cmd_replay(args: argparse.Namespace) -> int:
    from tinydancer import _cli_eval

    return _cli_eval.run_replay(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.in_process:
        from tinydancer import _cli_demo

        return _cli_demo.run(args)
    from cluster.demo import run_demo  # the Ray layer; the engine itself never imports ray

    run_demo(
        requests_total=args.requests,
        concurrency=args.concurrency,
        seed=args.seed,
        data=args.data,
        port=args.port,
        as_json=args.json,
    )
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from cluster.serve_cli import run_serve

    return run_serve(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinydancer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {}

    demo = sub.add_parser(
        "demo", help="start the local cluster, drive a workload through it, summarise, exit"
    )
    demo.add_argument("--requests", type=int, default=2000, help="number of routing requests")
    demo.add_argument("--concurrency", type=int, default=8, help="concurrent clients")
    demo.add_argument(
        "--data", help="replay a routing-outcomes split instead of the synthetic workload"
    )
    demo.add_argument("--port", type=int, default=8000, help="HTTP port on 127.0.0.1")
    demo.add_argument(
        "--in-process", action="store_true", help="candidate mode in this process, no Ray"
    )
    demo.add_argument(
        "--candidates", type=int, default=50, help="candidates per request (--in-process)"
    )
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument(
        "--pin-core", type=int, default=None, help="pin this process to one core (--in-process)"
    )
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    commands["demo"] = _cmd_demo

    serve = sub.add_parser("serve", help="run the cluster on this machine until interrupted")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--history", default="tinydancer-data/history.duckdb", help="DuckDB history file"
    )
    serve.add_argument("--replicas", type=int, default=1, help="router replicas (fixed)")
    serve.add_argument(
        "--max-replicas", type=int, default=None, help="enable autoscaling up to this many"
    )
    serve.add_argument(
        "--num-cpus", type=int, default=2, help="CPUs given to the local Ray instance"
    )
    serve.add_argument(
        "--metrics-port", type=int, default=8080, help="Ray's Prometheus metrics port"
    )
    serve.add_argument(
        "--request-timeout-s",
        type=float,
        default=None,
        help="the proxy answers 408 after this long without a response "
        "(default: cluster.runner.REQUEST_TIMEOUT_S, 10 s; 0: wait forever)",
    )
    commands["serve"] = _cmd_serve

    train = sub.add_parser("train", help="train a model and write it as safetensors")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="agent mode: a routing-outcomes split directory")
    source.add_argument(
        "--synthetic-candidates",
        action="store_true",
        help="candidate mode, on the documented synthetic generator",
    )
    source.add_argument(
        "--history",
        help="agent mode: retrain on a DuckDB history file or its Parquet export directory",
    )
    train.add_argument("--model", help="parent model to start from (with --history)")
    _add_window_arguments(train)
    train.add_argument("--out", required=True, help="output .safetensors file")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--queries", type=int, default=3000, help="synthetic queries (candidate mode)"
    )
    train.add_argument("--json", action="store_true", help="print the training summary as JSON")
    commands["train"] = _cmd_train

    evaluate = sub.add_parser("eval", help="evaluate an agent model and baselines on a test split")
    evaluated_on = evaluate.add_mutually_exclusive_group(required=True)
    evaluated_on.add_argument("--data", help="test split directory")
    evaluated_on.add_argument(
        "--history", help="off-policy estimates on a DuckDB history file or its Parquet export"
    )
    evaluate.add_argument("--model", required=True, help="agent-mode model file")
    evaluate.add_argument("--serving", help="with --history: compare against this serving model")
    _add_window_arguments(evaluate)
    evaluate.add_argument("--train", help="training split (enables the kNN and logistic baselines)")
    evaluate.add_argument("--json", action="store_true", help="print exactly the documented JSON")
    evaluate.add_argument("--plot", help="write the cost-quality curves to this PNG")
    evaluate.add_argument(
        "--bootstrap", type=int, default=1000, help="paired-bootstrap rounds (0 = none)"
    )
    evaluate.add_argument("--bootstrap-json", help="write the bootstrap intervals to this file")
    evaluate.add_argument("--seed", type=int, default=0)
    commands["eval"] = _cmd_eval

    promote = sub.add_parser(
        "promote",
        help="install a candidate model unless the history says it is worse than the serving one",
    )
    promote.add_argument("--history", required=True, help="DuckDB history file or Parquet export")
    promote.add_argument("--candidate", required=True, help="the new agent-mode model file")
    promote.add_argument("--serving", required=True, help="the model serving now")
    promote.add_argument("--to", required=True, help="where to install the candidate (atomic)")
    promote.add_argument(
        "--force", action="store_true", help="promote even if the estimate is lower"
    )
    promote.add_argument("--bootstrap", type=int, default=1000, help="bootstrap rounds")
    promote.add_argument("--seed", type=int, default=0)
    _add_window_arguments(promote)
    promote.add_argument("--json", action="store_true")
    commands["promote"] = _cmd_promote

    replay = sub.add_parser(
        "replay", help="online evaluation: stream a split, reveal only chosen outcomes"
    )
    replay.add_argument("--data", required=True, help="split directory to stream")
    replay.add_argument("--model", required=True, help="agent-mode model file")
    replay.add_argument(
        "--drift", help="agent whose quality drops to 0 half-way ('auto' = the busiest)"
    )
    replay.add_argument("--passes", type=int, default=1, help="stream the split this many times")
    replay.add_argument(
        "--willingness-to-pay", type=float, help="USD per unit of quality (default: calibrated)"
    )
    replay.add_argument("--seed", type=int, default=0)
    replay.add_argument("--json", action="store_true")
    commands["replay"] = _cmd_replay

    inspect = sub.add_parser("inspect", help="describe a model file")
    inspect.add_argument("file")
    commands["inspect"] = _cmd_inspect

    def _cmd_analytics(args: argparse.Namespace) -> int:
        from tinydancer import _cli_analytics

        return _cli_analytics.run(args)

    analytics = sub.add_parser(
        "analytics", help="a report over the routing history (DuckDB file or Parquet exports)"
    )
    analytics.add_argument(
        "--db", required=True, help="history .duckdb file (writer stopped) or export directory"
    )
    analytics.add_argument(
        "report", help="agents, savings, timeseries, breakers, models or integrity"
    )
    analytics.add_argument("--since", help="window start, UTC: ISO-8601 or Unix seconds")
    analytics.add_argument("--until", help="window end (exclusive), UTC: ISO-8601 or Unix seconds")
    analytics.add_argument("--bucket", default="hour", help="timeseries bucket: hour or day")
    output = analytics.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the rows as JSON")
    output.add_argument("--csv", action="store_true", help="print the rows as CSV")
    commands["analytics"] = _cmd_analytics

    parser.set_defaults(_commands=commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args._commands[args.command]
    try:
        return handler(args)
    except TinyDancerError as exc:
        print(f"tinydancer {args.command}: {exc}", file=sys.stderr)
        return 2


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
