"""The history paths of `tinydancer train`, `tinydancer eval` and `tinydancer promote`.

    tinydancer train --history history.duckdb --model serving.safetensors --out new.safetensors
    tinydancer eval --history exports/ --model new.safetensors --serving serving.safetensors
    tinydancer promote --history exports/ --candidate new.safetensors \\
        --serving serving.safetensors --to live.safetensors

`promote` exits with 3 when it refuses (the candidate's DR utility estimate is below the
serving model's), 2 on bad input, 0 when it promoted.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from tinydancer.cli import Command, add_window_arguments
from tinydancer.errors import ConfigError

__all__ = [
    "COMMAND",
    "REFUSED",
    "add_arguments",
    "run",
    "run_eval_from_history",
    "run_train_from_history",
]

REFUSED = 3  # exit code of a refused promotion


def add_arguments(promote: argparse.ArgumentParser) -> None:
    promote.add_argument("--history", required=True, help="DuckDB history file or Parquet export")
    promote.add_argument("--candidate", required=True, help="the new agent-mode model file")
    promote.add_argument("--serving", required=True, help="the model serving now")
    promote.add_argument("--to", required=True, help="where to install the candidate (atomic)")
    promote.add_argument(
        "--force", action="store_true", help="promote even if the estimate is lower"
    )
    promote.add_argument("--bootstrap", type=int, default=1000, help="bootstrap rounds")
    promote.add_argument("--seed", type=int, default=0)
    add_window_arguments(promote)
    promote.add_argument("--json", action="store_true")


def _moment(text: str | None, flag: str) -> float | datetime | None:
    """Unix seconds or an ISO 8601 time (naive = UTC)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"{flag}: got {text!r}; expected Unix seconds or an ISO 8601 time"
        ) from None


def _logged(args: argparse.Namespace) -> Any:
    from tinydancer.history.learning import load_logged

    since = _moment(getattr(args, "since", None), "--since")
    until = _moment(getattr(args, "until", None), "--until")
    return load_logged(args.history, since=since, until=until)


def _interval(value: dict[str, float], digits: int = 4) -> str:
    return (
        f"{value['estimate']:.{digits}f} "
        f"[{value['low_95']:.{digits}f}, {value['high_95']:.{digits}f}]"
    )


def run_train_from_history(args: argparse.Namespace) -> int:
    from tinydancer.history.learning import train_from_history
    from tinydancer.model.weights import load_model, save_model

    logged = _logged(args)
    parent = load_model(args.model, expect_mode="agent") if args.model else None
    model, report = train_from_history(logged, parent, seed=args.seed)
    path = save_model(model, args.out)
    report = {"out": str(path), **report, "version": model.version}
    if args.json:
        print(json.dumps(report, indent=2, default=str))
        return 0
    lineage, weights = report["lineage"], report["importance_weights"]
    print(
        f"wrote {path} (version {model.version}, {model.size_bytes} bytes of weights, "
        f"sparsity {model.sparsity:.2f})"
    )
    print(f"  data: {lineage['data']}, {lineage['window'][0]} .. {lineage['window'][1]}")
    print(f"  rows: {report['rows']}, fitted on {lineage['rows']['training']}")
    print(f"  parent: {lineage['parent_model']}; agents: {report['agents']}")
    print(
        f"  weighting: {lineage['weighting']}; {weights['clipped_share']:.1%} clipped, "
        f"effective sample size {weights['effective_sample_size']:.0f}"
    )
    print(f"  validation_brier: {report['validation_brier']:.4f}")
    print(f"  willingness to pay (USD per unit quality): {report['willingness_to_pay']}")
    return 0


def _print_value(name: str, value: dict[str, Any]) -> None:
    print(f"{name} {value['model']}:")
    print(f"  {'':16s} {'quality':>24s} {'cost (USD)':>30s} {'utility':>24s}")
    for group in ("logging_policy", "ips", "dr"):
        row = value[group]
        print(
            f"  {group:16s} {_interval(row['quality']):>24s} "
            f"{_interval(row['cost_usd'], 6):>30s} {_interval(row['utility']):>24s}"
        )
    print(
        f"  effective sample size {value['effective_sample_size']:.0f} of "
        f"{value['decisions']} ({value['effective_sample_share']:.1%}); agrees with the log on "
        f"{value['agreement_with_log']:.1%}; traffic {_shares(value['target_traffic_share'])}"
    )
    if value.get("training_window_overlap"):
        print(
            f"  warning: {value['training_window_overlap']:.0%} of these decisions fall in the "
            "model's training window; estimate on later traffic (--since) for an honest value"
        )


def _shares(shares: dict[str, float]) -> str:
    return ", ".join(f"{agent} {share:.0%}" for agent, share in shares.items())


def run_eval_from_history(args: argparse.Namespace) -> int:
    from tinydancer.history.learning import compare, off_policy_value
    from tinydancer.model.weights import load_model

    for flag in ("train", "plot", "bootstrap_json"):
        if getattr(args, flag, None):
            raise ConfigError(f"--{flag.replace('_', '-')} applies to --data evaluation only")
    logged = _logged(args)
    model = load_model(args.model, expect_mode="agent")
    rounds, seed = args.bootstrap, args.seed
    if args.serving:
        serving = load_model(args.serving, expect_mode="agent")
        result = compare(logged, model, serving, rounds=rounds, seed=seed)
    else:
        result = off_policy_value(logged, model, rounds=rounds, seed=seed)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"off-policy estimates on {len(logged)} logged decisions from {args.history}")
    if not args.serving:
        _print_value("model", result)
        return 0
    _print_value("candidate", result["candidate"])
    _print_value("serving", result["serving"])
    gap = result["difference"]["dr_utility"]
    print(
        f"DR utility difference (candidate - serving): {gap['estimate']:+.4f} "
        f"[{gap['low_95']:+.4f}, {gap['high_95']:+.4f}], P(>0) = {gap['share_positive']:.2f}"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    from tinydancer.history.learning import promote

    logged = _logged(args)
    result = promote(
        logged,
        args.candidate,
        args.serving,
        to=args.to,
        force=args.force,
        rounds=args.bootstrap,
        seed=args.seed,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    elif result.promoted:
        print(result.message)
    else:
        print(f"tinydancer promote: {result.message}", file=sys.stderr)
    return 0 if result.promoted else REFUSED


COMMAND = Command(
    "promote",
    "install a candidate model unless the history says it is worse than the serving one",
    add_arguments,
    run,
)
