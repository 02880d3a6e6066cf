import cv2
import numpy as np
import pytest
import torch

from dope_stream.config import PACKAGE_ASSETS
from dope_stream.errors import DopeError
from trainer.meta import IMAGENET_MEAN, IMAGENET_STD, NORMALIZATIONS
from trainer.networks import (
    BELIEF_PRIOR, NETWORKS, NetworkOutputs, build_network, count_parameters, efficientnet_lite0, load_official_dope,
)

CAT_CLASSES = [281, 282, 285]  # tabby, tiger cat, Egyptian cat


def official_dope_layout() -> dict[str, tuple[int, ...]]:
    """Key -> shape of the official DOPE weights, written from the documented layout
    (../shared/docs/dope-reference.md), independently of the model code."""
    shapes: dict[str, tuple[int, ...]] = {}
    vgg = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256), (14, 256, 256),
           (16, 256, 256), (19, 256, 512), (21, 512, 512), (23, 512, 256), (25, 256, 128)]
    for index, cin, cout in vgg:
        shapes[f"vgg.{index}.weight"], shapes[f"vgg.{index}.bias"] = (cout, cin, 3, 3), (cout,)
    for stage in range(1, 7):
        for head, out in (("2", 9), ("1", 16)):
            if stage == 1:
                convs = [(0, 128, 128, 3), (2, 128, 128, 3), (4, 128, 128, 3), (6, 128, 512, 1), (8, 512, out, 1)]
            else:
                convs = [(0, 153, 128, 7)] + [(i, 128, 128, 7) for i in (2, 4, 6, 8)] + [(10, 128, 128, 1), (12, 128, out, 1)]
            for index, cin, cout, k in convs:
                shapes[f"m{stage}_{head}.{index}.weight"] = (cout, cin, k, k)
                shapes[f"m{stage}_{head}.{index}.bias"] = (cout,)
    return shapes


def random_state(prefix: str = "") -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {prefix + k: torch.randn(s, generator=generator) * 0.01 for k, s in official_dope_layout().items()}


# --- the contract, for every registered network (a new network is tested without editing these) ---


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_output_contract(name):
    spec = NETWORKS[name]
    model = build_network(name, pretrained=False).eval()
    x = torch.randn(2, 3, 64, 104)  # multiples of 8, not of 16
    with torch.no_grad():
        stages, logits = model(x), model(x, logits=True)
    assert len(stages) == len(logits) == model.num_stages == spec.default_stages
    rows, cols = 64 // spec.stride, 104 // spec.stride
    for (belief, affinity), (belief_logits, affinity_again) in zip(stages, logits):
        assert belief.shape == (2, 9, rows, cols) and affinity.shape == (2, 16, rows, cols)
        # `model(x)` is the output activation applied to `model(x, logits=True)`
        assert torch.allclose(belief, spec.activation(belief_logits), atol=1e-6)
        assert torch.equal(affinity, affinity_again)
    assert spec.normalization in NORMALIZATIONS


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_stages_option_and_unknown_names(name):
    assert build_network(name, stages=1).num_stages == 1
    with pytest.raises(DopeError, match=f"unknown network 'nope' \\(valid: {', '.join(NETWORKS)}\\)"):
        build_network("nope")


@pytest.mark.parametrize("name", sorted(n for n, spec in NETWORKS.items() if spec.offset_scale is not None))
def test_offset_networks_add_corner_offsets_and_keep_the_stages(name):
    spec = NETWORKS[name]
    model = build_network(name, pretrained=False).eval()
    x = torch.randn(1, 3, 64, 104)
    with torch.no_grad():
        outputs = spec.forward(model, x, logits=False)
        plain = model(x)
    assert outputs.offsets.shape == (1, spec.outputs["offsets"], 8, 13)
    assert all(torch.equal(a, b) for stage, other in zip(outputs.stages, plain) for a, b in zip(stage, other))


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_each_network_learns_with_its_loss(name):
    """A few steps of each network's own loss on one batch: the loss falls (slowly for MSE on sparse targets),
    and a prediction equal to the target scores lower than the trained one."""
    spec = NETWORKS[name]
    torch.manual_seed(0)
    model = build_network(name, stages=1, pretrained=False).train()
    x = torch.randn(2, 3, 64, 64)
    targets = {"belief": torch.zeros(2, 9, 8, 8), "affinity": torch.zeros(2, 16, 8, 8)}
    targets["belief"][:, :, 3, 4] = 1.0
    targets["affinity"][:, ::2, 3, 4] = 1.0
    if spec.offset_scale is not None:
        targets["offsets"], targets["offset_weight"] = torch.full((2, 16, 8, 8), 0.5), torch.ones(2, 1, 8, 8)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = spec.loss(spec.forward(model, x), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    with torch.no_grad():
        trained = spec.loss(spec.forward(model, x), targets)
    perfect = NetworkOutputs([(_perfect_logits(spec, targets["belief"]), targets["affinity"])], targets.get("offsets"))
    assert trained > spec.loss(perfect, targets)


def _perfect_logits(spec, belief: torch.Tensor) -> torch.Tensor:
    """Logits whose activation is `belief` (found by bisection, whatever the activation)."""
    low, high = torch.full_like(belief, -30.0), torch.full_like(belief, 30.0)
    for _ in range(60):
        middle = (low + high) / 2
        above = spec.activation(middle) > belief
        high, low = torch.where(above, middle, high), torch.where(above, low, middle)
    return (low + high) / 2


def test_dope_parameter_count_matches_the_reference():
    assert NETWORKS["dope"].default_stages == 6
    assert count_parameters(build_network("dope")) == 50_267_350 == sum(int(np.prod(s)) for s in official_dope_layout().values())


@pytest.mark.parametrize("prefix", ["", "module."])
def test_official_state_dict_loads_strictly(prefix):
    state = random_state(prefix)
    model = load_official_dope(state)
    assert torch.equal(model.m4_2[0].weight, state[prefix + "m4_2.0.weight"])
    assert torch.equal(model.vgg[25].bias, state[prefix + "vgg.25.bias"])
    # Stage 2 reads cat(belief, affinity, features): check the channel order on the real weights.
    features = torch.randn(1, 128, 4, 4)
    belief, affinity = model.m1_2(features), model.m1_1(features)
    with torch.no_grad():
        expected = model.m2_2(torch.cat([belief, affinity, features], 1))
        model.vgg = torch.nn.Identity()
        assert torch.allclose(model(features)[1][0], expected)


def test_official_state_dict_from_file(tmp_path):
    path = tmp_path / "cracker_60.pth"
    torch.save(random_state("module."), path)
    assert load_official_dope(path).m1_1[8].weight.shape == (16, 512, 1, 1)


def test_extra_or_missing_keys_are_clear_errors():
    state = random_state("module.")
    state["module.m7_2.0.weight"] = torch.zeros(1)
    with pytest.raises(DopeError, match=r"1 unexpected keys \(e.g. m7_2.0.weight\)"):
        load_official_dope(state)
    state = random_state()
    del state["m3_1.12.bias"]
    with pytest.raises(DopeError, match=r"1 missing keys \(e.g. m3_1.12.bias\)"):
        load_official_dope(state)
    state = random_state()
    state["m1_2.8.weight"] = torch.zeros(8, 512, 1, 1)
    with pytest.raises(DopeError, match="wrong tensor shapes: m1_2.8.weight"):
        load_official_dope(state)


def test_pretrained_encoder_classifies_the_cat():
    image = cv2.cvtColor(cv2.imread(str(PACKAGE_ASSETS / "backgrounds" / "skimage_chelsea.jpg")), cv2.COLOR_BGR2RGB)
    image = cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    x = torch.from_numpy((image - IMAGENET_MEAN) / np.array(IMAGENET_STD, np.float32)).permute(2, 0, 1)[None]
    classifier = efficientnet_lite0(pretrained=True).eval()
    with torch.no_grad():
        probabilities = classifier(x.float()).softmax(-1)[0]
    assert probabilities.argmax().item() in CAT_CLASSES
    assert probabilities[CAT_CLASSES].sum() > 0.8
    # The light network's encoder is that pretrained network.
    light = build_network("light", pretrained=True)
    assert torch.equal(light.stem[0].weight, classifier._conv_stem.weight)
    assert torch.equal(light.levels[2][-1]._project_conv.weight, classifier._blocks[15]._project_conv.weight)


def test_light_starts_at_the_belief_prior():
    model = build_network("light", pretrained=True).eval()
    with torch.no_grad():
        belief = model(torch.randn(1, 3, 64, 64))[0][0]
    assert 5e6 > count_parameters(model) > 2e6  # a few million
    assert abs(belief.mean().item() - BELIEF_PRIOR) < 0.01


def test_missing_vgg_weights_file(tmp_path):
    with pytest.raises(DopeError, match="does not exist"):
        build_network("dope", pretrained=True, vgg_weights=tmp_path / "vgg19.pth")


def _unfolded_light_forward(model, x: torch.Tensor) -> torch.Tensor:
    """The light network's last belief map computed through the original (unfolded) early layers."""
    from torch.nn import functional as F

    from trainer.networks import LITE0_EARLY_BLOCKS

    h = model.levels[0][:LITE0_EARLY_BLOCKS](model.stem(x))
    pyramid = []
    for index, level in enumerate(model.levels):
        h = level[LITE0_EARLY_BLOCKS:](h) if index == 0 else level(h)
        pyramid.append(h)
    size = pyramid[0].shape[-2:]
    up = [pyramid[0]] + [F.interpolate(p, size=size, mode="bilinear", align_corners=False) for p in pyramid[1:]]
    features = stage_input = model.fuse(torch.cat(up, dim=1))
    for stage in model.stages:
        belief, affinity = stage(stage_input)
        stage_input = torch.cat([features, torch.sigmoid(belief), affinity], dim=1)
    return belief


def test_folded_early_layers_equal_the_original_and_follow_weight_changes():
    torch.manual_seed(0)
    model = build_network("light", pretrained=True).eval()
    x = torch.randn(1, 3, 72, 96)  # odd map sizes exercise the asymmetric stride-2 padding
    with torch.no_grad():
        torch.testing.assert_close(model(x, logits=True)[-1][0], _unfolded_light_forward(model, x), atol=2e-4, rtol=1e-4)
        # An in-place change of a frozen weight (as load_state_dict makes) rebuilds the folded copy.
        model.stem[1].running_var.mul_(4.0)
        torch.testing.assert_close(model(x, logits=True)[-1][0], _unfolded_light_forward(model, x), atol=2e-4, rtol=1e-4)
        # So does moving the weights (as .to(device) does): a stale copy would fail on float64 input.
        model.double()
        x = x.double()
        torch.testing.assert_close(model(x, logits=True)[-1][0], _unfolded_light_forward(model, x), atol=1e-6, rtol=1e-6)
