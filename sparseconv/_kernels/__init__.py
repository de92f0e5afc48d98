"""The numba kernels, one module per kernel family; they import nothing public.

- ``im2col``: im2col/col2im tiles;
- ``conv``: the dense, grouped and depthwise convolution paths (GEMMs on im2col tiles or shifted views,
  direct loops, the grouped register tiles);
- ``channels_last``: the im2col GEMM on a channels-last copy, depthwise on small planes;
- ``direct`` and ``pixel_tile``: the direct convolution by register tiles of output pixels x output channels;
- ``tile``: the float register tiles in LLVM IR (narrow groups, CSR rows);
- ``igc``: IGCV1's secondary with both shuffles as strides, and its fused pass;
- ``sparse``: CSR, BSR and N:M products;
- ``bits``: popcount, sign packing, XNOR-popcount and add/subtract products;
- ``lowp``: integer (portable and VNNI) and codebook products;
- ``stream``: the STREAM triad, the memory bandwidth the benchmarks compare with.

Their numba flags and cache location come from ``sparseconv._config``; the
GEMM they call, from ``sparseconv._blas``.
"""
