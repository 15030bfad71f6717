"""The Getting started page (docs/index.md), run as a newcomer would: its `curl` commands, taken from the page
itself, sent over HTTP to the development server `make run` starts (scripts/run_dev.py: the emulator, the worker,
runserver), and its browser steps done with a logged-in `requests.Session`.

The server gets its own SQLite file and free ports whatever database the suite runs on (`make run` is the SQLite
development setup), and a fresh shell's environment: none of the site's settings, no `.env`.
"""

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.worker_processes import wait_for

from .dev_site import PAGE_EMULATOR, PAGE_SITE, DevServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "index.md"
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>\w*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)


# The page ---------------------------------------------------------------------------------------------------------


@dataclass
class Command:
    """A `curl` line of the page and the JSON the page says it answers (None: the page shows no answer)."""

    line: str
    answer: object = None


@dataclass
class Tour:
    printed: str = ""  # the excerpt of what `make run` prints
    commands: list[Command] = field(default_factory=list)
    manage: list[str] = field(default_factory=list)  # the ARGS of its `make manage ARGS="…"` lines
    text: str = ""


def read_page(path=PAGE) -> Tour:
    text = path.read_text()
    tour = Tour(text=text)
    for match in FENCE.finditer(text):
        indent, lang = match["indent"], match["lang"]
        body = "\n".join(line.removeprefix(indent) for line in match["body"].splitlines())
        if lang == "text" and "Webhook URLs" in body:
            tour.printed = body
        elif lang == "bash":
            tour.commands += [Command(line) for line in body.splitlines() if line.startswith("curl ")]
            tour.manage += re.findall(r'^make manage ARGS="([^"]+)"', body, re.M)
        elif lang == "json":
            assert tour.commands and tour.commands[-1].answer is None, f"a JSON answer with no curl before it:\n{body}"
            tour.commands[-1].answer = json.loads(body)
    assert tour.printed, "docs/index.md shows no excerpt of what `make run` prints"
    return tour


def printed_line(line: str, key=r"[\w-]+") -> str:
    """One line of the page's excerpt as a pattern: KEY stands for the access key, … for anything (the password)."""
    return re.escape(line.strip()).replace("KEY", key).replace("…", r"\S+")


def find_printed(excerpt: str, output: str) -> re.Match:
    """The page's excerpt of what `make run` prints, found in its output: the same lines in the same order (others
    may come between), the same key in every URL. Fails naming the lines `make run` does not print."""
    lines = [line for line in excerpt.splitlines() if line.strip()]
    pattern = r"(?:^|\n)\s*" + r"\s*\n(?:.*\n)*?\s*".join(printed_line(line, "\0") for line in lines)
    pattern = pattern.replace("\0", r"(?P<key>[\w-]+)", 1).replace("\0", "(?P=key)")
    match = re.search(pattern, output)
    missing = [line.strip() for line in lines if not re.search(printed_line(line), output)]
    assert match and not missing, f"make run does not print what docs/index.md shows; not printed: {missing}"
    return match


# The development server -------------------------------------------------------------------------------------------


# Running the page's commands --------------------------------------------------------------------------------------


def curl(server: DevServer, command: Command, key: str) -> requests.Response:
    """Send what the `curl` line sends (curl's -X, -d, -H and -s; anything else fails the test, so the page uses no
    option this reading would get wrong), and check the answer the page shows."""
    words = shlex.split(command.line)
    assert words[0] == "curl"
    method, data, headers, url = None, None, {}, None
    words = iter(words[1:])
    for word in words:
        if word in ("-X", "--request"):
            method = next(words)
        elif word in ("-d", "--data"):
            data = next(words)
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")  # what curl -d sends
        elif word in ("-H", "--header"):
            name, _, value = next(words).partition(":")
            headers[name.strip()] = value.strip().replace("KEY", key)
        elif word in ("-s", "--silent"):
            pass
        else:
            assert not word.startswith("-") and url is None, f"the test does not know {word!r}: {command.line}"
            url = server.url(word, key)
    method = method or ("POST" if data is not None else "GET")
    response = requests.request(method, url, data=data, headers=headers, timeout=30)
    assert response.status_code == 200, f"{command.line}\n{response.status_code} {response.text}"
    if command.answer is not None:
        answer = response.json()
        if isinstance(answer, list):  # a log: the page shows the entry that matters, without its time
            expected = command.answer
            assert any(entry | expected == entry for entry in answer), f"{command.line}\n{expected} not in {answer}"
        else:
            assert answer == command.answer, command.line
    return response


def what_it_asks(command: Command) -> tuple:
    """A `curl` line's server, path, webhook action and the email in its body."""
    url = urlsplit(next(word for word in shlex.split(command.line) if word.startswith("http")))
    server = {urlsplit(PAGE_SITE).netloc: "site", urlsplit(PAGE_EMULATOR).netloc: "emulator"}[url.netloc]
    email = re.search(r'"email": "([^"]+)"', command.line)
    return server, url.path, parse_qs(url.query).get("wpf_action", [None])[0], email and email[1]


def log_in(session: requests.Session, server: DevServer, email: str, page: str) -> requests.Response:
    """A visitor opening `page` while logged out, sent to the login form and back, as a browser would be."""
    form = session.get(server.site + page)
    assert form.url.startswith(f"{server.site}/accounts/login/?next="), form.url
    return session.post(
        form.url,
        data={"username": email, "password": "demo", "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        timeout=30,
    )


def log_out(session: requests.Session, server: DevServer):
    response = session.post(
        f"{server.site}/accounts/logout/", data={"csrfmiddlewaretoken": session.cookies["csrftoken"]}, timeout=30
    )
    assert response.status_code < 400, response.status_code


def emulator_calls(server: DevServer, path: str) -> list:
    return [
        entry
        for entry in requests.get(f"{server.emulator}/_emulator/requests", timeout=10).json()
        if entry["path"] == path
    ]


# The tour -----------------------------------------------------------------------------------------------------------


def test_the_page_reads_as_the_test_expects():
    """Quick and without a server: the tour's commands, in order, are the ones the test below walks through."""
    tour = read_page()
    assert [what_it_asks(command) for command in tour.commands] == [
        ("site", "/", "test", None),
        ("site", "/", "update_tags", "ann@example.com"),
        ("emulator", "/_emulator/requests", None, None),
        ("site", "/", "update_tags", "bob@example.com"),
        ("site", "/", "add", "cara@example.com"),
    ]
    assert [args.split()[0] for args in tour.manage] == ["webhook_urls", "cio_sync_segments", "cio_import_users"]
    for page in ("/members/", "/vip/", "/members/start/", "/payment-failed/", "password `demo`"):
        assert page in tour.text


def test_the_getting_started_tour_against_make_run(dev_server):
    tour = read_page()
    excerpt = tour.printed.replace(PAGE_SITE, dev_server.site).replace(PAGE_EMULATOR, dev_server.emulator)
    # All of it is printed before the server answers.
    match = find_printed(excerpt, dev_server.printed())
    key = match["key"]
    assert len(key) >= 32
    commands = iter(tour.commands)

    # 1. The key works; a wrong one is refused as the page says.
    check_key = next(commands)
    curl(dev_server, check_key, key)
    refusal = re.search(r"With a wrong key the answer is `(\d+)` with `(\{.*?\})`", tour.text)
    wrong = requests.post(dev_server.url(shlex.split(check_key.line)[-1], "wrong"), timeout=30)
    assert (wrong.status_code, wrong.json()) == (int(refusal[1]), json.loads(refusal[2]))

    # 2. Ann logs in: /members/ refuses her, she holds no tags.
    ann = requests.Session()
    assert log_in(ann, dev_server, "ann@example.com", "/members/").status_code == 403
    assert "Ask us how to join" in ann.get(f"{dev_server.site}/vip/").text

    # 3. Her tags from Customer.io: /members/ opens, /vip/ shows the offer.
    curl(dev_server, next(commands), key)
    members = ann.get(f"{dev_server.site}/members/")
    assert members.status_code == 200
    assert "Members area" in members.text
    assert "Welcome, VIP" in ann.get(f"{dev_server.site}/vip/").text

    # 4. /members/start/ applies a tag; the worker adds her to the manual segment in the emulator.
    started = ann.get(f"{dev_server.site}/members/start/")
    assert started.status_code == 200
    assert 'You now hold the "Started the course" tag' in started.text
    wait_for(lambda: emulator_calls(dev_server, "/api/v1/segments/6/add_customers"), 30, "the worker's add_customers")
    curl(dev_server, next(commands), key)

    # 5. Bob: an active customer whose payment failed, sent away by the access rule.
    log_out(ann, dev_server)
    bob = requests.Session()
    log_in(bob, dev_server, "bob@example.com", "/members/")
    curl(dev_server, next(commands), key)
    refused = bob.get(f"{dev_server.site}/members/", allow_redirects=False)
    assert refused.status_code == 302
    assert refused.headers["Location"].startswith("/payment-failed/")
    assert "Your last payment failed" in bob.get(dev_server.site + refused.headers["Location"]).text

    # 6. A new user from Customer.io, with the role the URL names; the same add again is no duplicate.
    command = next(commands)
    curl(dev_server, command, key)
    again = curl(dev_server, Command(command.line), key).json()
    assert again["created"] is False
    assert again["user_id"] == command.answer["user_id"]

    assert next(commands, None) is None, "a command on the page this test does not run"

    # Commands in a second terminal: `make manage` (scripts/manage_dev.py) reaches the same site and emulator.
    for args in tour.manage:
        result = dev_server.manage(args)
        assert "no Customer.io emulator answers" not in result.stderr
        if args == "webhook_urls":
            assert f"test {dev_server.site}/?wpf_action=test&access_key={key}" in result.stdout


def test_the_readme_tour_is_the_pages_tour():
    """The README's short tour repeats commands of the page above, word for word, so the test that runs the page
    holds the README to the code too."""
    readme = (ROOT / "README.md").read_text()
    readme_commands = [
        line.strip() for line in readme.splitlines() if line.strip().startswith(("curl ", "make manage"))
    ]
    page_commands = {command.line for command in read_page().commands}
    page_commands |= {f'make manage ARGS="{args}"' for args in read_page().manage}
    assert readme_commands, "the README shows no tour commands"
    assert [line for line in readme_commands if line not in page_commands] == []
