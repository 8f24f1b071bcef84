"""Small helpers of the training loop (the seed's ``utils.py``): statistics of parameter
trees."""

from __future__ import annotations

from typing import Any

import jax


def count_params(tree: Any) -> int:
    """The number of values in a tree of arrays (parameters)."""
    return int(sum(x.size for x in jax.tree.leaves(tree)))
