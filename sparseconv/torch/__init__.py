"""The torch path: sparseconv's operators as torch functions and modules, on whatever device x lives.

Imported only on demand (``import sparseconv.torch``); ``import sparseconv``
never imports torch. Contents:

- :mod:`.functional`: ``conv2d`` (sparseconv's padding rules), ``channel_shuffle``,
  ``igc_conv2d``, ``permuted_pointwise``, ``igc_backend`` (composed torch ops or
  fused Triton kernels), ``operator_conv2d`` (any WeightOperator with torch ops),
  ``sign_ste`` and ``fake_quantize`` (straight-through estimators);
- :mod:`.modules`: ``IGCV1Conv2d``, ``IGCV2Conv2d``, ``IGCV3Block`` (``backend=``) and one
  trainable module per operator family, each ``torch.compile(fullgraph=True)``-ready;
- :mod:`.convert`: ``from_operator``, ``to_operator``, ``from_conv``, ``compress``;
- :mod:`.models`: ``igcv3_d``, ``mobilenet_v2``, ``resnet18``, ``igc_resnet18``;
- :mod:`.cost`: ``count_cost``.
"""

try:
    import torch as _torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError("sparseconv.torch needs PyTorch; install the extra: pip install 'sparseconv[torch]'") from exc

from . import functional
from .convert import compress, from_conv, from_operator, to_operator
from .cost import CostTable, count_cost
from .models import igc_resnet18, igcv3_d, mobilenet_v2, resnet18
from .modules import IGCV1Conv2d, IGCV2Conv2d, IGCV3Block

__all__ = [
    "CostTable",
    "IGCV1Conv2d",
    "IGCV2Conv2d",
    "IGCV3Block",
    "compress",
    "count_cost",
    "from_conv",
    "from_operator",
    "functional",
    "igc_resnet18",
    "igcv3_d",
    "mobilenet_v2",
    "resnet18",
    "to_operator",
]
