"""No two project modules import each other, directly or round a longer circle: dependencies point one way.

An import inside a function counts (see module_graph): it only postpones the circle to the first call."""

from pathlib import Path

from django.conf import settings

from .module_graph import import_cycles, import_graph, project_modules

# Circles known and being taken apart; a circle found must fit inside one of these (the second test says when one
# is gone). Empty: every circle of issue 20 is gone.
ALLOWED_CYCLES: list[frozenset[str]] = []


def project_cycles() -> list[set[str]]:
    return import_cycles(import_graph(project_modules(Path(settings.BASE_DIR))))


def test_no_module_imports_itself_round_a_circle():
    unexpected = [
        sorted(cycle) for cycle in project_cycles() if not any(cycle <= allowed for allowed in ALLOWED_CYCLES)
    ]
    assert unexpected == []


def test_every_allowed_circle_is_still_there():
    cycles = project_cycles()
    gone = [sorted(allowed) for allowed in ALLOWED_CYCLES if not any(cycle <= allowed for cycle in cycles)]
    assert gone == [], "these circles are gone: take them off ALLOWED_CYCLES"


def test_the_cycle_finder_sees_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"a", "e"}}
    assert import_cycles(graph) == [{"a", "b", "c"}]
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def write(root: Path, relative: str, text: str = "") -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_the_graph_reads_every_form_of_import(tmp_path):
    write(tmp_path, "app/__init__.py", "VERSION = 1\n")
    write(tmp_path, "app/models.py", "def has_tag():\n    from .access.checks import check\n")
    write(tmp_path, "app/access/__init__.py")
    write(tmp_path, "app/access/checks.py", "from .. import models\n\ndef check(): ...\n")
    write(tmp_path, "app/services.py", "import app.models\nfrom app import VERSION\nfrom app.access import checks\n")
    write(tmp_path, "bench/run.py", "from shared import helper\n")
    write(tmp_path, "bench/shared.py", "def helper():\n    import run\n")
    graph = import_graph(project_modules(tmp_path))
    assert graph["app.models"] == {"app.access.checks"}  # relative, inside a function
    assert graph["app.access.checks"] == {"app.models"}  # `from .. import module`
    assert graph["app.services"] == {"app.models", "app", "app.access.checks"}
    assert sorted(map(sorted, import_cycles(graph))) == [["app.access.checks", "app.models"], ["run", "shared"]]
