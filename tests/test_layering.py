"""The package's layering, as `make lint` checks it: import-linter's contracts in pyproject.toml.

grimp (under import-linter) reads every import statement, those inside functions too, so a
lazy import cannot slip past the contracts.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", *args], cwd=ROOT, capture_output=True, text=True)


def test_every_import_contract_is_kept():
    proc = _lint()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_a_broken_contract_is_reported(tmp_path):
    # The front end does run the engine (accel eval): a contract that forbids it must break,
    # which shows that the checker sees this package's imports at all.
    config = tmp_path / "contracts.toml"
    config.write_text('[tool.importlinter]\nroot_package = "accel"\n\n'
                      '[[tool.importlinter.contracts]]\nname = "front end without engine"\ntype = "forbidden"\n'
                      'source_modules = ["accel.frontend"]\nforbidden_modules = ["accel.engine"]\n')
    proc = _lint(str(config))
    assert proc.returncode == 1 and "BROKEN" in proc.stdout


def test_no_test_module_imports_another():
    """Shared fixtures, models and strategies live in tests/support, never in a test module."""
    import ast

    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.rsplit(".", 1)[-1].startswith("test_")]
    assert offenders == []
