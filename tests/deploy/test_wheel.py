"""The built wheel on its own: installed into a new venv outside the checkout, run from elsewhere.

The new venv gets the wheel with ``--no-deps``; its dependencies come from the dev venv's
site-packages through a ``.pth`` line (a full install would download torch & co. again). A ``.pth``
line only appends a path, so the dev venv's editable-install hook is not run: ``recsys_spark`` must
be imported from the wheel's copy, which the test checks.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from zipfile import ZipFile

import pytest

from recsys_spark.config import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.integration]  # builds a wheel and a venv, spawns processes (a few seconds)

CHECKOUT = Path(REPO_ROOT)


def _run(cmd, cwd, env=None, check=True):
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    build = tmp_path_factory.mktemp("build")
    # build from a copy: a build inside the checkout would leave build/ behind for other runs
    src = build / "src"
    shutil.copytree(CHECKOUT, src, symlinks=True,
                    ignore=shutil.ignore_patterns(".venv", ".git", "warehouse", "data", "artifacts", "dist",
                                                  "build", "*.egg-info", "__pycache__", "benchmarks", "tests",
                                                  "spark-warehouse", ".jars", "notebooks"))
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
          "--wheel-dir", str(out), str(src)], cwd=build)
    (whl,) = out.glob("recsys_spark-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory):
    root = tmp_path_factory.mktemp("venv")
    v = root / "v"
    _run([sys.executable, "-m", "venv", "--without-pip", str(v)], cwd=root)
    py = v / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     cwd=root).stdout.strip())
    (site / "_devdeps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # The new venv's python runs the dev venv's pip (reached through the .pth) and installs into the new
    # venv. --ignore-installed: without it pip would first uninstall the dev venv's editable recsys-spark,
    # which it sees through the .pth line.
    _run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--ignore-installed",
          str(wheel)], cwd=root)
    dev = _run([sys.executable, "-c", "import importlib.metadata as m; print(m.distribution('recsys-spark')"
                ".read_text('direct_url.json'))"], cwd=root).stdout
    assert "editable" in dev, "the dev venv's editable install must survive"
    return v


def test_wheel_holds_the_conf_files_and_the_entry_point(wheel):
    names = set(ZipFile(wheel).namelist())
    for conf in ("base", "local", "cluster", "databricks"):
        assert f"recsys_spark/conf/{conf}.yaml" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    text = ZipFile(wheel).read(entry).decode()
    assert "recsys = recsys_spark.cli:main" in text
    assert not any(n.startswith(("tests/", "jobs/", "conf/")) for n in names)


def test_installed_wheel_runs_outside_the_checkout(venv, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RECSYS_ROOT")}
    recsys = str(venv / "bin" / "recsys")
    out = _run([recsys, "--help"], cwd=tmp_path, env=env).stdout
    for cmd in ("generate", "ingest", "weekly", "show", "evaluate", "maintenance"):
        assert cmd in out
    out = _run([recsys, "weekly", "--help"], cwd=tmp_path, env=env).stdout
    assert "--force" in out and "--if-needed" in out and "--week" in out
    # the package comes from the wheel (not the checkout), its conf files load by name, and a
    # relative warehouse resolves against the working directory
    code = ("import recsys_spark, recsys_spark.config as c, recsys_spark.tables as t;"
            "cfg = c.load_config('cluster', overrides=['storage.warehouse=wh', 'storage.model_dir=m',"
            " 'storage.raw_dir=r', 'embeddings.checkpoint_path=x']);"
            "print(recsys_spark.__file__); print(cfg.env); print(c.resolve_path(cfg.storage.warehouse))")
    lines = _run([str(venv / "bin" / "python"), "-c", code], cwd=tmp_path, env=env).stdout.split()
    assert lines[0].startswith(str(venv)) and not lines[0].startswith(str(CHECKOUT))
    assert lines[1] == "cluster"
    assert lines[2] == str(tmp_path / "wh")
    bad = _run([recsys, "weekly", "--conf", "nope.yaml"], cwd=tmp_path, env=env, check=False)
    assert bad.returncode == 2 and "config file not found: nope.yaml" in bad.stderr


def test_checkout_conf_folder_holds_the_packaged_files():
    packaged = CHECKOUT / "recsys_spark" / "conf"
    names = sorted(p.name for p in (CHECKOUT / "conf").glob("*.yaml"))
    assert names == sorted(p.name for p in packaged.glob("*.yaml")) and "base.yaml" in names
    for n in names:
        assert (CHECKOUT / "conf" / n).read_bytes() == (packaged / n).read_bytes(), n
