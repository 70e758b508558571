"""Decision kinds, for the training strategies: `supernet.space.kinds` (where they are defined) re-exported."""

from __future__ import annotations

from ..space.kinds import KINDS, Kind, decision_kinds

__all__ = ["KINDS", "Kind", "decision_kinds"]
