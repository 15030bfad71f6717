"""No module over 400 lines outside migrations, test modules included: a module that long usually holds two ideas,
and is read as one. A test module that grows past it is split by what its tests are about, its shared helpers and
fixtures moved to the folder's conftest.py."""

from pathlib import Path

from django.conf import settings

from .module_graph import project_modules

MAX_LINES = 400


def held_files(root: Path) -> list[Path]:
    """The project's Python files the limit applies to: every module but migrations (tests included), and the files
    at the top of the project (manage.py, gunicorn.conf.py)."""
    modules = [path for path in project_modules(root).values() if "migrations" not in path.relative_to(root).parts]
    return sorted({*modules, *root.glob("*.py")})


def long_files(paths: list[Path], root: Path) -> list[str]:
    found = []
    for path in paths:
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            found.append(f"{path.relative_to(root)}: {lines} lines")
    return found


def test_no_module_is_over_400_lines():
    root = Path(settings.BASE_DIR)
    assert long_files(held_files(root), root) == []


def test_the_check_sees_a_long_module(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "short.py").write_text("x = 1\n" * MAX_LINES)
    (tmp_path / "app" / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (tmp_path / "app" / "migrations").mkdir()
    (tmp_path / "app" / "migrations" / "0001_initial.py").write_text("x = 1\n" * 1000)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "__init__.py").write_text("")
    (tmp_path / "tests" / "conftest.py").write_text("x = 1\n" * MAX_LINES)
    (tmp_path / "tests" / "app").mkdir()
    (tmp_path / "tests" / "app" / "__init__.py").write_text("")
    (tmp_path / "tests" / "app" / "test_long.py").write_text("x = 1\n" * (MAX_LINES + 3))
    (tmp_path / "manage.py").write_text("x = 1\n" * (MAX_LINES + 2))
    assert long_files(held_files(tmp_path), tmp_path) == [
        "app/long.py: 401 lines",
        "manage.py: 402 lines",
        "tests/app/test_long.py: 403 lines",
    ]
