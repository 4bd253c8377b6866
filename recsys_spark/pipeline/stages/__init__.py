"""One module per weekly stage (see :mod:`recsys_spark.pipeline`)."""

from .aggregate_creators import AggregateCreatorsStage
from .embed import EmbedStage
from .load import LoadStage
from .rank import RankStage
from .recall import RECALL_CHANNELS, RecallStage
from .train_din import TrainDinStage
from .train_ranker import TrainRankerStage
from .write import WriteStage

__all__ = ["AggregateCreatorsStage", "EmbedStage", "LoadStage", "RankStage", "RECALL_CHANNELS", "RecallStage",
           "TrainDinStage", "TrainRankerStage", "WriteStage"]
