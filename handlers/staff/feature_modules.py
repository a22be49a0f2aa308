"""Importing these modules registers their staff features (see features.py)."""

import handlers.analytics.chat  # /stats
import handlers.operator.register  # noqa: F401  (/register)
