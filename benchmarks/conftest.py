"""pytest-benchmark suite for the attention core: ``pytest benchmarks`` (not collected by a plain ``pytest``).

Save and compare runs with pytest-benchmark's own flags, e.g.::

    pytest benchmarks --benchmark-save=cpu --benchmark-compare --benchmark-compare-fail=median:10%

CUDA cases skip without a GPU. float32 means float32: TF32 is switched off, as in the tests.
"""

from __future__ import annotations

import torch

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
