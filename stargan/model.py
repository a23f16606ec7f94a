"""StarGAN generator and discriminator (Choi et al., CVPR 2018), after the official
implementation, for any channel count and for 48, 64 or 128 px images.

Two deliberate differences. InstanceNorm does not track running statistics. The official code
tracks them, so a generator put in eval mode normalizes with running averages it never trained
with, while one left in train mode depends on nothing but the image; without tracking, eval and
train mode give the same per-image output and `G.eval()` is always safe. And the generator can
up-sample by a resize (`upsample="nearest"` or `"bilinear"`) + 3x3 convolution instead of the
official transposed convolution, whose uneven kernel overlap paints a checkerboard on the faces
(Odena et al., "Deconvolution and Checkerboard Artifacts", Distill 2016). And it can paint
through an attention mask (`output="attention"`, GANimation, Pumarola et al., ECCV 2018): a
second head gives a per-pixel mask A in [0, 1] and the output is A * input + (1 - A) * colour,
so what the expression does not touch (eyes, hair, background) is the source's own pixels."""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """Conv-IN-ReLU-Conv-IN with an identity shortcut."""

    def __init__(self, dim: int):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, bias=False),
            nn.InstanceNorm2d(dim, affine=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, bias=False),
            nn.InstanceNorm2d(dim, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.main(x)


class Generator(nn.Module):
    """Image + target domain (one-hot, tiled over the image) -> translated image in [-1, 1]."""

    def __init__(self, *, image_size: int = 128, channels: int = 3, conv_dim: int = 64,
                 c_dim: int = 5, repeat_num: int = 6, upsample: str = "deconv",
                 output: str = "image"):
        super().__init__()
        if upsample not in ("deconv", "nearest", "bilinear"):
            raise ValueError(f"upsample must be 'deconv', 'nearest' or 'bilinear', not "
                             f"{upsample!r}")
        if output not in ("image", "attention"):
            raise ValueError(f"output must be 'image' or 'attention', not {output!r}")
        if image_size % 4:
            raise ValueError(f"image_size {image_size} must be divisible by 4 (two down-samplings)")
        layers = [nn.Conv2d(channels + c_dim, conv_dim, kernel_size=7, stride=1, padding=3,
                            bias=False),
                  nn.InstanceNorm2d(conv_dim, affine=True),
                  nn.ReLU(inplace=True)]
        dim = conv_dim
        for _ in range(2):  # down-sampling
            layers += [nn.Conv2d(dim, dim * 2, kernel_size=4, stride=2, padding=1, bias=False),
                       nn.InstanceNorm2d(dim * 2, affine=True),
                       nn.ReLU(inplace=True)]
            dim *= 2
        layers += [ResidualBlock(dim) for _ in range(repeat_num)]
        for _ in range(2):  # up-sampling
            layers += ([nn.ConvTranspose2d(dim, dim // 2, kernel_size=4, stride=2, padding=1,
                                           bias=False)] if upsample == "deconv" else
                       [nn.Upsample(scale_factor=2, mode=upsample),
                        nn.Conv2d(dim, dim // 2, kernel_size=3, stride=1, padding=1, bias=False)])
            layers += [nn.InstanceNorm2d(dim // 2, affine=True),
                       nn.ReLU(inplace=True)]
            dim //= 2
        colour = [nn.Conv2d(dim, channels, kernel_size=7, stride=1, padding=3, bias=False),
                  nn.Tanh()]
        if output == "image":  # the official layout: one sequence, colour head included
            self.main = nn.Sequential(*layers, *colour)
            self.colour = self.attention = None
        else:
            self.main = nn.Sequential(*layers)
            self.colour = nn.Sequential(*colour)
            self.attention = nn.Sequential(
                nn.Conv2d(dim, 1, kernel_size=7, stride=1, padding=3, bias=False), nn.Sigmoid())

    def forward(self, x: torch.Tensor, c: torch.Tensor, *, with_mask: bool = False):
        """The translation; with_mask=True: (translation, attention mask), the mask None for
        output="image"."""
        c = c.view(c.size(0), c.size(1), 1, 1).expand(-1, -1, x.size(2), x.size(3))
        h = self.main(torch.cat([x, c], dim=1))
        if self.attention is None:
            return (h, None) if with_mask else h
        mask = self.attention(h)
        out = mask * x + (1 - mask) * self.colour(h)
        return (out, mask) if with_mask else out


def discriminator_depth(image_size: int, max_depth: int = 6) -> int:
    """Stride-2 layers until the map would drop below 2 px or stop halving evenly: 128 -> 6
    (the official depth), 64 -> 5, 48 -> 4 (48/2^6 is not a whole number of pixels)."""
    depth, size = 0, image_size
    while depth < max_depth and size % 2 == 0 and size // 2 >= 2:
        size //= 2
        depth += 1
    return depth


class Discriminator(nn.Module):
    """PatchGAN real/fake map plus a domain classification head."""

    def __init__(self, *, image_size: int = 128, channels: int = 3, conv_dim: int = 64,
                 c_dim: int = 5, repeat_num: int | None = None):
        super().__init__()
        repeat_num = repeat_num or discriminator_depth(image_size)
        final = image_size / 2**repeat_num
        if final != int(final) or final < 1:
            raise ValueError(f"{repeat_num} stride-2 layers do not fit {image_size} px")
        layers = [nn.Conv2d(channels, conv_dim, kernel_size=4, stride=2, padding=1),
                  nn.LeakyReLU(0.01)]
        dim = conv_dim
        for _ in range(1, repeat_num):
            layers += [nn.Conv2d(dim, dim * 2, kernel_size=4, stride=2, padding=1),
                       nn.LeakyReLU(0.01)]
            dim *= 2
        self.main = nn.Sequential(*layers)
        self.conv_src = nn.Conv2d(dim, 1, kernel_size=3, stride=1, padding=1, bias=False)
        self.conv_cls = nn.Conv2d(dim, c_dim, kernel_size=int(final), bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.main(x)
        return self.conv_src(h), self.conv_cls(h).view(h.size(0), -1)
