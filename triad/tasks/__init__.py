"""The workflows' tasks, generated or shipped with the package (nothing is downloaded).

- ``copy`` (``triad.tasks.copy``): SOS/EOS toy sequences for the encoder-decoder model.
- ``charlm`` (``triad.tasks.charlm``): thirteen animal sentences for the decoder-only LM.
- ``classify`` (``triad.tasks.classify``): generated sequences for the encoder-only head,
  classification and regression.
"""

TASKS = ("copy", "charlm", "classify")
