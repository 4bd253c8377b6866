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
    assert {"catalog", "schema", "volume", "gpu_node_type_id"} <= set(main["variables"])
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
        assert c["spark_env_vars"]["RECSYS_SCHEMA"] == "${var.schema}"
        assert c["spark_env_vars"]["RECSYS_MODEL_DIR"] == "${var.volume}/models"
        assert c["data_security_mode"] == "SINGLE_USER"  # a classic session (the weekly stages need SparkContext)
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
    for name, value in (("RECSYS_CATALOG", "main"), ("RECSYS_SCHEMA", "recsys"), ("RECSYS_MODEL_DIR", "/Volumes/m"),
                        ("RECSYS_RAW_DIR", "/Volumes/r"), ("RECSYS_CLAP_CHECKPOINT", "/Volumes/m/c.pt")):
        monkeypatch.setenv(name, value)
    cfg = load_config(str(ROOT / "conf" / "databricks.yaml"))
    assert (cfg.storage.mode, cfg.storage.catalog) == ("catalog", "main")


def _substitute(text, variables):
    return re.sub(r"\$\{var\.([A-Za-z_]+)\}", lambda m: str(variables[m.group(1)]), text)


def test_job_parameters_reach_the_tasks_and_parse(bundle):
    from recsys_spark import cli

    _, resources = bundle
    _, job = resources["jobs"]["recsys_weekly"]
    assert {p["name"]: p["default"] for p in job["parameters"]} == {"week": "", "force": "false", "warm_up": "false"}
    parsers = {"weekly.py": cli.build_weekly_parser, "maintenance.py": cli.build_maintenance_parser,
               "ingest.py": cli.build_ingest_parser}
    tasks = {t["task_key"]: t["spark_python_task"] for t in job["tasks"]}
    assert "{{job.parameters.week}}" in tasks["weekly"]["parameters"]
    assert "{{job.parameters.force}}" in tasks["weekly"]["parameters"]
    assert "{{job.parameters.warm_up}}" in tasks["weekly"]["parameters"]
    assert "{{job.parameters.week}}" in tasks["maintenance"]["parameters"]
    for week, force in (("", "false"), ("2026-11-23", "true")):  # the default run and a backfill (warmed up)
        for key, task in tasks.items():
            argv = [a.replace("{{job.parameters.week}}", week).replace("{{job.parameters.force}}", force)
                    .replace("{{job.parameters.warm_up}}", force)
                    .replace("${workspace.file_path}/", "") for a in task["parameters"]]
            args = parsers[task["python_file"].rsplit("/", 1)[-1]]().parse_args(argv)
            if key == "weekly":
                assert args.week == week and args.force is (force == "true") and args.warm_up is (force == "true")
            if key == "maintenance":
                assert args.week == week


def test_per_target_locations_and_prod_guards(bundle, monkeypatch):
    main, resources = bundle
    _, job = resources["jobs"]["recsys_weekly"]
    env = job["job_clusters"][0]["new_cluster"]["spark_env_vars"]
    seen = {}
    for name, target in main["targets"].items():
        variables = {k: v.get("default") for k, v in main["variables"].items()}
        variables.update(target.get("variables", {}))
        for key, value in env.items():
            monkeypatch.setenv(key, _substitute(value, variables))
        cfg = load_config("databricks")
        seen[name] = (cfg.storage.catalog, cfg.storage.model_dir, cfg.storage.raw_dir, cfg.embeddings.checkpoint_path)
        assert cfg.storage.model_dir.startswith(variables["volume"]) and cfg.storage.schema == variables["schema"]
    assert seen["dev"][0] == "dev" and seen["prod"][0] == "main"
    assert not set(seen["dev"]) & set(seen["prod"])  # dev never writes prod's catalog or volumes
    prod = main["targets"]["prod"]
    assert prod["run_as"] == {"service_principal_name": "${var.service_principal}"}
    assert {p["level"] for p in prod["permissions"]} == {"CAN_MANAGE", "CAN_VIEW"}
    assert prod["resources"]["jobs"]["recsys_weekly"]["email_notifications"]["on_failure"] == ["${var.alert_email}"]
    assert "dist/*.whl" in main["sync"]["include"]


def test_notebooks_install_the_bundles_wheel_and_display():
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    wheel = f"../dist/recsys_spark-{version}-py3-none-any.whl"
    for nb in sorted((ROOT / "notebooks").glob("*.py")):
        text = nb.read_text()
        assert f"# MAGIC %pip install --quiet {wheel}" in text, nb.name
        assert text.index("%pip install") < text.index("import recsys_spark") if "import recsys_spark" in text \
            else text.index("%pip install") < text.index("from recsys_spark"), nb.name
        assert "# MAGIC %restart_python" in text, nb.name
