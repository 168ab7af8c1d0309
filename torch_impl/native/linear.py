"""Linear map, native: ``torch.nn.Linear`` itself (same constructor ``Linear(in_features, out_features, bias)``
and the same parameter names ``weight`` (out, in), ``bias`` (out,) as ``torch_impl/scratch/linear.py``)."""

from torch.nn import Linear

__all__ = ["Linear"]
