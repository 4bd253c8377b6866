"""The Databricks Asset Bundle: structure, task graph, and that every command it runs exists."""

import re
import subprocess
import sys

import pytest
import yaml

from recsys_spark.config import REPO_ROOT, load_config

ROOT = REPO_ROOT


@pytest.fixture(scope="module")
def bundle():
    main = yaml.safe_load((ROOT / "databricks.yml").read_text())
    resources = {}
    for pattern in main["include"]:
        for f in sorted(ROOT.glob(pattern)):
            doc = yaml.safe_load(f.read_text())
            for kind, items in doc["resources"].items():
                resources.setdefault(kind, {}).update({k: (f, v) for k, v in items.items()})
    return main, resources


def test_bundle_targets_and_variables(bundle):
    main, _ = bundle
    assert main["bundle"]["name"] == "recsys-spark"
    assert set(main["targets"]) == {"dev", "prod"}
    assert main["targets"]["dev"].get("default") is True and main["targets"]["prod"]["mode"] == "production"
    assert {"catalog", "warehouse", "gpu_node_type_id"} <= set(main["variables"])
    for t in main["targets"].values():
        assert set(t.get("variables", {})) <= set(main["variables"])


def test_weekly_job_graph_schedule_and_clusters(bundle):
    main, resources = bundle
    path, job = resources["jobs"]["recsys_weekly"]
    assert job["schedule"] == {"quartz_cron_expression": "0 0 6 ? * MON", "timezone_id": "UTC",
                               "pause_status": "UNPAUSED"}
    assert job["max_concurrent_runs"] == 1
    tasks = {t["task_key"]: t for t in job["tasks"]}
    assert list(tasks) == ["ingest", "weekly", "maintenance"]
    deps = {k: [d["task_key"] for d in t.get("depends_on", [])] for k, t in tasks.items()}
    assert deps == {"ingest": [], "weekly": ["ingest"], "maintenance": ["weekly"]}
    clusters = {c["job_cluster_key"]: c["new_cluster"] for c in job["job_clusters"]}
    assert tasks["weekly"]["job_cluster_key"] == "gpu" and "gpu" in clusters["gpu"]["spark_version"]
    assert clusters["gpu"]["node_type_id"] == "${var.gpu_node_type_id}"
    for c in clusters.values():
        assert c["spark_env_vars"]["RECSYS_CATALOG"] == "${var.catalog}"
    # every ${var.x} used anywhere is declared
    used = set(re.findall(r"\$\{var\.([A-Za-z_]+)\}", path.read_text() + (ROOT / "databricks.yml").read_text()))
    assert used <= set(main["variables"]), used - set(main["variables"])
    # the wheel built by the bundle is installed on every task's cluster
    assert main["artifacts"]["recsys_wheel"]["type"] == "whl"
    for t in tasks.values():
        assert {"whl": "../dist/*.whl"} in t["libraries"]


def _help(script):
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_tasks_run_existing_jobs_with_existing_conf(bundle, monkeypatch):
    _, resources = bundle
    path, job = resources["jobs"]["recsys_weekly"]
    for t in job["tasks"]:
        task = t["spark_python_task"]
        script = (path.parent / task["python_file"]).resolve()
        assert script.is_file() and script.parent == ROOT / "jobs", script
        params = task["parameters"]
        conf = params[params.index("--conf") + 1]
        assert conf == "${workspace.file_path}/conf/databricks.yaml"
        conf_file = ROOT / conf.replace("${workspace.file_path}/", "")
        assert conf_file.is_file()
        helptext = _help(script)
        for flag in [p for p in params if p.startswith("--")]:
            assert flag in helptext, f"{script.name} has no {flag}"
    monkeypatch.setenv("RECSYS_CATALOG", "main")
    cfg = load_config(str(ROOT / "conf" / "databricks.yaml"))
    assert (cfg.storage.mode, cfg.storage.catalog) == ("catalog", "main")
