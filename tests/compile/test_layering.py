"""accel.compile is pure: no engine, data, front-end or simulator import, not even inside a function."""

import ast
from importlib import resources

FORBIDDEN = ("accel.engine", "accel.data", "accel.frontend", "accel.rtlsim", "cocotb", "cocotb_tools", "onnxruntime")


def _imports(source: str, package: str) -> set[str]:
    """Absolute names of every module an ``accel.compile`` module imports (relative imports resolved)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(filter(None, [base, node.module]))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_the_resolver_sees_relative_and_nested_imports():
    src = "def f():\n    from ..engine import run_model\n    from . import tiling\n"
    assert {"accel.engine", "accel.engine.run_model", "accel.compile.tiling"} <= _imports(src, "accel.compile")


def test_compile_imports_no_engine_data_or_simulator_code():
    found = {}
    for entry in resources.files("accel.compile").iterdir():
        if entry.name.endswith(".py"):
            bad = sorted(n for n in _imports(entry.read_text(), "accel.compile")
                         if any(n == f or n.startswith(f + ".") for f in FORBIDDEN))
            if bad:
                found[entry.name] = bad
    assert found == {}
