"""The apps depend downward — demo -> webhooks -> users -> settings_app, with cio at the bottom — never in a circle.
The Customer.io emulator (development, tests and benchmarks only) stands apart: it imports none of them and none of
them imports it."""

import ast
from pathlib import Path

from django.conf import settings

# Each app may import only the apps below it.
LAYERS = ["cio", "settings_app", "users", "webhooks", "demo"]
STANDALONE = ["cio_emulator"]
PROJECT_APPS = set(LAYERS) | set(STANDALONE)


def imported_apps(path: Path) -> set[str]:
    """The project apps a module imports (at the top or inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & PROJECT_APPS


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


# Inside webhooks, two rooms: the request side (the view and what only it uses) hands deliveries to the queue, which
# never imports it back, directly or through another module. No module, and no room, imports in a circle.
QUEUE_ROOM = "webhooks.queue"
INTAKE_ROOM = "webhooks.intake"
# The request side's modules before they moved into webhooks/intake/.
INTAKE_MODULES = {f"webhooks.{name}" for name in ("views", "parsing", "refused", "client_address", "logging")}


def module_graph(base: Path, app: str = "webhooks") -> dict[str, set[str]]:
    """Each module of the app, by dotted name, with the modules of the app it imports (at the top or inside
    functions; `from package import name` names the submodule when `name` is one, else the package)."""
    paths = {}
    for path in sorted((base / app).rglob("*.py")):
        parts = path.relative_to(base).with_suffix("").parts
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        wanted = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                wanted.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                source = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(anchor + ([source] if source else []))
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    wanted.add(submodule if submodule in paths else source)
        graph[name] = {found for wanted_name in wanted if (found := _longest_module(wanted_name, paths))} - {name}
    return graph


def _longest_module(name: str, modules) -> str | None:
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return None


def room(module: str) -> str:
    for package in (QUEUE_ROOM, INTAKE_ROOM):
        if module == package or module.startswith(package + "."):
            return package
    return INTAKE_ROOM if module in INTAKE_MODULES else module


def is_intake(module: str) -> bool:
    return room(module) == INTAKE_ROOM


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
                if is_intake(imported):
                    found.append(" -> ".join(trail[imported]))
                else:
                    pending.append(imported)
    return found


def circles(graph: dict[str, set[str]]) -> list[str]:
    """'a -> b -> a' for each circle found (one per strongly connected knot, at least)."""
    found, done, path = [], set(), []

    def visit(node):
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                found.append(" -> ".join(path[path.index(nxt) :] + [nxt]))
            elif nxt not in done:
                visit(nxt)
        path.pop()
        done.add(node)

    for node in sorted(graph):
        if node not in done:
            visit(node)
    return found


def rooms_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    rooms: dict[str, set[str]] = {}
    for module, imported in graph.items():
        rooms.setdefault(room(module), set()).update(room(m) for m in imported if room(m) != room(module))
    return rooms


def test_the_queue_never_imports_the_request_side():
    assert queue_reaches_intake(module_graph(Path(settings.BASE_DIR))) == []


def test_no_webhooks_module_imports_in_a_circle():
    assert circles(module_graph(Path(settings.BASE_DIR))) == []


def test_the_queue_and_the_modules_it_uses_import_one_way():
    assert circles(rooms_graph(module_graph(Path(settings.BASE_DIR)))) == []


def test_the_checks_see_a_queue_reaching_the_request_side_and_circles(tmp_path):
    files = {
        "webhooks/__init__.py": "",
        "webhooks/views.py": "from .queue.enqueue import enqueue\n",
        "webhooks/processing.py": "from webhooks.intake.parsers import parse\n",
        "webhooks/deliveries.py": "from .queue import task_rows\n",
        "webhooks/intake/__init__.py": "",
        "webhooks/intake/parsers.py": "",
        "webhooks/queue/__init__.py": "",
        "webhooks/queue/task_rows.py": "",
        "webhooks/queue/enqueue.py": "from ..deliveries import record\nfrom . import task_rows\n",
        # Hidden inside a function, as the circle tasks -> queue -> task_rows -> tasks once was.
        "webhooks/queue/drain.py": "def process():\n    from ..views import answer\n",
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
        "webhooks.queue.drain -> webhooks.views",
        "webhooks.queue.retries -> webhooks.processing -> webhooks.intake.parsers",
    ]
    assert circles(graph) == ["webhooks.queue.claiming -> webhooks.queue.leases -> webhooks.queue.claiming"]
    assert "webhooks.deliveries -> webhooks.queue -> webhooks.deliveries" in circles(rooms_graph(graph))
