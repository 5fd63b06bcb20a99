"""tinydancer.cli: built-in commands, discovery through entry points, one line per error."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

import tinydancer.cli as cli
from tinydancer.cli import BUILTIN_COMMANDS, ENTRY_POINT_GROUP, Command, discover_commands

ENGINE_COMMANDS = {"train", "eval", "replay", "promote", "analytics", "inspect", "demo"}


def test_help_lists_every_command_including_those_of_the_serving_layer():
    out = subprocess.run(
        [sys.executable, "-m", "tinydancer", "--help"], capture_output=True, text=True, check=True
    ).stdout
    listed = out.split("{", 1)[1].split("}", 1)[0].split(",")
    assert set(listed) == ENGINE_COMMANDS | {"serve"}


def test_each_builtin_command_lives_in_its_own_module():
    names = [__import__(m, fromlist=["COMMAND"]).COMMAND.name for m in BUILTIN_COMMANDS]
    assert sorted(names) == sorted(ENGINE_COMMANDS)
    for module in BUILTIN_COMMANDS:
        assert module.rsplit(".", 1)[1] in {"evaluate", *ENGINE_COMMANDS}


def _fake_entry_points(found: list[EntryPoint]):
    def entry_points(*, group: str) -> list[EntryPoint]:
        assert group == ENTRY_POINT_GROUP
        return found

    return entry_points


def test_a_discovered_command_is_added_and_replaces_a_builtin_of_the_same_name(monkeypatch):
    extra = Command("hello", "say hello", lambda parser: None, lambda args: 7)
    demo = Command("demo", "another demo", lambda parser: None, lambda args: 8)
    monkeypatch.setattr(sys.modules[__name__], "_EXTRA", extra, raising=False)
    monkeypatch.setattr(sys.modules[__name__], "_DEMO", demo, raising=False)
    monkeypatch.setattr(
        cli,
        "entry_points",
        _fake_entry_points(
            [
                EntryPoint("hello", f"{__name__}:_EXTRA", ENTRY_POINT_GROUP),
                EntryPoint("demo", f"{__name__}:_DEMO", ENTRY_POINT_GROUP),
            ]
        ),
    )
    commands = discover_commands()
    assert commands["hello"] is extra and commands["demo"] is demo
    assert cli.main(["hello"]) == 7


def test_an_entry_point_that_is_not_a_command_is_named_in_the_error(monkeypatch):
    monkeypatch.setattr(
        cli,
        "entry_points",
        _fake_entry_points([EntryPoint("bad", "json:dumps", ENTRY_POINT_GROUP)]),
    )
    with pytest.raises(
        TypeError, match=r"entry point bad = json:dumps .*expected a tinydancer\.cli\.Command"
    ):
        discover_commands()
