"""What an exported graph is built from, without torch (importing the graph module imports torch, which
predicting and searching never need)."""

from __future__ import annotations

import msgspec
import numpy as np

# A device's "nearest labeled example" output when no example was among the neighbours (similarities are
# in [-1, 1]): the standalone script reads it as "none", as the server's None.
NO_EXAMPLE = -2.0


class Voters(msgspec.Struct, frozen=True):
    """The inputs that vote for the model and what each says: the same rows the server searches."""

    vectors: np.ndarray  # float32 [m, d], L2-normalised
    votes: np.ndarray  # float32 [m, c]: vote value per concept (loupe.learning.neighbours.vote_targets)
    voting: np.ndarray  # bool [m, c]: whether it votes on the concept
    examples: np.ndarray  # bool [m]: labeled with one of the model's concepts (background rows only vote)


class GraphSpec(msgspec.Struct, frozen=True):
    weights: np.ndarray  # float32 [c, d]
    bias: np.ndarray  # float32 [c]
    mutually_exclusive: bool
    temperature: float
    head_weight: float
    k: int
    sharpness: float
    voters: Voters | None  # None: the head alone (a head-only export)
