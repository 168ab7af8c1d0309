r"""FLOP counts: the one place the benchmark's TFLOP/s figures come from.

The convention is FlashAttention's (its ``benchmarks/`` scripts), so figures compare with theirs.
For ``q (B, H, Lq, d)``, ``k, v (B, H, Lk, d)``:

.. math::

    F_\text{fwd} = 4\,B\,H\,L_q\,L_k\,d \;(\times \tfrac12 \text{ when causal}), \qquad
    F_\text{bwd} = 2.5\,F_\text{fwd}, \qquad F_\text{fwd+bwd} = 3.5\,F_\text{fwd}

The forward is two matrix products, :math:`S = QK^\top` and :math:`O = PV`, each
:math:`2\,L_q L_k d` multiply-adds-as-two-FLOPs per head. The backward has four such products
(:math:`dV = P^\top dO`, :math:`dP = dO\,V^\top`, :math:`dQ = dS\,K`, :math:`dK = dS^\top Q`),
2x the forward; FlashAttention counts 2.5x because its backward also recomputes :math:`S = QK^\top`.
A causal mask skips half the blocks, so half the work is counted. Softmax, scaling and masking are
not counted (they are :math:`O(L_q L_k)`, not :math:`O(L_q L_k d)`). The same count is used for
every kernel, so a kernel that does more work (the naive one materialises :math:`P`) is not credited
for it: TFLOP/s here means "useful attention work per second".

A square matrix product of size ``n`` counts :math:`2n^3` FLOPs (the matmul peak).
"""

from __future__ import annotations

MODES = ("fwd", "bwd", "fwd+bwd")
MODE_FACTORS = {"fwd": 1.0, "bwd": 2.5, "fwd+bwd": 3.5}

# Printed under every report and stored in the JSON header.
FLOP_CONVENTION = ("FLOPs (FlashAttention's convention): fwd 4*B*H*Lq*Lk*d, causal counted as half; "
                   "bwd 2.5x fwd; fwd+bwd 3.5x fwd; matmul 2*n^3")


def attention_flops(B: int, H: int, Lq: int, Lk: int, d_head: int, causal: bool, mode: str) -> float:
    """FLOPs of one attention call of ``mode`` ('fwd', 'bwd' or 'fwd+bwd') by the convention above."""
    for name, value in (("B", B), ("H", H), ("Lq", Lq), ("Lk", Lk), ("d_head", d_head)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    if mode not in MODE_FACTORS:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    forward = 4.0 * B * H * Lq * Lk * d_head
    if causal:
        forward /= 2.0
    return forward * MODE_FACTORS[mode]


def matmul_flops(n: int) -> float:
    """FLOPs of one ``(n, n) @ (n, n)`` product."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n: expected a positive int, got {n!r}")
    return 2.0 * n**3
