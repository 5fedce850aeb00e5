"""LINAS+: latency-aware, multi-hardware NAS of a defect-segmentation decoder.

Modules (each with one job): ``space`` (architectures and their spellings), ``ops``
(decoder blocks), ``encoder`` (frozen DenseNet121 taps), ``config`` (profiles),
``provenance`` (atomic result files), ``notebook`` (what notebooks call first),
``runner`` and ``cli`` (headless execution), ``numerics`` (native or portable kernels, set
here on import).
"""

from .numerics import apply as _apply_numerics

_apply_numerics()

__version__ = "0.1.0"
