"""Cleanup passes and the ``cleanup`` pipeline."""

from __future__ import annotations
