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
so what the expression does not touch (eyes, hair, background) is the source's own pixels.

Options for small faces (48 px), each off by default so the official layout stays the default:
- `down=1`: one down-sampling instead of two (a 24x24 bottleneck at 48 px, not 12x12, whose
  4 px cells showed as blocks);
- `skips=True`: U-Net skip connections, the encoder's feature map added to the decoder's at the
  same resolution, so detail need not pass the bottleneck;
- `output="residual"`: G paints a change onto its input, out = tanh(atanh(x) + delta), the last
  layer zero-initialised, so an untrained G is the identity and training starts from the face;
- `output="warp"`: G moves the source's own pixels instead of painting: a smooth displacement
  field (the head's output averaged over 6x6-pixel cells and resized back bilinearly, at most
  `WARP_MAX` of the half-width, about 3.6 px at 48 px) resamples the input, the head
  zero-initialised so an untrained G is the identity. Expressions are mostly geometry (a raised
  upper lip, narrowed eyes, a wrinkled nose moves the cheeks), and a warp cannot paint the
  blocks and streaks a colour head paints to please its critic;
- `label="adain"`: the target domain sets the scale and shift of every residual block's
  InstanceNorm (conditional instance norm, as AdaIN / StarGAN v2) instead of only entering as
  tiled one-hot channels at the input, where InstanceNorm removes most of it.

The discriminator can be multitask (`src_dim` = the domain count, StarGAN v2): one real/fake
patch map per domain, each image judged by its own domain's map, so the disgust map sees G's
disgust as negatives.
Its depth sets the patch size: 3 stride-2 layers at 48 px give a 6x6 map of 22 px patches."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

WARP_MAX = 0.15  # output="warp": the largest displacement, a fraction of the half-width
WARP_CELL = 6  # output="warp": the displacement field is smooth over cells of this many pixels


class ConditionalNorm(nn.Module):
    """InstanceNorm whose scale and shift come from the domain (one-hot c): gamma, beta = W c."""

    def __init__(self, dim: int, c_dim: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(dim, affine=False)
        # default init, not zeros: with a zero-initialised residual output as well, the label
        # and the change would each get no gradient until the other moved, and a generator
        # tried that way stayed the identity (bench/results/synthetic/tries)
        self.style = nn.Linear(c_dim, 2 * dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.style(c).view(c.size(0), -1, 1, 1).chunk(2, dim=1)
        return (1 + gamma) * self.norm(x) + beta


class ResidualBlock(nn.Module):
    """Conv-IN-ReLU-Conv-IN with an identity shortcut; with c_dim > 0 each IN is conditional."""

    def __init__(self, dim: int, c_dim: int = 0):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, bias=False)
        self.conv2 = nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, bias=False)
        if c_dim:
            self.norm1, self.norm2 = ConditionalNorm(dim, c_dim), ConditionalNorm(dim, c_dim)
        else:
            self.norm1 = nn.InstanceNorm2d(dim, affine=True)
            self.norm2 = nn.InstanceNorm2d(dim, affine=True)
        self.conditional = bool(c_dim)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        args = (c,) if self.conditional else ()
        h = torch.relu(self.norm1(self.conv1(x), *args))
        return x + self.norm2(self.conv2(h), *args)


def _down(dim_in: int, dim_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(dim_in, dim_out, kernel_size=4, stride=2, padding=1,
                                   bias=False),
                         nn.InstanceNorm2d(dim_out, affine=True), nn.ReLU(inplace=True))


def _up(dim_in: int, dim_out: int, upsample: str) -> nn.Sequential:
    conv = ([nn.ConvTranspose2d(dim_in, dim_out, kernel_size=4, stride=2, padding=1, bias=False)]
            if upsample == "deconv" else
            [nn.Upsample(scale_factor=2, mode=upsample),
             nn.Conv2d(dim_in, dim_out, kernel_size=3, stride=1, padding=1, bias=False)])
    return nn.Sequential(*conv, nn.InstanceNorm2d(dim_out, affine=True), nn.ReLU(inplace=True))


class Generator(nn.Module):
    """Image + target domain (one-hot) -> translated image in [-1, 1]."""

    def __init__(self, *, image_size: int = 128, channels: int = 3, conv_dim: int = 64,
                 c_dim: int = 5, repeat_num: int = 6, upsample: str = "deconv",
                 output: str = "image", down: int = 2, skips: bool = False,
                 label: str = "concat"):
        super().__init__()
        if upsample not in ("deconv", "nearest", "bilinear"):
            raise ValueError(f"upsample must be 'deconv', 'nearest' or 'bilinear', not "
                             f"{upsample!r}")
        if output not in ("image", "attention", "residual", "warp"):
            raise ValueError(f"output must be 'image', 'attention', 'residual' or 'warp', not "
                             f"{output!r}")
        if label not in ("concat", "adain"):
            raise ValueError(f"label must be 'concat' or 'adain', not {label!r}")
        if down < 1 or image_size % 2**down:
            raise ValueError(f"image_size {image_size} must be divisible by 2^{down} "
                             f"({down} down-samplings)")
        self.output, self.label, self.skips = output, label, skips
        in_channels = channels + (c_dim if label == "concat" else 0)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, conv_dim, kernel_size=7, stride=1, padding=3, bias=False),
            nn.InstanceNorm2d(conv_dim, affine=True), nn.ReLU(inplace=True))
        dims = [conv_dim * 2**i for i in range(down + 1)]
        self.downs = nn.ModuleList(_down(a, b) for a, b in zip(dims, dims[1:], strict=False))
        self.blocks = nn.ModuleList(ResidualBlock(dims[-1], c_dim if label == "adain" else 0)
                                    for _ in range(repeat_num))
        self.ups = nn.ModuleList(_up(b, a, upsample)
                                 for a, b in zip(dims[-2::-1], dims[:0:-1], strict=True))
        self.colour = nn.Conv2d(conv_dim, 2 if output == "warp" else channels, kernel_size=7,
                                stride=1, padding=3, bias=False)
        if output in ("residual", "warp"):  # an untrained G changes nothing
            nn.init.zeros_(self.colour.weight)
        self.attention = (nn.Sequential(nn.Conv2d(conv_dim, 1, kernel_size=7, stride=1,
                                                  padding=3, bias=False), nn.Sigmoid())
                          if output == "attention" else None)

    def features(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The last feature map before the output head(s)."""
        if self.label == "concat":
            x = torch.cat([x, c.view(c.size(0), c.size(1), 1, 1).expand(-1, -1, x.size(2),
                                                                         x.size(3))], dim=1)
        h = self.stem(x)
        encoded = []
        for layer in self.downs:
            encoded.append(h)
            h = layer(h)
        for block in self.blocks:
            h = block(h, c) if self.label == "adain" else block(h)
        for layer in self.ups:
            h = layer(h)
            skip = encoded.pop()
            if self.skips:
                h = h + skip
        return h

    def forward(self, x: torch.Tensor, c: torch.Tensor, *, with_mask: bool = False):
        """The translation; with_mask=True: (translation, attention mask), the mask None unless
        output="attention"."""
        h = self.features(x, c)
        mask = None
        if self.output == "image":
            out = torch.tanh(self.colour(h))
        elif self.output == "residual":
            # identity at delta = 0; the clamp keeps atanh finite at the range's ends
            out = torch.tanh(torch.atanh(x.clamp(-0.999, 0.999)) + self.colour(h))
        elif self.output == "warp":
            out = warp(x, self.colour(h))
        else:
            mask = self.attention(h)
            out = mask * x + (1 - mask) * torch.tanh(self.colour(h))
        return (out, mask) if with_mask else out


def warp(x: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
    """x resampled along the smooth displacement field made of `raw` (N, 2, H, W): averaged
    over WARP_CELL-pixel cells, resized back bilinearly, bounded by WARP_MAX; raw = 0 gives x
    back exactly (bilinear sampling at the pixel centres)."""
    n, _, height, width = x.shape
    cells = (max(1, height // WARP_CELL), max(1, width // WARP_CELL))
    flow = F.interpolate(F.adaptive_avg_pool2d(raw, cells), size=(height, width),
                         mode="bilinear", align_corners=False)
    flow = WARP_MAX * torch.tanh(flow).permute(0, 2, 3, 1)
    theta = torch.eye(2, 3, dtype=x.dtype, device=x.device).expand(n, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid + flow, mode="bilinear", padding_mode="border",
                         align_corners=False)


def discriminator_depth(image_size: int, max_depth: int = 6) -> int:
    """Stride-2 layers until the map would drop below 2 px or stop halving evenly: 128 -> 6
    (the official depth), 64 -> 5, 48 -> 4 (48/2^6 is not a whole number of pixels)."""
    depth, size = 0, image_size
    while depth < max_depth and size % 2 == 0 and size // 2 >= 2:
        size //= 2
        depth += 1
    return depth


class Discriminator(nn.Module):
    """PatchGAN real/fake map(s), `src_dim` of them, plus a domain classifier of `c_dim`.

    `src_depth` (default: all `repeat_num` layers, official) reads the real/fake map after
    fewer stride-2 layers: a local critic whose every cell judges a patch (2 layers at 48 px:
    a 12x12 map, each cell seeing 18 px), while the classifier still sees the whole face.
    `blur` low-passes every stride-2 layer's input ([1, 2, 1] in both directions, as
    StyleGAN's down-sampling): a strided critic is blind to a pattern at its own sampling
    frequency, and a strong one teaches G to paint it (a checkerboard over the face).
    `spectral_norm` divides each weight the real/fake map reads (the first `src_depth` layers
    and its head) by its largest singular value (SNGAN): a critic held to a slope everywhere,
    at every frequency, instead of a penalty at sampled points; the classifier's own layers
    stay free."""

    def __init__(self, *, image_size: int = 128, channels: int = 3, conv_dim: int = 64,
                 c_dim: int = 5, repeat_num: int | None = None, src_dim: int = 1,
                 src_depth: int | None = None, blur: bool = False,
                 spectral_norm: bool = False):
        super().__init__()
        repeat_num = repeat_num or discriminator_depth(image_size)
        src_depth = src_depth or repeat_num
        final = image_size / 2**repeat_num
        if final != int(final) or final < 1:
            raise ValueError(f"{repeat_num} stride-2 layers do not fit {image_size} px")
        if not 1 <= src_depth <= repeat_num:
            raise ValueError(f"src_depth {src_depth} must be 1..{repeat_num}")
        layers, dim, src_channels = [], channels, 0
        for i in range(repeat_num):
            out = conv_dim * 2**i
            conv = nn.Conv2d(dim, out, kernel_size=4, stride=2, padding=1)
            if spectral_norm and i < src_depth:
                conv = nn.utils.parametrizations.spectral_norm(conv)
            layers += [nn.Sequential(Blur(dim), conv) if blur else conv, nn.LeakyReLU(0.01)]
            dim = out
            if i + 1 == src_depth:
                src_channels = dim
        self.main = nn.Sequential(*layers[:2 * src_depth])
        self.rest = nn.Sequential(*layers[2 * src_depth:])  # empty unless src_depth < repeat
        # src_dim real/fake maps: 1 (official) or one per domain (multitask, StarGAN v2)
        self.conv_src = nn.Conv2d(src_channels, src_dim, kernel_size=3, stride=1, padding=1,
                                  bias=False)
        if spectral_norm:
            self.conv_src = nn.utils.parametrizations.spectral_norm(self.conv_src)
        self.conv_cls = nn.Conv2d(dim, c_dim, kernel_size=int(final), bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.main(x)
        return self.conv_src(h), self.conv_cls(self.rest(h)).view(h.size(0), -1)


class Blur(nn.Module):
    """A fixed [1, 2, 1] x [1, 2, 1] / 16 low-pass per channel, same size out (reflected
    border)."""

    def __init__(self, channels: int):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (k[:, None] * k[None, :] / 16).expand(channels, 1, 3, 3)
                             .contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), self.kernel, groups=x.size(1))


def domain_map(out_src: torch.Tensor, domains: torch.Tensor | None) -> torch.Tensor:
    """The real/fake map of each image's own domain (N, 1, h, w) from a multitask
    discriminator's (N, K, h, w); a single-map output is returned as is (domains None)."""
    if domains is None or out_src.size(1) == 1:
        return out_src
    return out_src.gather(1, domains.view(-1, 1, 1, 1).expand(-1, 1, *out_src.shape[2:]))
