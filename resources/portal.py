"""(being written)"""

from __future__ import annotations

from ..actions.base import Action

ACTIONS: list[Action] = []
