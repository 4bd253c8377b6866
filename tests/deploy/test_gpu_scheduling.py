"""Spark's GPU scheduling reaches the models: each task's model goes to the GPU Spark assigned it.

A ``local-cluster`` master (a standalone worker in subprocesses) is given two GPUs by a discovery
script (``spark.worker.resource.gpu.*``), the executor asks for both and each task for one
(``spark.executor/task.resource.gpu.amount``), exactly the settings of GPU executors on a cluster.
There is no GPU here, so inside each task ``torch.cuda`` is made to report two devices; what is
tested is the chain Spark -> ``TaskContext.resources()`` -> :func:`recsys_spark.common.task_gpu` ->
``resolve_device("auto")``, i.e. that concurrent tasks put their models on different GPUs instead
of all on ``cuda:0``. Runs in its own Python process (a second SparkContext cannot share this one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]

CHILD = r'''
import json, sys, time
import pandas as pd
from pyspark.sql import SparkSession

spark = (SparkSession.builder.master("local-cluster[1,2,1024]")
         .config("spark.worker.resource.gpu.amount", "2")
         .config("spark.worker.resource.gpu.discoveryScript", sys.argv[1])
         .config("spark.executor.resource.gpu.amount", "2")
         .config("spark.task.resource.gpu.amount", "1")
         .config("spark.ui.enabled", "false").getOrCreate())

def fn(batches):
    import torch
    from pyspark import TaskContext
    from recsys_spark.common import resolve_device, task_gpu
    torch.cuda.is_available = lambda: True      # no GPU on this machine: the addresses are Spark's
    torch.cuda.device_count = lambda: 2
    for pdf in batches:
        time.sleep(1.0)                          # keep both tasks running at once
        tc = TaskContext.get()
        yield pd.DataFrame({"partition": [tc.partitionId()], "assigned": [",".join(tc.resources()["gpu"].addresses)],
                            "task_gpu": [task_gpu()], "device": [str(resolve_device("auto"))]})

try:
    rows = spark.range(0, 8, 1, 4).mapInPandas(
        fn, "partition int, assigned string, task_gpu int, device string").collect()
    print("RESULT " + json.dumps([r.asDict() for r in rows]))
finally:
    spark.stop()
'''


def test_each_task_gets_the_gpu_spark_assigned_it(tmp_path):
    disc = tmp_path / "discover_gpus.sh"
    disc.write_text('#!/usr/bin/env bash\necho \'{"name": "gpu", "addresses": ["0", "1"]}\'\n')
    disc.chmod(0o755)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(script), str(disc)], capture_output=True, text=True,
                         env=env, timeout=300, cwd=tmp_path)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, f"no result (rc={out.returncode}):\n{out.stderr[-3000:]}"
    rows = json.loads(line[len("RESULT "):])
    assert sorted(r["partition"] for r in rows) == [0, 1, 2, 3]
    for r in rows:  # one GPU per task, and the model goes to that one
        assert r["assigned"] in ("0", "1")
        assert r["task_gpu"] == int(r["assigned"]) and r["device"] == f"cuda:{r['assigned']}"
    assert {r["device"] for r in rows} == {"cuda:0", "cuda:1"}  # not every task on cuda:0
