"""Studies on top of the library: the default layer, ``compare`` (every family at every budget on a real
layer), the equal-budget network study and the figures. The core never imports this package."""

from .model import compare_model

__all__ = ["compare_model"]
