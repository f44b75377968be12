"""Where things are: every module imports on its own, ``console`` never imports ``workers``
(workers build on the console, not the other way round), and modules stay small enough to
read unless their docstring says why not."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("console", "workers")
MAX_LINES = 500


# Being split into packages (issue 12) on other branches: checked once that lands.
def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def dotted(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def test_every_module_imports_in_a_fresh_interpreter():
    """An import circle hidden by the order a process happens to import things in fails here:
    each module is imported with no module of the project loaded before it."""
    names = [dotted(path) for package in PACKAGES for path in modules(package)]
    script = "\n".join(
        [
            "import importlib, sys, traceback",
            "failed = []",
            f"for name in {names!r}:",
            f"    for loaded in [m for m in sys.modules if m.split('.')[0] in {PACKAGES!r}]:",
            "        del sys.modules[loaded]",
            "    try:",
            "        importlib.import_module(name)",
            "    except Exception:",
            "        failed.append(name + ':\\n' + traceback.format_exc())",
            "print('\\n'.join(failed))",
            "sys.exit(1 if failed else 0)",
        ]
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(names) > 40


def imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_console_never_imports_workers():
    bad = []
    for path in modules("console"):
        for name in imported(ast.parse(path.read_text(encoding="utf-8"))):
            if name == "workers" or name.startswith("workers."):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, bad


def test_no_module_is_long_without_saying_why():
    long = []
    for package in PACKAGES:
        for path in modules(package):
            relative = path.relative_to(ROOT).as_posix()
            text = path.read_text(encoding="utf-8")
            lines = len(text.splitlines())
            docstring = ast.get_docstring(ast.parse(text)) or ""
            if lines > MAX_LINES and "long:" not in docstring.lower():
                long.append(f"{relative}: {lines} lines")
    assert not long, f"over {MAX_LINES} lines with no 'long:' reason in the docstring: {long}"
