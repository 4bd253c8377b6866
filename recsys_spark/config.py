"""Typed configuration loaded once from ``conf/*.yaml`` plus ``--set key=value`` overrides.

``conf/base.yaml`` holds every key with its default; an overlay (``local.yaml``,
``cluster.yaml``, ``databricks.yaml``) changes only what differs per environment. The merged
mapping is turned into nested frozen dataclasses; an unknown key or a value of the wrong type
fails with a :class:`ConfigError` that names the dotted key.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import yaml

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
# Sections. Defaults here mirror conf/base.yaml so the library is usable without any file.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SparkConf:
    master: str = "local[*]"
    app_name: str = "recsys-spark"
    driver_memory: str = "6g"
    shuffle_partitions: int = 8
    # Extra Spark settings applied to a *new* local session only (never to an active one).
    extra: Dict[str, str] = field(default_factory=dict)
    # Directory with Delta jars (filled by `make jars`) used when Ivy cannot resolve them.
    jars_dir: str = ""


@dataclass(frozen=True)
class StorageConf:
    # "path": tables are Delta directories under `warehouse`; "catalog": <catalog>.<schema>.<name>.
    mode: str = "path"
    warehouse: str = "warehouse"
    catalog: str = ""
    schema: str = "recsys"
    model_dir: str = "artifacts/models"
    raw_dir: str = "data/raw"


@dataclass(frozen=True)
class GeneratorConf:
    n_users: int = 2000
    n_tracks: int = 1500
    n_creators: int = 300
    n_weeks: int = 8
    events_per_user_week: float = 12.0
    prompt_user_share: float = 0.35
    audio_tracks: int = 120
    audio_seconds: float = 4.0
    audio_sample_rate: int = 48000
    bad_row_rate: float = 0.002
    partitions: int = 8
    seed: int = 7


@dataclass(frozen=True)
class IngestConf:
    max_text_chars: int = 4000
    max_title_chars: int = 300
    future_tolerance_hours: int = 24
    min_event_year: int = 2000
    default_weights: Dict[str, float] = field(
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


@dataclass(frozen=True)
class HistoryConf:
    last_n: int = 50
    this_week_share: float = 0.5
    recency_half_life_days: float = 21.0


@dataclass(frozen=True)
class ItemCFConf:
    enabled: bool = True
    k: int = 100
    per_seed: int = 5
    n_seeds: int = 50
    similarity: str = "cosine"  # cosine | bm25 | tfidf
    min_support: int = 2
    max_items_per_user: int = 200
    weighting: str = "log"  # log | raw | binary
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    shrinkage: float = 10.0
    candidates: int = 200
    num_blocks: int = 0  # item blocks of the distributed product; 0 = max(shuffle partitions, nnz/250k)


@dataclass(frozen=True)
class ALSConf:
    enabled: bool = True
    rank: int = 64
    max_iter: int = 10
    reg_param: float = 0.1
    alpha: float = 5.0
    block_size: int = 4096
    num_blocks: int = 8
    candidates: int = 100
    weighting: str = "log"
    topk: str = "faiss"
    topk_batch_size: int = 1024


@dataclass(frozen=True)
class ContentConf:
    enabled: bool = True
    candidates: int = 100
    n_seeds: int = 20
    index: str = "flat"  # flat | ivf | hnsw
    ivf_nlist: int = 256
    ivf_nprobe: int = 16
    hnsw_m: int = 32
    hnsw_ef_search: int = 128
    batch_size: int = 2048  # users per faiss search batch inside mapInPandas
    seed_weighting: str = "recency_log_weight"  # recency_log_weight | recency | uniform
    seed: int = 0  # IVF k-means seed


@dataclass(frozen=True)
class PromptConf:
    enabled: bool = True
    candidates: int = 100
    max_prompts: int = 20
    half_life_days: float = 30.0
    combine_with_history: bool = False
    history_weight: float = 0.5
    target: str = "audio"  # audio: track audio embeddings (CLAP text->audio) | track_prompt: tracks' prompt text


@dataclass(frozen=True)
class PopularityConf:
    enabled: bool = True
    candidates: int = 50
    top_genres: int = 3
    per_genre_pool: int = 100


@dataclass(frozen=True)
class RecallConf:
    item_cf: ItemCFConf = field(default_factory=ItemCFConf)
    als: ALSConf = field(default_factory=ALSConf)
    content: ContentConf = field(default_factory=ContentConf)
    prompt: PromptConf = field(default_factory=PromptConf)
    popularity: PopularityConf = field(default_factory=PopularityConf)


@dataclass(frozen=True)
class EmbeddingConf:
    enabled: bool = True
    audio_model: str = "HTSAT-base"
    text_model: str = "roberta"
    checkpoint_path: str = ""
    tokenizer_path: str = ""  # local dir with the roberta-base tokenizer files (vocab.json, merges.txt)
    trust_checkpoint: bool = False  # allow a full (pickle) torch.load when weights_only loading fails
    enable_fusion: bool = False
    model_version: str = ""
    batch_size: int = 16
    window_seconds: float = 10.0
    max_windows: int = 6
    sample_rate: int = 48000
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 0


@dataclass(frozen=True)
class QualityConf:
    enabled: bool = True
    threshold: float = 0.3
    prior_strength: float = 20.0
    upvote_weight: float = 1.0
    comment_weight: float = 2.0
    aesthetics_table: str = ""
    aesthetics_weight: float = 0.0
    mapping: str = "ratio"  # ratio (s / (s + mu), prior -> 0.5) | percentile


@dataclass(frozen=True)
class DINConf:
    enabled: bool = True
    embedding_dim: int = 32
    attention_hidden: List[int] = field(default_factory=lambda: [64, 32])
    mlp_hidden: List[int] = field(default_factory=lambda: [128, 64])
    use_content: bool = True
    softmax_attention: bool = False
    train_weeks: int = 3
    negatives_per_positive: int = 4
    max_history: int = 50
    epochs: int = 8
    batch_size: int = 1024
    lr: float = 0.003
    patience: int = 2
    use_torch_distributor: bool = False
    num_processes: int = 1
    device: str = "auto"
    score_batch_size: int = 4096
    prerank_top_n: int = 150  # candidates per user DIN scores (best fused recall score first); 0 = all
    seed: int = 0
    popularity_share: float = 0.5
    min_count: int = 1
    max_train_rows: int = 2000000


@dataclass(frozen=True)
class FusionConf:
    method: str = "rank"  # rank | minmax
    channel_weights: Dict[str, float] = field(
        default_factory=lambda: {"item_cf": 2.0, "als": 1.0, "content": 0.5, "prompt": 0.5, "popular": 0.5}
    )
    din_weight: float = 0.25
    rrf_k: float = 60.0
    recall_weight: float = 1.0
    quality_weight: float = 0.0
    default_channel_weight: float = 0.0


@dataclass(frozen=True)
class AggregationConf:
    enabled: bool = True
    method: str = "attention"  # attention | mean
    max_tracks: int = 50
    train_weeks: int = 3
    n_negatives: int = 4
    proj_dim: int = 64
    hidden: int = 64
    epochs: int = 10
    lr: float = 0.003
    max_users: int = 50000
    seed: int = 0


@dataclass(frozen=True)
class RerankConf:
    playlist_size: int = 30
    creator_cap: int = 2
    diversity_lambda: float = 0.8
    diversity_enabled: bool = True
    creator_similarity_weight: float = 0.8  # MMR: weight of the creators' embedding cosine (0 = off)
    fresh_share: float = 0.1
    fresh_days: int = 14
    max_candidates: int = 150
    plugin: str = ""
    plugin_top_n: int = 50
    plugin_options: Dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PipelineConf:
    seed: int = 42
    timezone: str = "UTC"
    model_version: str = "dw-0.1"
    write_candidates: bool = True


@dataclass(frozen=True)
class Config:
    env: str = "local"
    spark: SparkConf = field(default_factory=SparkConf)
    storage: StorageConf = field(default_factory=StorageConf)
    generator: GeneratorConf = field(default_factory=GeneratorConf)
    ingest: IngestConf = field(default_factory=IngestConf)
    history: HistoryConf = field(default_factory=HistoryConf)
    recall: RecallConf = field(default_factory=RecallConf)
    embeddings: EmbeddingConf = field(default_factory=EmbeddingConf)
    quality: QualityConf = field(default_factory=QualityConf)
    din: DINConf = field(default_factory=DINConf)
    fusion: FusionConf = field(default_factory=FusionConf)
    aggregation: AggregationConf = field(default_factory=AggregationConf)
    rerank: RerankConf = field(default_factory=RerankConf)
    pipeline: PipelineConf = field(default_factory=PipelineConf)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def fingerprint(self) -> str:
        """A short stable hash of the configuration that shapes results (stored with each run).

        Execution settings (``spark``, ``env``) are left out: the same week computed on another
        cluster size is the same result, and a resumed run may use other resources.
        """
        data = {k: v for k, v in self.to_dict().items() if k not in ("spark", "env")}
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
    return cls(**kwargs)


def from_dict(data: Mapping[str, Any]) -> Config:
    """Build a validated :class:`Config` from a (possibly partial) nested mapping."""
    return _build(Config, data)


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

    URIs (``s3a://``, ``file://``, ``dbfs:/``) and absolute paths (``/Volumes/...``) are returned
    unchanged. Never resolves against the install folder, so an installed wheel writes where it is run.
    """
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
