"""The two PyTorch implementations (``scratch``, ``native``), the converter and the kernel registry."""
