"""The harness: one case built for all three implementations, run in each, compared.

``triad check`` (``triad/agreement/``) and the test suite (``equivalence_tests/``) both build their
cases and run the implementations through these modules, so a check and its test cannot drift apart:

- ``triad.harness.attention``: the attention core (an SDPA-shaped kernel on NumPy inputs).
- ``triad.harness.blocks``: random parameters, masks, fixed cases, and the runners for one block
  (a component, a layer, a stack) in the reference and in a torch module.
- ``triad.harness.models``: a model case (tokens, masks, targets, parameters), and forward, loss and
  backward of a whole model in each implementation.

What exists (blocks, models, kernels) is named in ``torch_impl.registry`` and ``torch_impl.kernels``.
"""
