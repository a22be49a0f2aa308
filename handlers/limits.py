"""What a registered item accepts, whoever types it in (a citizen or an operator)."""

from __future__ import annotations

TEXT_MIN, TEXT_MAX = 10, 4000  # characters of the problem's description
MAX_PHOTOS = 5
