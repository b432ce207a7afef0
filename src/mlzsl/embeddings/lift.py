"""A fixed random orthogonal lift of another embedder's vectors to a larger size.

``lift:DIM:SPEC`` (alias ``glove50x300`` = ``lift:300:glove50``) embeds labels with ``SPEC``
(E_in-d) and maps each vector ``v`` to ``Q v`` with ``Q`` a fixed DIM×E_in matrix of orthonormal
columns: the Q factor of the QR decomposition of a DIM×E_in standard-normal matrix drawn by
``numpy.random.default_rng(LIFT_SEED)`` (signs fixed so that ``R`` has a positive diagonal).
``QᵀQ = I``, so norms, dot products and cosines between label vectors are exactly those of
``SPEC``: the lift changes the size E a model sees, not the geometry of the labels. It isolates
the effect of E from the effect of the words (issue 12: (ML)²P-Encoder at the paper's E = 300
with the packaged GloVe-50 words).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mlzsl.embeddings.base import Embedder
from mlzsl.errors import ConfigError

LIFT_SEED = 0  # the seed of the lift matrix; part of the embedder's name


def lift_matrix(dim_out: int, dim_in: int, seed: int = LIFT_SEED) -> np.ndarray:
    """The float64 [dim_out, dim_in] matrix with orthonormal columns (see the module doc)."""
    if dim_out < dim_in:
        raise ConfigError(f"a lift must not shrink vectors: {dim_in} -> {dim_out}")
    gaussian = np.random.default_rng(seed).standard_normal((dim_out, dim_in))
    q, r = np.linalg.qr(gaussian)  # q [dim_out, dim_in], r [dim_in, dim_in]
    return q * np.sign(np.diag(r))[None, :]  # unique: R with a positive diagonal


class LiftedEmbedder(Embedder):
    """``inner``'s label vectors mapped to ``dim`` sizes by a fixed orthogonal lift.

    Args:
        inner: the embedder whose vectors are lifted.
        dim: the output size (at least ``inner.dim``).
        seed: the lift matrix's seed (:data:`LIFT_SEED`).
    """

    def __init__(self, inner: Embedder, dim: int, seed: int = LIFT_SEED) -> None:
        if dim < inner.dim:
            raise ConfigError(f"lift:{dim}: smaller than the inner embedder's {inner.dim}-d")
        self.inner, self.dim, self.seed = inner, dim, seed
        self.name = f"lift{dim}s{seed}:{inner.name}"
        self.spec = f"lift:{dim}:{inner.spec}"
        self._matrix = lift_matrix(dim, inner.dim, seed)  # [dim, E_in]

    def embed(self, labels: Sequence[str]) -> np.ndarray:
        """float32 [L, dim]: ``inner.embed(labels) @ Qᵀ``."""
        vectors = np.asarray(self.inner.embed(labels), dtype=np.float64)  # [L, E_in]
        return (vectors @ self._matrix.T).astype(np.float32)  # [L, dim]
