"""The apps depend downward — demo -> webhooks -> users -> settings_app, with cio at the bottom — never in a circle.
The Customer.io emulator (development, tests and benchmarks only) stands apart: it imports none of them and none of
them imports it."""

import ast
from pathlib import Path

from django.conf import settings

from .module_graph import imported_modules

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
