"""The numba kernels, one module per kernel family; they import nothing public.

- ``im2col``: im2col/col2im tiles;
- ``conv``: the dense, grouped, depthwise and IGC convolution paths;
- ``sparse``: CSR, BSR and N:M products;
- ``bits``: popcount, sign packing, XNOR-popcount and add/subtract products;
- ``lowp``: integer (portable and VNNI) and codebook products.

Their numba flags and cache location come from ``sparseconv._config``; the
GEMM they call, from ``sparseconv._blas``.
"""
