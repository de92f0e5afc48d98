"""Sub-byte packing of small unsigned codes (NumPy only).

Codes of ``bits`` <= 4 bits go 8 // bits to a byte (2 per byte for 3 and 4
bits, 4 per byte for 2 bits, 8 for 1), lowest field first; wider codes are
stored one per uint8 (up to 8 bits) or uint16 (up to 16 bits).
"""

import numpy as np


def per_byte(bits):
    return 8 // bits if bits <= 4 else 1


def storage_dtype(bits):
    return np.uint8 if bits <= 8 else np.uint16


def pack(codes, bits):
    """(R, n) unsigned codes < 2**bits -> (R, ceil(n / per_byte)) of the narrowest storage."""
    codes = np.asarray(codes)
    per = per_byte(bits)
    if per == 1:
        return np.ascontiguousarray(codes, dtype=storage_dtype(bits))
    rows, n = codes.shape
    width = 8 // per
    padded = np.zeros((rows, -(-n // per) * per), np.uint8)
    padded[:, :n] = codes
    fields = padded.reshape(rows, -1, per).astype(np.uint16)  # (R, n_bytes, per)
    shifts = (np.arange(per) * width).astype(np.uint16)
    return (fields << shifts).sum(axis=2).astype(np.uint8)


def unpack(packed, bits, n):
    """The (R, n) codes of :func:`pack`, as uint8 (bits <= 8) or uint16."""
    per = per_byte(bits)
    if per == 1:
        return np.asarray(packed)[:, :n]
    width = 8 // per
    shifts = (np.arange(per) * width).astype(np.uint8)
    fields = (np.asarray(packed)[:, :, None] >> shifts) & np.uint8((1 << width) - 1)  # (R, n_bytes, per)
    return fields.reshape(packed.shape[0], -1)[:, :n]
