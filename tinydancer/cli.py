"""The `tinydancer` command line: one sub-command per job, each in its own module.

tinydancer demo                 # the main job on embedded defaults; prints a summary, exits
tinydancer train ...            # fit a model and write safetensors
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


def _cmd_replay(args: argparse.Namespace) -> int:
    from tinydancer import _cli_eval

    return _cli_eval.run_replay(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from tinydancer import _cli_demo

    return _cli_demo.run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinydancer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {}

    demo = sub.add_parser("demo", help="run a self-contained routing workload and print a summary")
    demo.add_argument("--requests", type=int, default=2000, help="number of routing requests")
    demo.add_argument("--candidates", type=int, default=50, help="candidates per request")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--pin-core", type=int, default=None, help="pin this process to one CPU core")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    commands["demo"] = _cmd_demo

    train = sub.add_parser("train", help="train a model and write it as safetensors")
    source = train.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="agent mode: a routing-outcomes split directory")
    source.add_argument(
        "--synthetic-candidates",
        action="store_true",
        help="candidate mode, on the documented synthetic generator",
    )
    train.add_argument("--out", required=True, help="output .safetensors file")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--queries", type=int, default=3000, help="synthetic queries (candidate mode)"
    )
    train.add_argument("--json", action="store_true", help="print the training summary as JSON")
    commands["train"] = _cmd_train

    evaluate = sub.add_parser("eval", help="evaluate an agent model and baselines on a test split")
    evaluate.add_argument("--data", required=True, help="test split directory")
    evaluate.add_argument("--model", required=True, help="agent-mode model file")
    evaluate.add_argument("--train", help="training split (enables the kNN and logistic baselines)")
    evaluate.add_argument("--json", action="store_true", help="print exactly the documented JSON")
    evaluate.add_argument("--plot", help="write the cost-quality curves to this PNG")
    evaluate.add_argument(
        "--bootstrap", type=int, default=1000, help="paired-bootstrap rounds (0 = none)"
    )
    evaluate.add_argument("--bootstrap-json", help="write the bootstrap intervals to this file")
    evaluate.add_argument("--seed", type=int, default=0)
    commands["eval"] = _cmd_eval

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
