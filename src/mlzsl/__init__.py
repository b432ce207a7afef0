"""mlzsl: multi-label zero-shot learning of images.

(ML)²P-Encoder (Liu et al., CVPR 2023) and its peers, on one exact evaluation protocol.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
