"""The apps depend downward — demo -> webhooks -> users -> settings_app, with cio at the bottom — never in a circle.
The Customer.io emulator (development, tests and benchmarks only) stands apart: it imports none of them and none of
them imports it."""

import ast
from pathlib import Path

from django.conf import settings

from .module_graph import import_cycles, import_graph, imported_modules, project_modules

# Each app may import only the apps below it.
LAYERS = ["cio", "settings_app", "users", "webhooks", "demo"]
STANDALONE = ["cio_emulator"]
PROJECT_APPS = set(LAYERS) | set(STANDALONE)


def imported_apps(path: Path) -> set[str]:
    """The project apps a module imports (at the top or inside functions). Relative imports stay in the module's
    own app, so they are left out."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return {names[-1].split(".")[0] for names in imported_modules(tree, package=None)} & PROJECT_APPS


def upward_imports() -> list[str]:
    found = []
    allowed_by_app = {app: set(LAYERS[:rank]) | {app} for rank, app in enumerate(LAYERS)}
    allowed_by_app |= {app: {app} for app in STANDALONE}
    for app, allowed in allowed_by_app.items():
        for path in sorted((Path(settings.BASE_DIR) / app).rglob("*.py")):
            for imported in sorted(imported_apps(path) - allowed):
                found.append(f"{path.relative_to(settings.BASE_DIR)} imports {imported}")
    return found


def test_no_app_imports_an_app_above_it():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path):
    module = tmp_path / "example.py"
    module.write_text(
        "def f():\n    from webhooks.models import WebhookDelivery\nimport users.models\nimport json\n"
        "from cio_emulator import EmulatorServer\n"
    )
    assert imported_apps(module) == {"webhooks", "users", "cio_emulator"}


# Inside webhooks, two rooms: the request side (webhooks/intake/) hands deliveries to the queue (webhooks/queue/),
# which never imports it back, directly or through another module. No room imports another in a circle (circles
# between single modules are tests/project/test_import_cycles.py's).
QUEUE_ROOM = "webhooks.queue"
INTAKE_ROOM = "webhooks.intake"


def module_graph(base: Path, app: str = "webhooks") -> dict[str, set[str]]:
    """The app's modules, each with the modules of the app it imports (tests/project/module_graph.py reads them)."""
    modules = {name: path for name, path in project_modules(base).items() if name.split(".")[0] == app}
    return import_graph(modules)


def room(module: str) -> str:
    for package in (QUEUE_ROOM, INTAKE_ROOM):
        if module == package or module.startswith(package + "."):
            return package
    return module


def queue_reaches_intake(graph: dict[str, set[str]]) -> list[str]:
    """'a -> b -> c' for each path by which a queue module reaches the request side."""
    found = []
    for start in sorted(m for m in graph if room(m) == QUEUE_ROOM):
        trail = {start: [start]}
        pending = [start]
        while pending:
            module = pending.pop()
            for imported in sorted(graph.get(module, ())):
                if imported in trail:
                    continue
                trail[imported] = trail[module] + [imported]
                if room(imported) == INTAKE_ROOM:
                    found.append(" -> ".join(trail[imported]))
                else:
                    pending.append(imported)
    return found


def rooms_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = {}
    for module, imported in graph.items():
        rooms.setdefault(room(module), set()).update(room(m) for m in imported if room(m) != room(module))
    return rooms


def test_the_queue_never_imports_the_request_side():
    assert queue_reaches_intake(module_graph(Path(settings.BASE_DIR))) == []


def test_the_queue_and_the_modules_it_uses_import_one_way():
    assert import_cycles(rooms_graph(module_graph(Path(settings.BASE_DIR)))) == []


def test_the_checks_see_a_queue_reaching_the_request_side_and_circles(tmp_path):
    files = {
        "webhooks/__init__.py": "",
        "webhooks/intake/views.py": "from ..queue.enqueue import enqueue\n",
        "webhooks/processing.py": "from webhooks.intake.parsers import parse\n",
        "webhooks/deliveries.py": "from .queue import task_rows\n",
        "webhooks/intake/__init__.py": "",
        "webhooks/intake/parsers.py": "",
        "webhooks/queue/__init__.py": "",
        "webhooks/queue/task_rows.py": "",
        "webhooks/queue/enqueue.py": "from ..deliveries import record\nfrom . import task_rows\n",
        # Hidden inside a function, as the circle tasks -> queue -> task_rows -> tasks once was.
        "webhooks/queue/drain.py": "def process():\n    from ..intake.views import answer\n",
        "webhooks/queue/retries.py": "from .. import processing\n",
        "webhooks/queue/claiming.py": "import webhooks.queue.leases\n",
        "webhooks/queue/leases.py": "from webhooks.queue.claiming import due\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = module_graph(tmp_path)

    assert graph["webhooks.queue.enqueue"] == {"webhooks.deliveries", "webhooks.queue.task_rows"}
    assert queue_reaches_intake(graph) == [
        "webhooks.queue.drain -> webhooks.intake.views",
        "webhooks.queue.retries -> webhooks.processing -> webhooks.intake.parsers",
    ]
    assert import_cycles(rooms_graph(graph)) == [
        {"webhooks.deliveries", "webhooks.queue", "webhooks.processing", "webhooks.intake"}
    ]
