"""Which device a UDF's model goes to: the GPU Spark assigned to the task, never always cuda:0."""

import types

import pandas as pd
import pytest
import torch

from recsys_spark import common
from recsys_spark.common import resolve_device, task_gpu


class _Task:
    def __init__(self, addresses):
        self._res = {} if addresses is None else {"gpu": types.SimpleNamespace(name="gpu", addresses=addresses)}

    def resources(self):
        return self._res


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)

    def in_task(addresses):
        import pyspark

        monkeypatch.setattr(pyspark.TaskContext, "get", classmethod(lambda cls: _Task(addresses)))

    return in_task


def test_a_task_assigned_gpu_1_gets_cuda_1(two_gpus):
    two_gpus(["1"])
    assert task_gpu() == 1
    assert resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)  # an explicit index is kept
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("addresses", [None, [], ["GPU-8f3c-uuid"], ["5"]])
def test_no_usable_assignment_falls_back_to_the_default_gpu(two_gpus, addresses):
    two_gpus(addresses)
    assert resolve_device("auto") == torch.device("cuda")


def test_outside_a_task_and_without_cuda(monkeypatch):
    assert task_gpu() is None  # the test process is no Spark task
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="cuda"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="auto | cpu"):
        resolve_device("tpu")


def test_a_local_spark_task_has_no_gpu_assignment(spark):
    def fn(batches):
        for pdf in batches:
            yield pd.DataFrame({"gpu": [-1 if common.task_gpu() is None else common.task_gpu()] * len(pdf)})

    assert [r.gpu for r in spark.range(2).mapInPandas(fn, "gpu int").distinct().collect()] == [-1]
