"""An independent PyTorch implementation of vHeat (classification), written for side-by-side
checks against the Rust crate: the same computation and the same state-dict key names as the
reference (MzeroMiko/vHeat, classification/models/vHeat.py), so the reference's checkpoints and
the crate's exports load into it with strict=True.

    python scripts/vheat_torch.py            # checks itself against tests/fixtures/micro_*.pth

Not used by the crate or CI; needs torch and safetensors.
"""
import json
import math
import pathlib

import torch
import torch.nn as nn
import torch.nn.functional as F


def cos_map(n: int) -> torch.Tensor:
    """Orthonormal DCT-II matrix D[k, x] = sqrt(2/n) cos(pi k (x + 0.5) / n), row 0 / sqrt(2)."""
    k = torch.arange(n, dtype=torch.float32).view(-1, 1)
    x = (torch.arange(n, dtype=torch.float32).view(1, -1) + 0.5) / n
    d = torch.cos(k * x * math.pi) * math.sqrt(2.0 / n)
    d[0] = d[0] / math.sqrt(2.0)
    return d


def decay_map(h: int, w: int) -> torch.Tensor:
    """exp(-(wn^2 + wm^2)), wn = pi n / h, wm = pi m / w."""
    wn = torch.linspace(0, math.pi, h + 1)[:h].view(-1, 1)
    wm = torch.linspace(0, math.pi, w + 1)[:w].view(1, -1)
    return torch.exp(-(wn**2 + wm**2))


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map. The reference builds the blocks', the
    downsamplings' and the head's norms with LayerNorm2d's default eps 1e-5; only the stem's
    norms use 1e-6."""

    def forward(self, x):
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


class Stem(nn.Module):
    def __init__(self, in_chans, dim):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, dim // 2, 3, 2, 1)
        # Sequential(to_channels_last, LayerNorm, to_channels_first) in the reference: key norm1.1
        self.norm1 = nn.Sequential(nn.Identity(), nn.LayerNorm(dim // 2, eps=1e-6))
        self.conv2 = nn.Conv2d(dim // 2, dim, 3, 2, 1)
        self.norm2 = nn.Sequential(nn.Identity(), nn.LayerNorm(dim, eps=1e-6))

    def forward(self, x):
        x = self.conv1(x)
        x = self.norm1(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = F.gelu(x)
        x = self.conv2(x)
        return self.norm2(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Heat2D(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.linear = nn.Linear(dim, 2 * dim)
        self.out_norm = nn.LayerNorm(dim)
        self.out_linear = nn.Linear(dim, dim)
        self.to_k = nn.Sequential(nn.Linear(dim, dim), nn.ReLU())

    def forward(self, x, freq):
        b, c, h, w = x.shape
        x = self.linear(self.dwconv(x).permute(0, 2, 3, 1))
        x, z = x.chunk(2, dim=-1)  # B H W C
        dn, dm = cos_map(h).to(x), cos_map(w).to(x)
        x = torch.einsum("nh,bhwc->bnwc", dn, x)
        x = torch.einsum("mw,bnwc->bnmc", dm, x)
        x = x * torch.pow(decay_map(h, w).to(x)[:, :, None], self.to_k(freq))
        x = torch.einsum("nh,bnmc->bhmc", dn, x)
        x = torch.einsum("mw,bhmc->bhwc", dm, x)
        x = self.out_norm(x) * F.silu(z)
        return self.out_linear(x).permute(0, 3, 1, 2)


class DropPath(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class HeatBlock(nn.Module):
    def __init__(self, dim, drop_path, post_norm, layer_scale, mlp_ratio=4.0):
        super().__init__()
        self.norm1 = LayerNorm2d(dim)
        self.op = Heat2D(dim)
        self.norm2 = LayerNorm2d(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)
        self.post_norm = post_norm
        self.layer_scale = layer_scale is not None
        if self.layer_scale:
            self.gamma1 = nn.Parameter(layer_scale * torch.ones(dim))
            self.gamma2 = nn.Parameter(layer_scale * torch.ones(dim))

    def forward(self, x, freq):
        g1 = self.gamma1[:, None, None] if self.layer_scale else 1.0
        g2 = self.gamma2[:, None, None] if self.layer_scale else 1.0
        if self.post_norm:
            x = x + self.drop_path(g1 * self.norm1(self.op(x, freq)))
            return x + self.drop_path(g2 * self.norm2(self.mlp(x)))
        x = x + self.drop_path(g1 * self.op(self.norm1(x), freq))
        return x + self.drop_path(g2 * self.mlp(self.norm2(x)))


class Layer(nn.Sequential):
    """The reference's stage: blocks 0..depth-1, then the downsampling at index depth."""

    def forward(self, x, freq):
        for blk in self[:-1]:
            x = blk(x, freq)
        return self[-1](x)


class VHeat(nn.Module):
    """vHeat with the reference's constructor arguments and state-dict keys."""

    def __init__(self, depths, dims, num_classes=1000, img_size=224, post_norm=True, layer_scale=None,
                 drop_path_rate=0.1, in_chans=3, mlp_ratio=4.0, patch_size=4, **_):
        super().__init__()
        self.patch_embed = Stem(in_chans, dims[0])
        res0 = img_size / patch_size
        res = [int(res0), int(res0 // 2), int(res0 // 4), int(res0 // 8)]
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(depths))]
        self.freq_embed = nn.ParameterList(
            [nn.Parameter(nn.init.trunc_normal_(torch.zeros(res[i], res[i], dims[i]), std=0.02)) for i in range(len(depths))]
        )
        self.layers = nn.ModuleList()
        for i, depth in enumerate(depths):
            off = sum(depths[:i])
            blocks = [HeatBlock(dims[i], dpr[off + j], post_norm, layer_scale, mlp_ratio) for j in range(depth)]
            down = (
                nn.Sequential(nn.Conv2d(dims[i], dims[i + 1], 3, 2, 1, bias=False), LayerNorm2d(dims[i + 1]))
                if i < len(depths) - 1
                else nn.Identity()
            )
            self.layers.append(Layer(*blocks, down))
        self.classifier = nn.Sequential(LayerNorm2d(dims[-1]), nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(dims[-1], num_classes))
        self.apply(self._init)

    @staticmethod
    def _init(m):
        # The reference: trunc_normal(0.02) for Linear weights, zero biases, LayerNorm 1/0.
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.patch_embed(x)
        for layer, freq in zip(self.layers, self.freq_embed):
            h, w = x.shape[2:]
            if freq.shape[:2] != (h, w):
                freq = F.interpolate(freq.permute(2, 0, 1)[None], size=(h, w), mode="bicubic", align_corners=False)[0].permute(1, 2, 0)
            x = layer(x, freq)
        return self.classifier(x)


def _self_check():
    from safetensors.torch import load_file

    fixtures = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures"
    for name in ["micro_tiny", "micro_base"]:
        meta = json.loads((fixtures / f"{name}.json").read_text())
        model = VHeat(**meta["config"]).eval()
        state = torch.load(fixtures / f"{name}.pth", map_location="cpu")["model"]
        model.load_state_dict(state, strict=True)
        io = load_file(fixtures / f"{name}.io.safetensors")
        inputs = [k for k in io if k.endswith(".input")]
        for key in inputs:
            want = io.get(key[: -len("input")] + "logits")
            if want is None:
                continue
            with torch.no_grad():
                got = model(io[key])
            print(f"{name} {key}: max |logits - fixture| = {(got - want).abs().max().item():.2e}")


if __name__ == "__main__":
    _self_check()
