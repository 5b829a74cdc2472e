"""docs/ci.md stays true: its CI files parse, and every `slipway` command in it is one the CLI accepts."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from slipway_cli.main import build_parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "ci.md"
BLOCKS = re.findall(r"```(\w+)\n(.*?)```", DOC.read_text(), flags=re.S)
SHELL_ENDS = {")", "|", ">", ">>", ";", "&&", "||"}


def _commands() -> list[str]:
    """Each `slipway ...` invocation in the doc's code blocks, continuation lines joined."""
    text = "\n".join(body for _, body in BLOCKS).replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        for match in re.finditer(r"(?:^|[\s$(])slipway (.+)", line):
            if not match.group(1).startswith("--version"):
                found.append(match.group(1))
    return found


def test_the_ci_examples_are_valid_yaml():
    examples = [body for lang, body in BLOCKS if lang == "yaml"]
    assert len(examples) == 2
    github, gitlab = (yaml.safe_load(body) for body in examples)
    assert {"train", "validate", "deploy"} <= set(github["jobs"]) and {"train", "validate", "deploy"} <= set(gitlab)


@pytest.mark.parametrize("command", _commands(), ids=lambda command: command.split()[0])
def test_every_documented_command_parses(command: str):
    words = []
    for word in shlex.split(command.replace(")", " ) "), comments=True):
        if word in SHELL_ENDS:
            break
        words.append(word)
    build_parser().parse_args(words)  # SystemExit on a wrong option or a missing argument


def test_the_doc_shows_the_commands_a_pipeline_needs():
    used = {command.split()[0] for command in _commands()}
    assert {"push", "report", "gate", "approve", "deploy", "rollback"} <= used
