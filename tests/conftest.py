"""One session-scoped Spark fixture with Delta (local[2], few shuffle partitions, no UI) per pytest
process; test grouping for pytest-xdist (``make test`` runs two processes)."""

import datetime as dt
import logging
import os
import shutil
import sys
import tempfile

import pytest

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("TZ", "UTC")


@pytest.fixture(scope="session")
def spark():
    import fcntl

    wh = tempfile.mkdtemp(prefix="recsys-spark-wh-")
    # `make test` runs two pytest-xdist workers: the first JVM start of a machine resolves Delta's
    # jars with Ivy into ~/.ivy2, and two resolutions at once can trip over each other's files, so
    # the sessions start one after the other (the second finds the cache filled)
    with open(os.path.join(tempfile.gettempdir(), "recsys-spark-tests-session.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        session = _session(wh)
        fcntl.flock(lock, fcntl.LOCK_UN)
    yield session
    session.stop()
    shutil.rmtree(wh, ignore_errors=True)


def _session(wh, more=None):
    """The tests' session; ``more``: further settings (``benchmarks/suite_tiny_profile.py`` adds its event log)."""
    from recsys_spark.spark import get_spark

    return get_spark(
        app_name="recsys-spark-tests",
        master="local[2]",
        driver_memory="3g",
        shuffle_partitions=2,
        warehouse_dir=wh,
        extra={"spark.default.parallelism": "2", "spark.sql.adaptive.enabled": "false",
               "spark.databricks.delta.snapshotPartitions": "1",
               # Delta's VACUUM lists the table's folders in a job of this many tasks (Spark's default
               # is 10,000: a VACUUM of a tiny table ran 70,049 tasks, about a minute)
               "spark.sql.sources.parallelPartitionDiscovery.parallelism": "2",
               # the suite's frames have a few rows: compiling generated code for every new plan
               # (Janino, then the JIT on it) costs more than interpreting it (two stage-test modules
               # 119 s -> 100 s on this box); same results, Spark's own tests run both modes
               "spark.sql.codegen.wholeStage": "false", "spark.sql.codegen.factoryMode": "NO_CODEGEN",
               **(more or {})},
    )


@pytest.fixture()
def two_torch_threads():
    """torch on two intra-op threads for the test, the previous count restored after: effects of
    thread order (a backward adding repeats as the threads finish) show on any box."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def tmp_warehouse(tmp_path):
    return str(tmp_path / "warehouse")


@pytest.fixture()
def tables(spark, tmp_warehouse):
    from recsys_spark.tables import Tables

    return Tables(spark, warehouse=tmp_warehouse)


logging.getLogger("py4j").setLevel(logging.WARNING)

#: fixtures that generate the tiny platform or run whole weekly runs: a test using one is ``slow``
SLOW_FIXTURES = ("tiny_platform", "tiny_weeks")


#: where the pytest-xdist workers write each test's group for the controller's scheduler
GROUPS_ENV = "RECSYS_TEST_GROUPS"
TINY_GROUP = "tiny-platform"

#: each test's measured seconds (setup, call, teardown: the larger of a whole ``make test`` and a
#: ``make test-fast``), written by ``make test-durations`` (``--record-durations``); read to mark
#: tests ``slow`` and to start the longest modules first
DURATIONS = os.path.join(os.path.dirname(__file__), "durations.json")
#: a test that took this long (or whose module's shared fixtures did, in its setup) is ``slow``
SLOW_SECONDS = 5.0


#: ``--record-durations``: the path and ``{nodeid: {when: seconds}}``, filled where reports arrive
#: (the xdist controller receives every worker's reports)
_RECORD = {"path": None, "tests": {}}


def pytest_addoption(parser):
    parser.addoption("--record-durations", metavar="PATH", default=None,
                     help="write each test's setup/call/teardown seconds to PATH (JSON; tests/durations.json "
                          "marks the fast tier)")


def pytest_configure(config):
    # the controller of an xdist run (workers have ``workerinput``): the workers, started later,
    # inherit the path of the groups file through the environment
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        os.environ[GROUPS_ENV] = os.path.join(tempfile.mkdtemp(prefix="recsys-test-groups-"), "groups.json")
    if config.getoption("--record-durations") and not hasattr(config, "workerinput"):
        _RECORD["path"] = config.getoption("--record-durations")


def pytest_runtest_logreport(report):
    if _RECORD["path"]:
        _RECORD["tests"].setdefault(report.nodeid, {})[report.when] = round(report.duration, 2)


def pytest_sessionfinish(session, exitstatus):
    """Merge this run's seconds into the file: per test and phase, the larger of the recorded and
    the new figure (a test is timed in the whole suite and again in the fast tier, where it may
    carry the session start or a module fixture that the whole suite built for an earlier test)."""
    if _RECORD["path"] and _RECORD["tests"]:
        import json

        merged = {}
        if os.path.exists(_RECORD["path"]):
            with open(_RECORD["path"]) as fh:
                merged = json.load(fh)
        for k, v in _RECORD["tests"].items():
            old = merged.get(k, {})
            merged[k] = {w: max(s, old.get(w, 0.0)) for w, s in {**old, **v}.items()}
        lines = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(merged.items())]
        with open(_RECORD["path"], "w") as fh:
            fh.write("{\n" + ",\n".join(lines) + "\n}\n")


def _recorded():
    import json

    if not os.path.exists(DURATIONS):
        return {}
    with open(DURATIONS) as fh:
        return json.load(fh)


def pytest_collection_modifyitems(config, items):
    """Mark ``slow`` every test that uses a whole-platform fixture (``make test-fast`` skips them),
    and run those first (the longest chain: the tiny platform, then its two weekly runs); mark
    ``slow`` too every test that took :data:`SLOW_SECONDS` or more in the recorded run
    (:data:`DURATIONS`), or whose module's shared fixtures did; order the other modules longest
    first.

    Under pytest-xdist (``make test``) each worker also writes every test's group to the file
    named by ``$RECSYS_TEST_GROUPS``: the tiny-platform tests form one group (their session
    fixtures are built on one worker, once), any other test is grouped with its module (module
    fixtures built once). :func:`pytest_xdist_make_scheduler` hands whole groups to workers."""
    durations = _recorded()
    seconds = {k: sum(v.values()) for k, v in durations.items()}
    module = {}   # recorded seconds of each module; a module whose shared fixtures are costly is slow whole
    costly = set()
    for k, v in durations.items():
        mod = k.split("::", 1)[0]
        module[mod] = module.get(mod, 0.0) + seconds[k]
        if v.get("setup", 0.0) >= SLOW_SECONDS:
            costly.add(mod)
    tiny, rest = [], []
    for item in items:
        mod = item.nodeid.split("::", 1)[0]
        if set(SLOW_FIXTURES) & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
            tiny.append(item)
            continue
        if seconds.get(item.nodeid, 0.0) >= SLOW_SECONDS or mod in costly:
            item.add_marker(pytest.mark.slow)
        rest.append(item)
    # the longest modules first (a stable sort keeps each module's own order): the two processes
    # finish close together instead of one waiting for the other's last long module
    rest.sort(key=lambda i: -module.get(i.nodeid.split("::", 1)[0], 0.0))
    items[:] = tiny + rest
    path = os.environ.get(GROUPS_ENV)
    if path and hasattr(config, "workerinput"):
        import json

        groups = {i.nodeid: TINY_GROUP for i in tiny}
        tmp = f"{path}.{config.workerinput['workerid']}"
        with open(tmp, "w") as fh:
            json.dump(groups, fh)
        os.replace(tmp, path)  # every worker collects the same tests: the same content


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook (without xdist the suite runs in one process)
def pytest_xdist_make_scheduler(config, log):
    """Load scheduling by group (:func:`pytest_collection_modifyitems`): a scope per group, handed
    whole to one worker. (xdist's own ``--dist loadgroup`` reads marks that pytest >= 9.2 no
    longer carries into the node ids it schedules.)"""
    import json

    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        _groups = None

        def _split_scope(self, nodeid):
            if self._groups is None:
                path = os.environ.get(GROUPS_ENV)
                self._groups = {}
                if path and os.path.exists(path):
                    with open(path) as fh:
                        self._groups = json.load(fh)
            return self._groups.get(nodeid) or nodeid.split("::", 1)[0]

    return GroupScheduling(config, log)


TINY_WEEK = "2026-11-23"
TINY_OVERRIDES = [
    "generator.n_users=120", "generator.n_tracks=260", "generator.n_creators=40", "generator.n_weeks=4",
    "generator.events_per_user_week=8", "generator.audio_tracks=6", "generator.audio_seconds=2.0",
    "generator.audio_sample_rate=16000", "generator.partitions=2", "generator.bad_row_rate=0.02",
    "generator.prompt_user_share=0.15",
    "embeddings.audio_model=HTSAT-tiny", "embeddings.text_model=transformer", "embeddings.batch_size=4",
    "embeddings.max_windows=1", "recall.prompt.target=track_prompt",
    "recall.popularity.per_genre_pool=60", "recall.als.rank=16", "recall.als.max_iter=5", "recall.als.num_blocks=2",
    "din.epochs=2", "din.train_weeks=2", "din.embedding_dim=8", "din.attention_hidden=[16]",
    "din.mlp_hidden=[16]", "recall.content.train_weeks=2", "spark.shuffle_partitions=2",
]


#: what W-7 of the tiny chain runs with (:func:`tiny_weeks`): a platform's first weekly run before
#: CLAP is set up (its content, prompt and creator stages skip)
TINY_PREV_OVERRIDES = ["embeddings.enabled=false"]
#: the tiny platform's ingestion time and run id (:func:`ingest_tiny_platform`)
TINY_INGEST_AT = dt.datetime(2026, 11, 23)
TINY_INGEST_RUN = "ingest-tiny"


def tiny_overrides(root, more=()):
    """:data:`TINY_OVERRIDES` with the warehouse under ``root`` (plus ``more`` settings)."""
    return TINY_OVERRIDES + [f"storage.warehouse={root}/warehouse", *more]


def generate_tiny_platform(spark, root, cfg):
    """The tiny platform's raw files under ``root/raw`` (``cfg``: :func:`tiny_overrides` loaded)."""
    from recsys_spark.data.generator import PlatformSpec, generate_platform

    generate_platform(spark, f"{root}/raw", PlatformSpec.from_conf(cfg.generator), dt.date.fromisoformat(TINY_WEEK))


def ingest_tiny_platform(spark, root, cfg):
    """Ingest ``root/raw`` into ``cfg``'s warehouse; returns ``(tables, reports)``.

    With :func:`generate_tiny_platform`, the recipe of :func:`tiny_platform` and of
    ``benchmarks/suite_tiny_profile.py`` (which times the two apart)."""
    from recsys_spark.data.ingest import Rules, ingest_all
    from recsys_spark.tables import Tables

    tables = Tables.from_config(spark, cfg.storage)
    return tables, ingest_all(spark, tables, f"{root}/raw", Rules.from_conf(cfg.ingest), TINY_INGEST_RUN,
                              now=TINY_INGEST_AT)


@pytest.fixture(scope="session")
def tiny_platform(spark, tmp_path_factory):
    """A tiny synthetic platform, generated and ingested once per session.

    Returns ``{"overrides", "raw", "warehouse", "reports"}``; tests copy the warehouse
    (``copy_warehouse``) so that each works on its own tables.
    """
    from recsys_spark.config import load_config

    root = tmp_path_factory.mktemp("tiny-platform")
    cfg = load_config(overrides=tiny_overrides(root))
    generate_tiny_platform(spark, root, cfg)
    _, reports = ingest_tiny_platform(spark, root, cfg)
    return {"overrides": list(TINY_OVERRIDES), "raw": str(root / "raw"), "warehouse": str(root / "warehouse"),
            "reports": reports}


def copy_warehouse(tiny, dest):
    """A private copy of the tiny platform's tables plus the config overrides pointing at it."""
    shutil.copytree(tiny["warehouse"], dest / "warehouse")
    return tiny["overrides"] + [f"storage.warehouse={dest / 'warehouse'}", f"storage.model_dir={dest / 'models'}"]


def _week_rows(tables, week):
    from pyspark.sql import functions as F

    return sorted(tuple(r) for r in tables.read("discover_weekly").where(F.col("week_start") == week)
                  .select("user_id", "position", "track_id").collect())


@pytest.fixture(scope="session")
def tiny_weeks(spark, tiny_platform, tmp_path_factory):
    """Weeks W-7 and W of the tiny platform, each run once per session (a weekly run is the
    costliest thing the suite does).

    W-7 runs with :data:`TINY_PREV_OVERRIDES` (``embeddings.enabled=false``: a platform's first
    weekly run before CLAP is set up): its content, prompt and creator stages skip, everything else
    runs; W then runs with embeddings and embeds the whole catalogue's audio and every prompt it has
    not embedded yet.

    ``after_prev``: a snapshot (warehouse and models) taken between the two runs, for tests that
    start from "W-7 done" (they copy it); ``after_w``: one taken after W, for read-only users that
    must not see later changes (the notebooks). ``cfg``/``tables``: the live warehouse after W (the
    end-to-end module asserts on it and reruns W in place). ``playlist_prev``/``playlist_w``: the
    ``(user_id, position, track_id)`` rows of each week as first written.
    """
    from recsys_spark.config import load_config
    from recsys_spark.pipeline import run_weekly
    from recsys_spark.tables import Tables

    week = dt.date.fromisoformat(TINY_WEEK)
    prev = week - dt.timedelta(days=7)
    root = tmp_path_factory.mktemp("tiny-weeks")
    overrides = copy_warehouse(tiny_platform, root)
    cfg = load_config(overrides=overrides)
    tables = Tables.from_config(spark, cfg.storage)
    res_prev = run_weekly(spark, load_config(overrides=overrides + TINY_PREV_OVERRIDES), prev, tables=tables)
    playlist_prev = _week_rows(tables, prev)
    snap = tmp_path_factory.mktemp("tiny-after-prev")
    for sub in ("warehouse", "models"):
        if (root / sub).exists():
            shutil.copytree(root / sub, snap / sub)
    res = run_weekly(spark, cfg, week, tables=tables)
    after_w = tmp_path_factory.mktemp("tiny-after-w")
    for sub in ("warehouse", "models"):
        if (root / sub).exists():
            shutil.copytree(root / sub, after_w / sub)
    return {"cfg": cfg, "tables": tables, "res_prev": res_prev, "res": res, "after_prev": snap,
            "after_w": after_w, "playlist_prev": playlist_prev, "playlist_w": _week_rows(tables, week)}
