"""Importing this package registers every merge method (one module per method family)."""

from tasks.merge.methods import linear, slerp, task_arithmetic, ties  # noqa: F401
