"""transformer-triad: the ``triad`` CLI, the kernel verifier, the benchmark harness and the workflows."""

from typing import Any

# The verifier pulls in torch and hypothesis: import it only when asked for, so ``import triad`` stays cheap.
_LAZY = {"verify_attention": "triad.verify", "assert_attention_matches_reference": "triad.verify"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'triad' has no attribute {name!r}")
