"""transformer-triad: the ``triad`` CLI, the kernel verifier, the benchmark harness and the workflows."""
