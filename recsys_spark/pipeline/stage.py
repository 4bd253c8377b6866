"""The contract of a weekly stage.

A stage states what it reads and what it persists for week W, whether its inputs are there
(:meth:`Stage.skip_reason`), whether its output for W already exists with this configuration
(:meth:`Stage.done`, used by the runner to resume), and how it runs (:meth:`Stage.run`). The
runner, not the stage, handles resume, the week's claim/commit, the ``runs`` log and the release
of cached frames, so a stage can be run and tested alone on a :class:`~.context.RunContext`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

from .context import RunContext


@dataclass
class StageReport:
    """What a stage tells the ``runs`` log: rows in/out, counts, what it skipped and why."""

    rows_in: Optional[int] = None
    rows_out: Optional[int] = None
    counts: Dict[str, float] = field(default_factory=dict)
    skipped: Optional[str] = None
    message: Optional[str] = None

    def note_skip(self, why: str) -> None:
        """Add a reason to :attr:`skipped` (a part of the stage that did not run)."""
        self.skipped = f"{self.skipped}; {why}" if self.skipped else why


class Stage:
    """One step of the weekly run (see the module doc).

    Attributes
    ----------
    name : str
        The stage's name in ``runs`` (``recall.item_cf``).
    reads, persists : tuple of str
        What it reads and what it writes for W (documentation; shown by ``describe``).
    after : tuple of str
        Stages whose new output makes this stage's stored output stale: when one of them ran in
        this run, this stage runs again even if :meth:`done`.
    """

    name: str = ""
    reads: Tuple[str, ...] = ()
    persists: Tuple[str, ...] = ()
    after: Tuple[str, ...] = ()

    def skip_reason(self, ctx: RunContext) -> Optional[str]:
        """Why the stage cannot or must not run for this data set / configuration (None: it runs)."""
        return None

    def done(self, ctx: RunContext) -> bool:
        """True when W's output of this stage exists and was produced with ``ctx.fingerprint``."""
        return False

    def run(self, ctx: RunContext) -> Optional[StageReport]:
        raise NotImplementedError

    def describe(self) -> str:
        return (f"{self.name}: reads {', '.join(self.reads) or '-'}; persists {', '.join(self.persists) or '-'}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def recorded_output_present(ctx: RunContext, stage: str, rows_now: Callable[[], int]) -> bool:
    """The usual :meth:`Stage.done`: ``runs`` holds a succeeded row of ``stage`` for W with this
    fingerprint, and the output holds as many rows as that run recorded (``rows_out``)."""
    row = ctx.succeeded(stage)
    if row is None or row["rows_out"] is None:
        return False
    return rows_now() == row["rows_out"]
