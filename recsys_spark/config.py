"""Typed configuration loaded once from ``conf/*.yaml`` plus ``--set key=value`` overrides.

``conf/base.yaml`` holds every key with its default; an overlay (``local.yaml``,
``cluster.yaml``, ``databricks.yaml``) changes only what differs per environment. The merged
mapping is turned into nested frozen (pydantic) dataclasses; an unknown key, a value of the wrong
type, or a value outside its enum or range (``fusion.method`` in {rank, minmax},
``rerank.creator_cap >= 1``, ``quality.threshold`` in [0, 1], ...) fails with a
:class:`ConfigError` naming the dotted key, the value and what is allowed. Jobs load the config
before any SparkSession exists, so a bad value stops them at once.

Secrets never live in conf: a string value ``${ENV:NAME}`` is replaced by the environment
variable ``NAME`` at load time (a missing variable is an error naming the key), and
:func:`load_config` refuses a file or override holding a plaintext secret (a secret-like key such
as ``password`` / ``*.secret.key`` with a literal value, or a value shaped like a known token;
:mod:`recsys_spark.safety`).

Examples
--------
>>> cfg = load_config("conf/local.yaml", overrides=["recall.item_cf.k=50"])  # doctest: +SKIP
>>> cfg.recall.item_cf.k  # doctest: +SKIP
50
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.resources
import json
import os
import re
import typing
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Dict, List, Literal, Mapping, Optional, Sequence

import yaml
from pydantic import AfterValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic.dataclasses import dataclass as _pydantic_dataclass

# The conf files ship inside the package (package data), so an installed wheel finds them; the
# checkout's top-level conf/ holds the same files (links) for people who read or copy them.
CONF_DIR = Path(str(importlib.resources.files("recsys_spark").joinpath("conf")))
# The folder above the package: the checkout when run from source, site-packages when installed.
# Only tests and tools of the checkout use it; storage paths never resolve against it (resolve_path).
REPO_ROOT = Path(__file__).resolve().parent.parent
ROOT_ENV = "RECSYS_ROOT"


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the offending key."""


# --------------------------------------------------------------------------------------------
# Value rules (pydantic v2). Each section is a frozen pydantic dataclass: attribute access and
# dataclasses.asdict stay as before, and a value out of its enum or range is refused when the
# config is built (before any SparkSession exists) with the key, the value and what is allowed.
# --------------------------------------------------------------------------------------------

_SECTION = ConfigDict(extra="forbid")


def section(cls):
    """A config section: a frozen dataclass whose values pydantic checks against the annotations."""
    return _pydantic_dataclass(frozen=True, config=_SECTION)(cls)


def _valid_timezone(name: str) -> str:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError("must be an IANA time zone such as UTC or Europe/Berlin") from None
    return name


Pos = Annotated[int, Field(ge=1)]
NonNeg = Annotated[int, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Prob = Annotated[float, Field(ge=0.0, le=1.0)]
NonEmpty = Annotated[str, Field(min_length=1)]
# 1..30: the discover_weekly table's CHECK constraint holds positions 1..30 (recsys_spark.tables)
PlaylistSize = Annotated[int, Field(ge=1, le=30)]
Memory = Annotated[str, Field(pattern=r"^[0-9]+[kKmMgGtT]?$")]  # Spark memory string: 512m, 6g
Device = Literal["auto", "cpu", "cuda"]
Weighting = Literal["log", "raw", "binary"]
TimeZone = Annotated[str, AfterValidator(_valid_timezone)]


def _describe(err: Mapping[str, Any]) -> str:
    """What is allowed, from a pydantic error: "one of 'rank', 'minmax'", ">= 1", ..."""
    ctx = err.get("ctx") or {}
    kind = err.get("type", "")
    if kind == "literal_error":
        return f"one of {ctx.get('expected')}"
    bounds = {"greater_than_equal": ">= {ge}", "greater_than": "> {gt}", "less_than_equal": "<= {le}",
              "less_than": "< {lt}", "string_too_short": "a non-empty string",
              "string_pattern_mismatch": "a value matching {pattern}"}
    if kind in bounds:
        return bounds[kind].format(**{k: ctx.get(k) for k in ("ge", "gt", "le", "lt", "pattern")})
    return str(err.get("msg", "")).replace("Value error, ", "")


def _validation_message(exc: ValidationError, prefix: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "__root__")
        key = ".".join(x for x in (prefix, loc) if x) or "<root>"
        if err.get("type") == "value_error":
            msg = str(err.get("msg", "")).replace("Value error, ", "")
            lines.append(f"config section '{key}': {msg}" if not loc else
                         f"config key '{key}' = {err.get('input')!r} is not allowed: {msg}")
        else:
            lines.append(f"config key '{key}' = {err.get('input')!r} is not allowed: must be {_describe(err)}")
    return "; ".join(lines)


# --------------------------------------------------------------------------------------------
# Sections. Defaults here mirror conf/base.yaml so the library is usable without any file.
# --------------------------------------------------------------------------------------------


@section
class SparkConf:
    master: NonEmpty = "local[*]"
    app_name: str = "recsys-spark"
    driver_memory: Memory = "6g"
    shuffle_partitions: Pos = 8
    # Extra Spark settings applied to a *new* local session only (never to an active one).
    extra: Dict[str, str] = field(default_factory=dict)
    # Directory with Delta jars (filled by `make jars`) used when Ivy cannot resolve them.
    jars_dir: str = ""


@section
class StorageConf:
    # "path": tables are Delta directories under `warehouse`; "catalog": <catalog>.<schema>.<name>.
    mode: Literal["path", "catalog"] = "path"
    warehouse: str = "warehouse"
    catalog: str = ""
    schema: str = "recsys"
    model_dir: NonEmpty = "artifacts/models"
    raw_dir: NonEmpty = "data/raw"
    # catalog mode: new discover_weekly / candidates tables use liquid clustering (week_start,
    # user_id) instead of week_start partitions (Databricks / Unity Catalog)
    liquid_clustering: bool = False

    @model_validator(mode="after")
    def _mode_needs_its_location(self):
        if self.mode == "path" and not self.warehouse.strip():
            raise ValueError("storage.warehouse must be set when storage.mode is 'path'")
        if self.mode == "catalog" and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", self.catalog or ""):
            raise ValueError(f"storage.catalog must be a catalog identifier when storage.mode is 'catalog', "
                             f"got {self.catalog!r}")
        if self.liquid_clustering and self.mode != "catalog":
            raise ValueError("storage.liquid_clustering is an option of storage.mode 'catalog'")
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", self.schema):
            raise ValueError(f"storage.schema must be a schema identifier, got {self.schema!r}")
        return self


@section
class GeneratorConf:
    n_users: Pos = 2000
    n_tracks: Pos = 1500
    n_creators: Pos = 300
    n_weeks: Pos = 8
    events_per_user_week: PosFloat = 12.0
    prompt_user_share: Prob = 0.35
    audio_tracks: Annotated[int, Field(ge=-1)] = -1  # tracks with audio: the first N; -1 = every track
    audio_seconds: PosFloat = 4.0
    audio_sample_rate: Pos = 48000
    bad_audio_rate: Prob = 0.02  # share of audio files written bad (cut, silent, 1 kHz header, not audio)
    bad_row_rate: Prob = 0.002
    partitions: Pos = 8
    seed: int = 7


@section
class IngestConf:
    max_text_chars: Pos = 4000
    max_title_chars: Pos = 300
    future_tolerance_hours: NonNeg = 24
    min_event_year: Pos = 2000
    default_weights: Dict[str, NonNegFloat] = field(
        default_factory=lambda: {
            "play": 1.0,
            "complete": 2.0,
            "upvote": 3.0,
            "comment": 3.0,
            "share": 4.0,
            "download": 4.0,
            "remix": 5.0,
            "skip": 0.0,
        }
    )


@section
class HistoryConf:
    last_n: Pos = 50
    this_week_share: Prob = 0.5
    recency_half_life_days: PosFloat = 21.0

    def seed_settings(self) -> Dict[str, float]:
        """The keyword arguments of :func:`recsys_spark.history.build_history` besides ``last_n``
        (what ``ChannelInputs.history`` carries to channels that rebuild seeds as of earlier weeks)."""
        return {"this_week_share": self.this_week_share, "half_life_days": self.recency_half_life_days}


@section
class ItemCFConf:
    enabled: bool = True
    k: Pos = 100
    # per_seed 20 / min_support 1 / max_items_per_user 500 (was 5 / 2 / 200): chosen through the
    # weekly job on a validation split (conf/base.yaml, benchmarks/results/eval_validation_hetrec.json)
    per_seed: Pos = 20
    n_seeds: Pos = 50
    similarity: Literal["cosine", "bm25", "tfidf"] = "cosine"  # cosine | bm25 | tfidf
    min_support: Pos = 1
    max_items_per_user: Pos = 500
    weighting: Weighting = "log"  # log | raw | binary
    bm25_k1: NonNegFloat = 1.2
    bm25_b: Prob = 0.75
    shrinkage: NonNegFloat = 10.0
    candidates: Pos = 200
    # item blocks of the distributed product; 0 = the fewest (>= default parallelism) with at most
    # max_block_rows user-track rows each (recall/item_cf.py choose_num_blocks)
    num_blocks: NonNeg = 0
    max_block_rows: Pos = 4_000_000
    # recommending: the neighbour table (tracks x per_seed rows) is broadcast when at most this many
    # rows, so the seeds x neighbours expansion stays partitioned by user (no shuffle of its rows)
    broadcast_rows: NonNeg = 5_000_000


@section
class ALSConf:
    enabled: bool = True
    rank: Pos = 64
    max_iter: Pos = 10
    reg_param: NonNegFloat = 0.1
    alpha: NonNegFloat = 5.0
    block_size: Pos = 4096
    num_blocks: Pos = 8
    candidates: Pos = 100
    weighting: Weighting = "log"
    topk: Literal["faiss", "mllib"] = "faiss"
    topk_batch_size: Pos = 1024


@section
class ContentConf:
    enabled: bool = True
    candidates: Pos = 100
    n_seeds: Pos = 20
    index: Literal["flat", "ivf", "hnsw"] = "flat"  # flat | ivf | hnsw
    ivf_nlist: Pos = 256
    ivf_nprobe: Pos = 16
    hnsw_m: Pos = 32
    hnsw_ef_search: Pos = 128
    batch_size: Pos = 2048  # users per faiss search batch inside mapInPandas
    seed_weighting: Literal["recency_log_weight", "recency", "uniform"] = "recency_log_weight"  # recency_log_weight | recency | uniform
    seed: int = 0  # IVF k-means seed; the two-tower's seed
    model: Literal["similarity", "two_tower"] = "two_tower"  # a track tower trained on plays | raw CLAP vectors
    tower_hidden: Pos = 256
    tower_dim: Pos = 64
    train_weeks: Pos = 4  # label weeks before W; the latest is held out (early stopping, tower vs raw)
    max_examples: Pos = 200000  # (seeds, positive) examples collected to the driver, sampled by user-week
    epochs: Pos = 20
    max_steps: NonNeg = 2000  # the training's budget in optimiser steps, rounded up to whole epochs; 0 = none
    train_batch_size: Pos = 512
    lr: PosFloat = 0.001
    temperature: PosFloat = 0.05
    patience: Pos = 3
    device: Device = "auto"  # auto | cpu | cuda: training on the driver and the track-vector UDF
    use_torch_distributor: bool = False  # train the tower with DDP under TorchDistributor (local mode)
    num_processes: Pos = 1  # DDP processes when use_torch_distributor
    # the track tower's input: the audio embedding, plus a multi-hot of the catalogue's this-many most
    # common style tags when > 0 (tracks.tags; new tracks have tags too); 0 = audio only
    tower_tags: NonNeg = 0


@section
class PromptConf:
    enabled: bool = True
    candidates: Pos = 100
    max_prompts: Pos = 20
    half_life_days: PosFloat = 30.0
    combine_with_history: bool = False
    history_weight: Prob = 0.5
    target: Literal["audio", "track_prompt"] = "audio"  # audio: track audio embeddings (CLAP text->audio) | track_prompt: tracks' prompt text


@section
class PopularityConf:
    enabled: bool = True
    candidates: Pos = 50
    top_genres: Pos = 3
    per_genre_pool: Pos = 100


@section
class RecallConf:
    item_cf: ItemCFConf = field(default_factory=ItemCFConf)
    als: ALSConf = field(default_factory=ALSConf)
    content: ContentConf = field(default_factory=ContentConf)
    prompt: PromptConf = field(default_factory=PromptConf)
    popularity: PopularityConf = field(default_factory=PopularityConf)


@section
class EmbeddingConf:
    enabled: bool = True
    audio_model: str = "HTSAT-base"
    text_model: str = "roberta"
    checkpoint_path: str = ""
    tokenizer_path: str = ""  # local dir with the roberta-base tokenizer files (vocab.json, merges.txt)
    trust_checkpoint: bool = False  # allow a full (pickle) torch.load when weights_only loading fails
    enable_fusion: bool = False
    model_version: str = ""
    batch_size: Pos = 16
    window_seconds: PosFloat = 10.0
    max_windows: Pos = 6
    sample_rate: Pos = 48000
    device: Device = "auto"  # auto | cpu | cuda
    seed: int = 0
    audio_precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 where native (AVX512-BF16/AMX, CUDA)
    text_precision: Literal["auto", "fp32", "bf16"] = "auto"  # the text tower's (prompts), same rule
    stft: Literal["fft", "conv"] = "fft"  # spectrogram front end: torch.stft, or laion-clap's DFT convolution
    threads_per_task: Annotated[int, Field(ge=-1)] = 0  # torch threads per Spark task: 0 = spark.task.cpus, -1 = torch default


@section
class AestheticsConf:
    enabled: bool = False  # score tracks' audio with Audiobox Aesthetics in the embed stage (track_aesthetics)
    checkpoint_path: str = ""  # model.safetensors + config.json folder, or checkpoint.pt; empty = untrained (logged loudly)
    model_version: str = ""
    batch_size: Pos = 8  # 10 s windows per forward pass
    max_windows: Pos = 6
    device: Device = "auto"
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    threads_per_task: Annotated[int, Field(ge=-1)] = 0


@section
class QualityConf:
    enabled: bool = True
    threshold: Prob = 0.3
    prior_strength: NonNegFloat = 20.0
    upvote_weight: NonNegFloat = 1.0
    comment_weight: NonNegFloat = 2.0
    aesthetics_table: str = ""
    aesthetics_weight: Prob = 0.0
    aesthetics_axis: Literal["CE", "CU", "PC", "PQ"] = "PQ"  # the track_aesthetics column blended in
    mapping: Literal["ratio", "percentile"] = "ratio"  # ratio (s / (s + mu), prior -> 0.5) | percentile


@section
class DINConf:
    enabled: bool = True
    embedding_dim: Pos = 32
    attention_hidden: List[Pos] = field(default_factory=lambda: [64, 32])
    mlp_hidden: List[Pos] = field(default_factory=lambda: [128, 64])
    use_content: bool = True
    softmax_attention: bool = False
    train_weeks: Pos = 3
    negatives_per_positive: Pos = 4
    max_history: Pos = 50
    epochs: Pos = 8
    batch_size: Pos = 1024
    lr: PosFloat = 0.003
    patience: NonNeg = 2
    # logloss: per example, model choice on validation AUC; softmax: each positive against its
    # user's list of the label week, model choice on validation NDCG@30
    loss: Literal["logloss", "softmax"] = "logloss"
    use_torch_distributor: bool = False
    num_processes: Pos = 1
    device: Device = "auto"
    score_batch_size: Pos = 4096
    # the scoring UDF's arithmetic: fp32 (as trained), bf16 autocast, or auto = bf16 where the device
    # has it natively (AVX512-BF16 / AMX CPUs, CUDA with bf16); training is always fp32
    score_precision: Literal["auto", "fp32", "bf16"] = "fp32"
    prerank_top_n: NonNeg = 150  # candidates per user DIN scores (best fused recall score first); 0 = all
    seed: int = 0
    popularity_share: Prob = 0.5
    min_count: Pos = 1
    max_train_rows: NonNeg = 2000000


@section
class RankerConf:
    # the learned ranker over every channel's candidates (recsys_spark/ranking/ranker.py); off by
    # default until it wins on validation splits (benchmarks/README.md, learned ranker)
    enabled: bool = False
    # logistic: the best validation NDCG@30 of the playlists on HetRec (a tie within the interval;
    # benchmarks/README.md, learned ranker); gbt | logistic (pointwise) | pairwise (linear, BPR loss)
    model: Literal["gbt", "logistic", "pairwise"] = "logistic"
    label_share: Prob = 0.1          # label window: the last whole weeks before W holding this share
    min_label_events: Pos = 200000   # ... of the events before W, or this many events (first reached)
    max_label_weeks: Pos = 520
    min_positives: Pos = 20          # fewer labelled hits among the label users' candidates: not trained
    max_train_users: Pos = 200000    # label users sampled (by hash) above this
    max_train_rows: Pos = 2000000    # negatives sampled (by hash) above this
    holdout_share: Prob = 0.2        # label users held out to check the ranker against the fused order
    require_gain: bool = True        # use the ranker only when it beats the fused order on them
    # ways to use it, chosen on the held-out users: blended with the fused recall score (weight 1)
    # at each of these ranker weights (or alone, with blend_alone)
    blend_weights: List[PosFloat] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    blend_alone: bool = False        # also try the ranker alone (without the recall score): see ranker.blend_options
    reuse_recall: bool = True        # use recall_candidates[L] when a weekly run of L wrote them
    max_iter: Pos = 60
    max_depth: Pos = 5
    step_size: PosFloat = 0.1
    reg_param: NonNegFloat = 0.01    # logistic and pairwise
    pair_negatives: Pos = 50         # pairwise: negatives paired with each positive of the same user
    seed: int = 0


@section
class FusionConf:
    method: Literal["rank", "minmax"] = "rank"  # rank | minmax
    channel_weights: Dict[str, NonNegFloat] = field(
        default_factory=lambda: {"item_cf": 2.0, "als": 1.0, "content": 0.5, "prompt": 0.5, "popular": 0.5}
    )
    # weights that replace channel_weights' for users no history channel (item_cf, als, content) reached
    cold_user_channel_weights: Dict[str, NonNegFloat] = field(default_factory=dict)
    din_weight: NonNegFloat = 0.25
    rrf_k: PosFloat = 60.0
    final_scale: Literal["minmax", "rank"] = "minmax"  # how final_score puts recall / DIN / ranker on one scale
    recall_weight: NonNegFloat = 1.0
    quality_weight: NonNegFloat = 0.0
    default_channel_weight: NonNegFloat = 0.0


@section
class AggregationConf:
    enabled: bool = True
    method: Literal["attention", "mean"] = "mean"  # mean | attention (chosen on validation: conf/base.yaml)
    max_tracks: Pos = 50
    train_weeks: Pos = 3
    n_negatives: Pos = 4
    proj_dim: Pos = 64
    hidden: Pos = 64
    epochs: Pos = 10
    lr: PosFloat = 0.003
    max_users: Pos = 50000
    seed: int = 0


@section
class RerankConf:
    playlist_size: PlaylistSize = 30
    creator_cap: Pos = 2
    diversity_lambda: Prob = 0.8
    diversity_enabled: bool = True
    creator_similarity_weight: Prob = 0.8  # MMR: weight of the creators' embedding cosine (0 = off)
    fresh_share: Prob = 0.1
    fresh_days: NonNeg = 14
    fresh_unplayed: bool = True
    fresh_lane: NonNeg = 0
    max_candidates: Pos = 150
    plugin: str = ""
    plugin_top_n: Pos = 50
    plugin_options: Dict[str, Any] = field(default_factory=dict)


@section
class PipelineConf:
    seed: int = 42
    timezone: TimeZone = "UTC"
    model_version: NonEmpty = "dw-0.1"
    write_candidates: bool = True
    # a week W is refused when the last interaction before it is more than 7 + this many days
    # before W (a far-future --week, or ingestion that stopped): the run says so instead of
    # building playlists from stale data
    max_days_after_data: NonNeg = 28
    # the week's interactions are cached (memory and disk) for the run when the interactions table
    # holds less than this many MB of files: every stage then reads them once instead of scanning
    # the table again (a public data set spans thousands of day partitions). 0 = never cache; a
    # platform's full history is far above it and is read per stage with partition pruning.
    cache_interactions_mb: NonNeg = 1024


#: pipeline keys that change how a run executes, never what it computes (not in the fingerprint)
EXECUTION_ONLY_PIPELINE_KEYS = ("cache_interactions_mb",)


@section
class TrackingConf:
    # MLflow tracking of each weekly run (params, per-stage metrics, model files); "" = off.
    # Any MLflow tracking URI: "databricks", "http://host:5000", "sqlite:///mlflow.db", "file:///x"
    # (the file store needs MLFLOW_ALLOW_FILE_STORE=true since MLflow 3.x). Needs the `tracking`
    # extra (mlflow-skinny); when mlflow is missing the run logs a warning and goes on.
    mlflow_uri: str = ""
    experiment: NonEmpty = "recsys-spark-weekly"
    log_models: bool = True  # upload <model_dir>/week=<W> as run artifacts (local model dirs only)


@section
class Config:
    env: str = "local"
    spark: SparkConf = field(default_factory=SparkConf)
    storage: StorageConf = field(default_factory=StorageConf)
    generator: GeneratorConf = field(default_factory=GeneratorConf)
    ingest: IngestConf = field(default_factory=IngestConf)
    history: HistoryConf = field(default_factory=HistoryConf)
    recall: RecallConf = field(default_factory=RecallConf)
    embeddings: EmbeddingConf = field(default_factory=EmbeddingConf)
    aesthetics: AestheticsConf = field(default_factory=AestheticsConf)
    quality: QualityConf = field(default_factory=QualityConf)
    din: DINConf = field(default_factory=DINConf)
    ranker: RankerConf = field(default_factory=RankerConf)
    fusion: FusionConf = field(default_factory=FusionConf)
    aggregation: AggregationConf = field(default_factory=AggregationConf)
    rerank: RerankConf = field(default_factory=RerankConf)
    pipeline: PipelineConf = field(default_factory=PipelineConf)
    tracking: TrackingConf = field(default_factory=TrackingConf)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """A short stable hash of the configuration that shapes results (stored with each run).

        Execution settings (``spark``, ``env``, ``tracking``, ``pipeline.cache_interactions_mb``) are left out: the same week computed
        on another cluster size is the same result, and a resumed run may use other resources.
        """
        data = {k: v for k, v in self.to_dict().items() if k not in ("spark", "env", "tracking")}
        data["pipeline"] = {k: v for k, v in data["pipeline"].items() if k not in EXECUTION_ONLY_PIPELINE_KEYS}
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]

    def replace(self, **overrides: Any) -> "Config":
        """Return a copy with dotted-key overrides applied, e.g. ``replace(**{"rerank.creator_cap": 3})``."""
        data = self.to_dict()
        for key, value in overrides.items():
            _set_dotted(data, key, value)
        return from_dict(data)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

_ENV_REF = re.compile(r"^\$\{ENV:([A-Za-z_][A-Za-z0-9_]*)\}$")


def _deep_merge(base: Dict[str, Any], over: Mapping[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def _set_dotted(data: Dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    cur = data
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            raise ConfigError(f"unknown config key '{key}' ('{p}' is not a section)")
        cur = nxt
    cur[parts[-1]] = value


def _check_type(key: str, tp: Any, value: Any) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if isinstance(value, str):
        m = _ENV_REF.match(value)
        if m:
            name = m.group(1)
            if name not in os.environ:
                raise ConfigError(f"config key '{key}' refers to environment variable {name}, which is not set")
            value = yaml.safe_load(os.environ[name]) if tp is not str else os.environ[name]
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _check_type(key, args[0], value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be a boolean, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
        return value
    if origin in (list, List):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        (inner,) = typing.get_args(tp) or (Any,)
        return [_check_type(f"{key}[{i}]", inner, v) for i, v in enumerate(value)]
    if origin in (dict, Dict):
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        _, inner = typing.get_args(tp) or (str, Any)
        return {str(k): _check_type(f"{key}.{k}", inner, v) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    return value


def _build(cls: Any, data: Any, prefix: str = "") -> Any:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config section '{prefix or '<root>'}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(f"unknown config key '{where}' (known keys here: {', '.join(sorted(names))})")
    kwargs = {}
    for name in names:
        if name in data:
            key = f"{prefix}.{name}" if prefix else name
            kwargs[name] = _check_type(key, hints[name], data[name])
    try:
        return cls(**kwargs)
    except ValidationError as exc:
        raise ConfigError(_validation_message(exc, prefix)) from None


def from_dict(data: Mapping[str, Any]) -> Config:
    """Build a validated :class:`Config` from a (possibly partial) nested mapping."""
    cfg = _build(Config, data)
    q = cfg.quality
    if q.aesthetics_weight > 0 and not q.aesthetics_table and not cfg.aesthetics.enabled:
        raise ConfigError(f"config key 'quality.aesthetics_weight' is {q.aesthetics_weight} but there is no aesthetics "
                          "score to blend: set aesthetics.enabled=true (track_aesthetics) or quality.aesthetics_table")
    return cfg


def parse_override(text: str) -> tuple:
    """Parse ``a.b=value`` into ``("a.b", value)`` with YAML typing of the value."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{text}' has an empty key")
    return key, yaml.safe_load(raw) if raw.strip() != "" else ""


def resolve_path(path: str, root: Optional[str] = None) -> str:
    """Resolve a relative storage path against ``root``, ``$RECSYS_ROOT`` or the working directory.

    URIs (``s3a://``, ``dbfs:/``) and absolute paths (``/Volumes/...``) are returned unchanged;
    ``file:`` URIs become the local path they name. Never resolves against the install folder, so an installed wheel writes where it is run.
    """
    if path and path.startswith("file:"):  # file:///x and file:/x are local paths (libraries need no URI)
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(path).path) or "/"
    if not path or "://" in path or path.startswith("dbfs:") or os.path.isabs(path):
        return path
    base = root or os.environ.get(ROOT_ENV) or os.getcwd()
    return os.path.abspath(os.path.join(base, path))


def conf_file(name: Optional[str]) -> Path:
    """The conf file for ``--conf NAME``: an existing file path, else a file shipped with the package.

    ``None`` means ``local.yaml``; ``cluster``, ``cluster.yaml`` and ``conf/cluster.yaml`` all name
    the packaged ``cluster.yaml`` when no such file exists relative to the working directory.
    """
    name = name or "local.yaml"
    p = Path(name).expanduser()
    if p.exists():
        return p
    shipped = sorted(x.name for x in CONF_DIR.glob("*.yaml"))
    stem = p.name if p.suffix in (".yaml", ".yml") else p.name + ".yaml"
    is_shipped_name = len(p.parts) == 1 or (len(p.parts) == 2 and p.parts[0] == "conf")
    if is_shipped_name and stem in shipped:
        return CONF_DIR / stem
    raise ConfigError(f"config file not found: {name} (not a file here, nor one of the packaged conf files: "
                      f"{', '.join(shipped)})")


def _read_yaml(path: Path) -> Dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must contain a mapping at the top level")
    return data


def load_config(
    path: Optional[str] = None,
    overrides: Sequence[str] = (),
    base: Optional[str] = None,
) -> Config:
    """Load ``conf/base.yaml`` merged with the overlay ``path`` and ``key=value`` overrides.

    Parameters
    ----------
    path : str, optional
        Overlay YAML: a file path, or the name of a packaged conf file (``local`` when omitted,
        ``cluster``, ``databricks``; see :func:`conf_file`). The packaged ``base.yaml`` is always
        applied first.
    overrides : sequence of str
        ``"section.key=value"`` strings; values are parsed as YAML (``3``, ``true``, ``[1, 2]``).
    base : str, optional
        Alternative base file (tests).

    Returns
    -------
    Config
        The validated, frozen configuration.
    """
    from .safety import find_plaintext_secrets

    secrets: List[str] = []
    base_path = Path(base) if base else CONF_DIR / "base.yaml"
    data = _read_yaml(base_path) if base_path.exists() else {}
    secrets += [f"{base_path}: {m}" for m in find_plaintext_secrets(data)]
    overlay = conf_file(path)
    if overlay.resolve() != base_path.resolve():
        over = _read_yaml(overlay)
        secrets += [f"{overlay}: {m}" for m in find_plaintext_secrets(over)]
        data = _deep_merge(data, over)
    for item in overrides:
        key, value = parse_override(item)
        secrets += [f"override {m}" for m in find_plaintext_secrets({key: value})]
        _set_dotted(data, key, value)
    if secrets:  # checked before the values are used or ${ENV:...} references resolved
        raise ConfigError("plaintext secrets in the configuration; put them in the environment and write "
                          "${ENV:NAME} (or a {{secrets/scope/key}} reference) instead:\n  " + "\n  ".join(secrets))
    return from_dict(data)
