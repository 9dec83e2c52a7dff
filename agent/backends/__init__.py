"""Inference backends behind one small interface, found by name; each imports its runtime lazily."""

from agent.backends.base import (
    BACKENDS,
    Backend,
    Session,
    backend_for,
    get_backend,
)

__all__ = ["BACKENDS", "Backend", "Session", "backend_for", "get_backend"]
