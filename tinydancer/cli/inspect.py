"""`tinydancer inspect FILE`: what a model file holds (version, mode, config, calibration)."""

from __future__ import annotations

import argparse
import json

from tinydancer.cli import Command

__all__ = ["COMMAND", "add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file")


def run(args: argparse.Namespace) -> int:
    from tinydancer.model.weights import load_model

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


COMMAND = Command("inspect", "describe a model file", add_arguments, run)
