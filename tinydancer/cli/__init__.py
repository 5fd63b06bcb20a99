"""The `tinydancer` command line: one sub-command per module, discovered at start.

    tinydancer train ...            # fit a model and write safetensors
    tinydancer eval ...             # evaluate a model and the baselines on a test split
    tinydancer replay ...           # online evaluation: only the chosen agent's outcome revealed
    tinydancer promote ...          # install a model retrained from history, if no worse
    tinydancer analytics ...        # a report over the routing history
    tinydancer inspect FILE         # what a model file holds
    tinydancer demo --in-process    # candidate mode in this process

The engine's own commands are the modules named in `BUILTIN_COMMANDS`; other packages
add theirs through the entry-point group ``tinydancer.commands`` (each entry point is a
`Command`), which is how the serving layer contributes `serve` and the full `demo`
without the engine knowing of it. A discovered command replaces a built-in of the same
name (it may call the built-in's `run` to keep its behaviour).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points

from tinydancer.errors import TinyDancerError

__all__ = ["BUILTIN_COMMANDS", "ENTRY_POINT_GROUP", "Command", "build_parser", "main"]

ENTRY_POINT_GROUP = "tinydancer.commands"
BUILTIN_COMMANDS = (
    "tinydancer.cli.demo",
    "tinydancer.cli.train",
    "tinydancer.cli.evaluate",
    "tinydancer.cli.replay",
    "tinydancer.cli.promote",
    "tinydancer.cli.analytics",
    "tinydancer.cli.inspect",
)


@dataclass(frozen=True)
class Command:
    """A sub-command: its name, one line of help, its arguments and what it runs.

    `run` returns the exit code; a `TinyDancerError` it raises is printed as one line and
    exits with 2.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def add_window_arguments(parser: argparse.ArgumentParser) -> None:
    """--since / --until: the decision-time window read from a history (with --history)."""
    parser.add_argument("--since", help="history: decisions at or after (Unix s or ISO 8601)")
    parser.add_argument("--until", help="history: decisions before (Unix s or ISO 8601)")


def discover_commands() -> dict[str, Command]:
    """Built-in commands, then those of the ``tinydancer.commands`` entry points."""
    commands: dict[str, Command] = {}
    for module in BUILTIN_COMMANDS:
        command = importlib.import_module(module).COMMAND
        commands[command.name] = command
    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        command = entry.load()
        if not isinstance(command, Command):
            raise TypeError(
                f"entry point {entry.name} = {entry.value} in group {ENTRY_POINT_GROUP}: "
                f"got {type(command).__name__}; expected a tinydancer.cli.Command"
            )
        commands[command.name] = command
    return commands


def build_parser(commands: dict[str, Command] | None = None) -> argparse.ArgumentParser:
    commands = discover_commands() if commands is None else commands
    parser = argparse.ArgumentParser(
        prog="tinydancer", description="Tiny Dancer: decide who should serve each AI request."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in commands.values():
        command.add_arguments(sub.add_parser(command.name, help=command.help))
    parser.set_defaults(_commands=commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Command = args._commands[args.command]
    try:
        return command.run(args)
    except TinyDancerError as exc:
        print(f"tinydancer {args.command}: {exc}", file=sys.stderr)
        return 2
