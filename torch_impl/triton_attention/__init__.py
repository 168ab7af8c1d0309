"""Our FlashAttention-2 kernel in Triton, forward and backward (``docs/triton_kernel.md``).

Two entry points: ``triton_sdpa`` (``F.scaled_dot_product_attention``'s interface, the registry's
``triton`` kernel) and ``triton_flash_attention`` (FlashAttention's: ``(B, L, H, d)`` layout,
bottom-right ``causal``, ``window_size``, ``softcap``, ``return_lse``). GQA/MQA, Lq != Lk, any length,
head dims 1-256 (padded to a power of two inside the kernel), float16, bfloat16 and float32 with
float32 accumulation. On the CPU it runs under Triton's interpreter only: ``TRITON_INTERPRET=1`` must
be in the environment before this package is imported.
"""

from torch_impl.triton_attention.attention import INTERPRETED, TritonAttention, triton_flash_attention, triton_sdpa

__all__ = ["INTERPRETED", "TritonAttention", "triton_flash_attention", "triton_sdpa"]
