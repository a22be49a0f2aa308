"""Importing these modules registers their staff features (see features.py)."""
