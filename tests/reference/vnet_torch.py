"""The V-Net of the semi-supervised benchmark codes (UA-MT `networks/vnet.py`), written with
torch.nn built-ins: the reference our C V-Net is checked against. 2D or 3D."""
import torch
import torch.nn as nn


def _ops(dims):
    return (nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d, nn.InstanceNorm3d, nn.Dropout3d) if dims == 3 \
        else (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.InstanceNorm2d, nn.Dropout2d)


def _norm(dims, normalization, ch):
    _, _, bn, inorm, _ = _ops(dims)
    if normalization == "batchnorm":
        return [bn(ch)]
    if normalization == "groupnorm":
        return [nn.GroupNorm(num_groups=16, num_channels=ch)]
    if normalization == "instancenorm":
        return [inorm(ch)]
    assert normalization == "none"
    return []


class ConvBlock(nn.Module):
    def __init__(self, n_stages, cin, cout, normalization, dims):
        super().__init__()
        conv = _ops(dims)[0]
        ops = []
        for i in range(n_stages):
            ops.append(conv(cin if i == 0 else cout, cout, 3, padding=1))
            ops += _norm(dims, normalization, cout)
            ops.append(nn.ReLU(inplace=True))
        self.conv = nn.Sequential(*ops)

    def forward(self, x):
        return self.conv(x)


class ResampleBlock(nn.Module):
    def __init__(self, cin, cout, normalization, dims, up):
        super().__init__()
        conv = _ops(dims)[1 if up else 0]
        ops = [conv(cin, cout, 2, padding=0, stride=2)]
        ops += _norm(dims, normalization, cout)
        ops.append(nn.ReLU(inplace=True))
        self.conv = nn.Sequential(*ops)

    def forward(self, x):
        return self.conv(x)


class VNet(nn.Module):
    def __init__(self, n_channels=1, n_classes=2, n_filters=16, normalization="batchnorm",
                 has_dropout=False, dims=3):
        super().__init__()
        F, nz = n_filters, normalization
        self.has_dropout = has_dropout
        self.block_one = ConvBlock(1, n_channels, F, nz, dims)
        self.block_one_dw = ResampleBlock(F, 2 * F, nz, dims, False)
        self.block_two = ConvBlock(2, 2 * F, 2 * F, nz, dims)
        self.block_two_dw = ResampleBlock(2 * F, 4 * F, nz, dims, False)
        self.block_three = ConvBlock(3, 4 * F, 4 * F, nz, dims)
        self.block_three_dw = ResampleBlock(4 * F, 8 * F, nz, dims, False)
        self.block_four = ConvBlock(3, 8 * F, 8 * F, nz, dims)
        self.block_four_dw = ResampleBlock(8 * F, 16 * F, nz, dims, False)
        self.block_five = ConvBlock(3, 16 * F, 16 * F, nz, dims)
        self.block_five_up = ResampleBlock(16 * F, 8 * F, nz, dims, True)
        self.block_six = ConvBlock(3, 8 * F, 8 * F, nz, dims)
        self.block_six_up = ResampleBlock(8 * F, 4 * F, nz, dims, True)
        self.block_seven = ConvBlock(3, 4 * F, 4 * F, nz, dims)
        self.block_seven_up = ResampleBlock(4 * F, 2 * F, nz, dims, True)
        self.block_eight = ConvBlock(2, 2 * F, 2 * F, nz, dims)
        self.block_eight_up = ResampleBlock(2 * F, F, nz, dims, True)
        self.block_nine = ConvBlock(1, F, F, nz, dims)
        self.out_conv = _ops(dims)[0](F, n_classes, 1, padding=0)
        self.dropout = _ops(dims)[4](p=0.5, inplace=False)

    def forward(self, x):
        x1 = self.block_one(x)
        x2 = self.block_two(self.block_one_dw(x1))
        x3 = self.block_three(self.block_two_dw(x2))
        x4 = self.block_four(self.block_three_dw(x3))
        x5 = self.block_five(self.block_four_dw(x4))
        if self.has_dropout:
            x5 = self.dropout(x5)
        x6 = self.block_six(self.block_five_up(x5) + x4)
        x7 = self.block_seven(self.block_six_up(x6) + x3)
        x8 = self.block_eight(self.block_seven_up(x7) + x2)
        x9 = self.block_nine(self.block_eight_up(x8) + x1)
        if self.has_dropout:
            x9 = self.dropout(x9)
        return self.out_conv(x9)
