"""The procedures the docs give are pasted as they are: every command of docs/tpu.md's shell blocks that names a
make target or a bench command names one that exists, with variables and flags that exist."""

from __future__ import annotations

import argparse
import re
import shlex

import pytest

from bench import cli
from tests.conftest import ROOT

DOCS = ["docs/tpu.md"]
WRAPPERS = {"nohup", "env", "sudo", "exec", "time"}


def shell_blocks(path: str) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", (ROOT / path).read_text(), re.M | re.S)


def commands(block: str) -> list[list[str]]:
    """Every simple command of a block, those inside quoted arguments too (tmux's, ssh's --command), as words."""
    block = re.sub(r"\\\n", " ", block)  # continued lines
    block = re.sub(r"(?m)(^|\s)#.*$", "", block)  # comments (no '#' inside a quoted word in these blocks)
    lexer = shlex.shlex(block, posix=True, punctuation_chars=";&|()<>\n")
    lexer.whitespace = " \t\r"
    lexer.commenters = ""
    out, current, target = [], [], False
    for word in lexer:
        if target:  # a redirection's file
            target = False
        elif set(word) <= set(";&|()<>\n") and set(word) & set("<>"):  # a redirection: its descriptor goes too
            current = current[:-1] if current and current[-1].isdigit() else current
            target = True
        elif set(word) <= set(";&|()\n"):
            out.append(current)
            current = []
        elif " " in word or "\n" in word:  # a quoted command line: its own commands
            out += commands(word)
        else:
            current.append(word)
    return [c for c in [*out, current] if c]


def bench_options() -> dict[str, set[str]]:
    (sub,) = [a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return {name: {o for a in p._actions for o in a.option_strings} for name, p in sub.choices.items()}


def make_names() -> tuple[set[str], set[str]]:
    """The Makefile's targets, and the variables it sets or reads."""
    text = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z][\w.-]*)\s*:(?!=)", text, re.M))
    read = set(re.findall(r"\$\(([A-Z_][A-Z0-9_]*)\)", text))
    return targets, read | set(re.findall(r"^([A-Z_][A-Z0-9_]*)\s*[?:]?=", text, re.M))


@pytest.mark.parametrize("path", DOCS)
def test_every_command_a_procedure_names_exists_with_its_flags(path):
    blocks = shell_blocks(path)
    assert len(blocks) >= 8, f"{path}: its shell blocks were not found"
    options, (targets, variables) = bench_options(), make_names()
    seen = {"make": 0, "bench": 0}
    for block in blocks:
        for words in commands(block):
            while words and (re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]) or words[0] in WRAPPERS):
                words = words[1:]  # the environment it is given, and what runs it (nohup, env, sudo)
            if not words:
                continue
            head = words[0]
            if head == "make":
                seen["make"] += 1
                for word in words[1:]:
                    if "=" in word:
                        assert word.split("=")[0] in variables, f"{path}: make variable {word!r} in {words}"
                    elif not word.startswith("-"):
                        assert word in targets, f"{path}: make target {word!r} in {words}"
            elif head.endswith("bin/bench"):
                seen["bench"] += 1
                command = words[1]
                assert command in options, f"{path}: bench {command!r} in {words}"
                for word in words[2:]:
                    if word.startswith("--"):
                        assert word.split("=")[0] in options[command], f"{path}: bench {command} {word} in {words}"
    assert seen["make"] >= 5 and seen["bench"] >= 8, seen
