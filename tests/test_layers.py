"""The layer order holds: import-linter's contracts (setup.cfg, [importlinter:*]), plus
one made here from the registry: no method package imports another (so a new method is
checked without anyone editing a list).

Each contract runs on its own. Offline, from any working directory, no cache written:
the graph is built of the packages this test process imports.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import icmcodec

pytest.importorskip("importlinter")

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "setup.cfg"

CONTRACTS = ["layers", "no-upward-from-methods", "training-toolkit"]


def config_with_independence(tmp_path) -> Path:
    """setup.cfg plus an independence contract over every registered method package."""
    from icmcodec.registry import METHODS

    packages = "\n".join(f"    {spec.package}" for spec in METHODS.values())
    path = tmp_path / "contracts.cfg"
    path.write_text(CONFIG.read_text() + "\n[importlinter:contract:methods-independent]\n"
                    "name = No method package imports another method's package (shared parts live below them)\n"
                    f"type = independence\nmodules =\n{packages}\n")
    return path


def lint(contract: str, tmp_path, config: Path = CONFIG) -> subprocess.CompletedProcess:
    # the packages this process tests (an installed copy or a checkout), found first
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(icmcodec.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", code, "--config", str(config), "--contract", contract,
                           "--no-cache", "--no-logo"], cwd=tmp_path, env=env, capture_output=True, text=True)


def test_the_config_names_every_contract_this_test_runs():
    text = CONFIG.read_text()
    for contract in CONTRACTS:
        assert f"[importlinter:contract:{contract}]" in text


@pytest.mark.parametrize("contract", CONTRACTS)
def test_contract_holds(contract, tmp_path):
    p = lint(contract, tmp_path)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "KEPT" in p.stdout


def test_no_method_imports_another(tmp_path):
    p = lint("methods-independent", tmp_path, config_with_independence(tmp_path))
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]
    assert "KEPT" in p.stdout


def test_the_contracts_catch_a_method_importing_another(tmp_path):
    """The check can fail: a copy of the packages where one method imports another breaks it."""
    import shutil

    root = tmp_path / "src"
    for pkg in ("icmcodec", "bitstream", "cli"):
        shutil.copytree(Path(icmcodec.__file__).resolve().parents[1] / pkg, root / pkg,
                        ignore=shutil.ignore_patterns("models", "__pycache__", "*.safetensors"))
    bad = root / "icmcodec/methods/context/export.py"
    bad.write_text(bad.read_text() + "\nfrom icmcodec.methods.hyperprior import codec as _borrowed  # noqa\n")
    config = config_with_independence(tmp_path)
    env = dict(os.environ, PYTHONPATH=str(root))
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    p = subprocess.run([sys.executable, "-c", code, "--config", str(config), "--contract", "methods-independent",
                        "--no-cache", "--no-logo"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert p.returncode != 0 and "BROKEN" in p.stdout, p.stdout[-2000:] + p.stderr[-2000:]
