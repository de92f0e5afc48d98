"""Network builders (random initialisation, no downloads): IGCV3-D, MobileNetV2, ResNet-18, IGC-ResNet-18.

Each takes ``num_classes`` and, for the training studies on small images,
``in_channels`` and ``small_input=True``: a stride-1 stem (no max pool) for
28 x 28 or 32 x 32 inputs instead of the ImageNet stem.
"""

import torch.nn as nn

from .modules import IGCV1Conv2d, IGCV3Block

__all__ = ["igc_resnet18", "igcv3_d", "mobilenet_v2", "resnet18"]


def _make_divisible(v, divisor=8):
    """MobileNetV2's channel rounding: to a multiple of 8, never below 90% of v."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def _conv_bn(c_in, c_out, k, stride, groups=1, act=True):
    layers = [nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return layers


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand (BN, ReLU6; absent when t = 1), 3x3 depthwise (BN, ReLU6), 1x1 linear."""

    def __init__(self, c_in, c_out, stride, t):
        super().__init__()
        hidden = c_in * t
        layers = [] if t == 1 else _conv_bn(c_in, hidden, 1, 1)
        layers += _conv_bn(hidden, hidden, 3, stride, groups=hidden) + _conv_bn(hidden, c_out, 1, 1, act=False)
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


MOBILENET_V2_STAGES = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1)]
IGCV3_D_STAGES = [(1, 16, 1, 1), (6, 24, 4, 2), (6, 32, 6, 2), (6, 64, 8, 2), (6, 96, 6, 1), (6, 160, 6, 2),
                  (6, 320, 1, 1)]


def _mobile(stages, block, width_mult, num_classes, in_channels, small_input):
    c = _make_divisible(32 * width_mult)
    last = _make_divisible(1280 * max(1.0, width_mult))
    layers = _conv_bn(in_channels, c, 3, 1 if small_input else 2)
    for t, ch, n, s in stages:
        out = _make_divisible(ch * width_mult)
        for i in range(n):
            layers.append(block(c, out, s if i == 0 else 1, t))
            c = out
    layers += _conv_bn(c, last, 1, 1)
    return nn.Sequential(nn.Sequential(*layers), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(last, num_classes))


def mobilenet_v2(width_mult=1.0, num_classes=1000, in_channels=3, small_input=False):
    """MobileNetV2 (Sandler et al. 2018): 3.50 M parameters and about 300 M MACs at 224 x 224, width 1.0."""
    return _mobile(MOBILENET_V2_STAGES, InvertedResidual, width_mult, num_classes, in_channels, small_input)


def igcv3_d(width_mult=1.0, num_classes=1000, in_channels=3, small_input=False, groups=(2, 2)):
    """IGCV3-D (Sun et al. 2018): MobileNetV2's layout with IGCV3 blocks and deeper stages."""
    def block(c_in, c_out, stride, t):
        return IGCV3Block(c_in, c_out, expansion=t, stride=stride, groups=groups)

    return _mobile(IGCV3_D_STAGES, block, width_mult, num_classes, in_channels, small_input)


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 convs (BN, ReLU), identity or 1x1-conv shortcut."""

    def __init__(self, c_in, c_out, stride, conv3x3):
        super().__init__()
        self.conv1 = conv3x3(c_in, c_out, stride)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = conv3x3(c_out, c_out, 1)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + (x if self.shortcut is None else self.shortcut(x)))


def _resnet18(conv3x3, num_classes, in_channels, small_input, widths=(64, 128, 256, 512)):
    if small_input:
        stem = [nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                nn.ReLU(inplace=True)]
    else:
        stem = [nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]),
                nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    layers, c = [], widths[0]
    for i, w in enumerate(widths):
        for j in range(2):
            layers.append(BasicBlock(c, w, 2 if (i > 0 and j == 0) else 1, conv3x3))
            c = w
    return nn.Sequential(*stem, *layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))


def resnet18(num_classes=1000, in_channels=3, small_input=False):
    """ResNet-18 (He et al. 2016): 11.69 M parameters and about 1.8 G MACs at 224 x 224."""
    def conv3x3(c_in, c_out, stride):
        return nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)

    return _resnet18(conv3x3, num_classes, in_channels, small_input)


def igc_resnet18(L, M=None, num_classes=1000, in_channels=3, small_input=False):
    """ResNet-18 with every 3x3 conv of the basic blocks replaced by an IGCV1 conv of the same width.

    ``L`` primary partitions everywhere (M = width / L per stage), or ``M``
    channels per partition everywhere (L = width / M) when L is None. A conv
    that changes the width (the first of a stage) is a 1x1 conv to the new
    width followed by the IGCV1 conv with the stride, so every 3x3 is IGC.
    """
    if (L is None) == (M is None):
        raise ValueError("give exactly one of L and M")

    def conv3x3(c_in, c_out, stride):
        l_, m_ = (L, c_out // L) if L is not None else (c_out // M, M)
        if l_ * m_ != c_out:
            raise ValueError(f"L={L}, M={M} do not split a width of {c_out} channels")
        igc = IGCV1Conv2d(c_out, l_, m_, 3, stride)
        if c_in == c_out:
            return igc
        return nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), igc)

    return _resnet18(conv3x3, num_classes, in_channels, small_input)
