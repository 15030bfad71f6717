"""The Backfills page (docs/backfills.md): its session of commands, taken from the page, run in order against the
site `make run` starts, and every output line the page shows found in what each command printed (times aside)."""

import re

import pytest

from .dev_site import ROOT

pytestmark = pytest.mark.slow

PAGE = ROOT / "docs" / "backfills.md"
PROMPT = re.compile(r'^\$ make manage ARGS="(?P<args>[^"]+)"$')
# Durations differ from run to run: "…; 0.1 s" and "3 members, 0 s".
DURATION = re.compile(r"\b\d+(\.\d+)? s\b")


def shown_session(text: str) -> list[tuple[str, list[str]]]:
    """(args, the lines the page shows for it) for every `$ make manage ARGS="…"` in the page's text blocks, in
    order; `…` stands for lines the page leaves out."""
    session = []
    for block in re.findall(r"^```text\n(.*?)^```", text, re.M | re.S):
        for line in block.splitlines():
            prompt = PROMPT.match(line)
            if prompt:
                session.append((prompt["args"], []))
            elif line.strip() and line.strip() != "…":
                assert session, f"an output line before any command: {line!r}"
                session[-1][1].append(line)
    return session


def without_durations(line: str) -> str:
    return DURATION.sub("N s", line.rstrip())


def test_the_page_shows_the_session_it_lists():
    text = PAGE.read_text()
    listed = re.findall(r'^ +make manage ARGS="([^"]+)"$', text, re.M)
    assert [args for args, _ in shown_session(text)] == listed
    production = re.findall(r"^ +python manage.py (.+)$", text, re.M)
    assert production == listed, "the production tab lists other commands than the development one"


def test_the_backfills_session_against_make_run(dev_server):
    for args, expected in shown_session(PAGE.read_text()):
        result = dev_server.manage(args)
        printed = [without_durations(line) for line in (result.stdout + result.stderr).splitlines()]
        missing = [line for line in expected if without_durations(line) not in printed]
        assert not missing, f"make manage ARGS={args!r} did not print what the page shows:\n" + "\n".join(printed)
