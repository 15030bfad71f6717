"""docs/settings.md against the code: every environment variable the settings read is documented there, with the
default the code has, and nothing is documented that no code reads; `.env.example` names only variables that exist.

The variables are found by reading the source (no settings are imported): calls such as `env.int("NAME", default=…)`,
`env.db("NAME")`, `environ.Env().str("NAME")` and `os.environ.get("NAME", …)`, and `os.environ["NAME"]`.
"""

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "settings.md"
# Where the site's variables are read, first the settings (their defaults win when a name is read twice, as DEBUG
# is by the development scripts, which turn it on).
SOURCES = [
    "wpfusion_site/settings.py",
    "gunicorn.conf.py",
    "scripts/dev_settings.py",
    "users/management/commands/ensure_admin.py",
]
# Readers of the environment: django-environ's Env (`env`, `_env`, `environ.Env()`) and os.environ.
READERS = {"env", "_env", "environ.Env()", "os.environ"}
ENV_METHODS = {"str", "bool", "int", "float", "list", "tuple", "dict", "json", "path", "url", "db", "db_url"}
ENV_METHODS |= {"email_url", "cache_url", "search_url", "get"}
NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
NOT_GIVEN = object()


@dataclass
class Read:
    name: str
    source: str
    line: int
    default: object  # the default's value when it is a literal (or arithmetic on literals), else NOT_GIVEN


def literal(node):
    if node is None:
        return NOT_GIVEN
    if not all(
        isinstance(part, ast.Constant | ast.BinOp | ast.UnaryOp | ast.operator | ast.unaryop | ast.List)
        for part in ast.walk(node)
    ):
        return NOT_GIVEN  # an expression of other settings (DEBUG, BASE_DIR): the page says it in words
    return eval(compile(ast.Expression(node), "<default>", "eval"), {"__builtins__": {}})  # noqa: S307 (literals)


def reads(source: str) -> list[Read]:
    """The environment variables `source` reads, in the order they appear."""
    found = []
    for node in ast.walk(ast.parse((ROOT / source).read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            receiver, method, first = ast.unparse(node.func.value), node.func.attr, node.args[0]
            if receiver in READERS and method in ENV_METHODS and isinstance(first, ast.Constant):
                default = next((keyword.value for keyword in node.keywords if keyword.arg == "default"), None)
                if default is None and len(node.args) > 1:
                    default = node.args[1]
                found.append(Read(first.value, source, node.lineno, literal(default)))
        elif (
            isinstance(node, ast.Subscript)
            and ast.unparse(node.value) == "os.environ"
            and isinstance(node.slice, ast.Constant)
        ):
            found.append(Read(node.slice.value, source, node.lineno, NOT_GIVEN))
    return sorted((read for read in found if NAME.match(str(read.name))), key=lambda read: read.line)


def code_reads() -> dict[str, Read]:
    names = {}
    for source in SOURCES:
        for read in reads(source):
            names.setdefault(read.name, read)
    return names


def documented(page: str) -> dict[str, str]:
    """Each table row's variable and its Default cell. A row documents one variable (first cell: `NAME`)."""
    rows = {}
    for line in page.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 2 and re.fullmatch(r"`[A-Z][A-Z0-9_]*`", cells[0]):
            name = cells[0].strip("`")
            assert name not in rows, f"{name} has two rows on docs/settings.md"
            rows[name] = cells[1]
    return rows


def default_matches(cell: str, value) -> bool:
    """Whether the page's Default cell says `value`: `true`/`false`, a number, a string in backticks, or "empty"."""
    if value in ("", [], None):
        return cell.startswith("empty")
    first = re.match(r"`([^`]*)`", cell)
    if first is None:
        return False
    shown = first[1]
    if isinstance(value, bool):
        return shown == str(value).lower()
    if isinstance(value, int | float):
        try:
            return float(shown) == value
        except ValueError:
            return False
    return shown == value


def test_the_source_reading_finds_the_settings():
    """A guard for the tests below: a reader that found nothing would let every variable pass."""
    names = code_reads()
    assert {"DEBUG", "SECRET_KEY", "ENV_FILE", "DATABASE_URL", "EMAIL_URL", "TRUSTED_PROXIES", "GUNICORN_BIND"} <= set(
        names
    )
    assert {"WEBHOOK_TRUSTED_PROXIES", "WEB_CONCURRENCY", "PORT", "EMULATOR_PORT", "ADMIN_PASSWORD"} <= set(names)
    assert len([name for name in names if names[name].source == SOURCES[0]]) >= 60
    assert names["ARGON2_MEMORY_KIB"].default == 46 * 1024
    assert names["DEBUG"].default is False  # settings.py's, not the development scripts' "1"
    assert names["STATIC_ROOT"].default is NOT_GIVEN


def test_every_environment_variable_is_documented():
    rows = documented(PAGE.read_text())
    missing = [f"{read.name} ({read.source}:{read.line})" for read in code_reads().values() if read.name not in rows]
    assert not missing, f"not on docs/settings.md: {', '.join(missing)}"


def test_nothing_documented_is_left_unread():
    names = code_reads()
    stale = [name for name in documented(PAGE.read_text()) if name not in names]
    assert not stale, f"docs/settings.md documents variables no code reads: {stale}"


def test_documented_defaults_are_the_code_defaults():
    rows = documented(PAGE.read_text())
    wrong = [
        f"{read.name}: the code's default is {read.default!r}, the page says {rows[read.name]!r}"
        for read in code_reads().values()
        if read.name in rows and read.default is not NOT_GIVEN and not default_matches(rows[read.name], read.default)
    ]
    assert not wrong, "\n".join(wrong)


def env_example() -> dict[str, str]:
    """`.env.example`'s variables and their values (None: commented out, an example to uncomment)."""
    found = re.findall(r"^(# ?)?([A-Z][A-Z0-9_]*)=(.*)$", (ROOT / ".env.example").read_text(), re.M)
    return {name: None if comment else value for comment, name, value in found}


def test_env_example_names_only_documented_variables():
    names = set(env_example())
    rows = documented(PAGE.read_text())
    assert len(names) >= 50
    assert not names - set(rows), f".env.example has variables docs/settings.md does not: {names - set(rows)}"
    assert not names - set(code_reads()), f".env.example has variables no code reads: {names - set(code_reads())}"


def test_env_example_holds_every_site_setting_with_the_code_defaults_for_numbers():
    """Every variable of the site and gunicorn is in .env.example, but the settings file's own name and a deprecated
    one (the development scripts' variables belong to a shell, not to a file); a number it sets is the default."""
    example = env_example()
    site = [read for read in code_reads().values() if read.source in SOURCES[:2]]
    absent = {read.name for read in site} - set(example) - {"ENV_FILE", "WEBHOOK_TRUSTED_PROXIES"}
    assert not absent, f"not in .env.example: {absent}"
    numbers = [read for read in site if type(read.default) in (int, float) and example.get(read.name)]
    assert len(numbers) >= 30
    drifted = [
        f"{read.name}={example[read.name]} (code: {read.default})"
        for read in numbers
        if float(example[read.name]) != read.default
    ]
    assert not drifted, f".env.example differs from the code's defaults: {drifted}"


def test_the_checks_fail_on_a_missing_row_or_a_drifted_default():
    """The page's rows as the tests above read them, with one row gone and one default changed."""
    page = PAGE.read_text()
    without = "\n".join(line for line in page.splitlines() if not line.startswith("| `WEBHOOK_SWEEP_SECONDS` |"))
    assert "WEBHOOK_SWEEP_SECONDS" not in documented(without)
    drifted = documented(page.replace("| `EMAIL_TIMEOUT` | `10` |", "| `EMAIL_TIMEOUT` | `20` |"))
    assert not default_matches(drifted["EMAIL_TIMEOUT"], code_reads()["EMAIL_TIMEOUT"].default)
    assert default_matches(documented(page)["EMAIL_TIMEOUT"], 10)
