"""The one registry of recall channels, used by the weekly pipeline and by the evaluation.

>>> from recsys_spark.recall.registry import CHANNELS, enabled_channels, get_channel
>>> sorted(CHANNELS)
['als', 'content', 'item_cf', 'popular', 'prompt']

``CHANNELS`` maps a channel's name (the ``channel`` column, the ``recall.<name>`` stage) to its
:class:`~recsys_spark.recall.base.RecallChannel` class, in the pipeline's order. Each channel's
config section of :class:`recsys_spark.config.RecallConf` is :data:`CONF_SECTION` ``[name]``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Type

from pyspark.sql import DataFrame, SparkSession

from ..common import read_metadata
from .als import ALSRecall, ALSRecallModel
from .base import ChannelInputs, ChannelUnavailable, RecallChannel, RecallChannelModel
from .content import ContentRecall, ContentRecallModel
from .item_cf import ItemCF, ItemCFModel
from .popularity import PopularityModel, PopularityRecall
from .prompt import PromptRecall, PromptRecallModel

#: every channel, in the pipeline's order
CHANNELS: Dict[str, Type[RecallChannel]] = {
    c.name: c for c in (PopularityRecall, ItemCF, ALSRecall, ContentRecall, PromptRecall)
}
#: attribute of :class:`recsys_spark.config.RecallConf` holding each channel's config
CONF_SECTION: Dict[str, str] = {"popular": "popularity", "item_cf": "item_cf", "als": "als",
                                "content": "content", "prompt": "prompt"}
MODELS: Dict[str, Type[RecallChannelModel]] = {
    m.channel: m for m in (PopularityModel, ItemCFModel, ALSRecallModel, ContentRecallModel, PromptRecallModel)
}


def get_channel(name: str) -> Type[RecallChannel]:
    """The channel class registered as ``name``."""
    if name not in CHANNELS:
        raise KeyError(f"unknown recall channel {name!r}; known: {', '.join(CHANNELS)}")
    return CHANNELS[name]


def channel_conf(recall_conf: Any, name: str) -> Any:
    """The config dataclass of channel ``name`` in a :class:`~recsys_spark.config.RecallConf`
    (``None``: the channel's defaults)."""
    cls = get_channel(name)
    if recall_conf is None:
        return cls.conf_class()
    return getattr(recall_conf, CONF_SECTION[name])


def build_channel(name: str, recall_conf: Any = None, seed: int = 0, **overrides) -> RecallChannel:
    """``get_channel(name).from_conf(<its section of recall_conf>, seed, **overrides)``."""
    return get_channel(name).from_conf(channel_conf(recall_conf, name), seed=seed, **overrides)


def enabled_channels(recall_conf: Any) -> List[str]:
    """Names of the channels whose config section says ``enabled``, in the pipeline's order."""
    return [name for name in CHANNELS if channel_conf(recall_conf, name).enabled]


def candidates_per_user(recall_conf: Any, name: str) -> int:
    """How many candidates per user channel ``name`` contributes (its config's ``candidates``)."""
    return int(channel_conf(recall_conf, name).candidates)


def fit_recommend(channel: RecallChannel, inputs: ChannelInputs, n: int
                  ) -> Tuple[Optional[RecallChannelModel], Optional[DataFrame], Optional[str]]:
    """Fit ``channel`` on ``inputs`` and recommend ``n`` per user.

    Returns ``(model, candidates, None)``, or ``(None, None, reason)`` when the channel cannot run
    (:meth:`~recsys_spark.recall.base.RecallChannel.missing_inputs`, or
    :class:`~recsys_spark.recall.base.ChannelUnavailable` from ``fit``).
    """
    reason = channel.missing_inputs(inputs)
    if reason:
        return None, None, reason
    try:
        model = channel.fit(inputs)
    except ChannelUnavailable as exc:
        return None, None, str(exc)
    return model, model.recommend(inputs, n), None


def load_model(spark: SparkSession, path: str) -> RecallChannelModel:
    """Load any channel's model written by ``save`` (the metadata names the channel)."""
    meta = read_metadata(spark, path.rstrip("/") + "/metadata")
    channel = meta.get("channel")
    if channel not in MODELS:
        raise ValueError(f"{path} holds no recall channel model (metadata channel {channel!r})")
    return MODELS[channel].load(spark, path)
