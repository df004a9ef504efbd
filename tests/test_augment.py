"""Batch augmentation: shape, dtype, device, determinism, exactness of the discrete transforms."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from core.data import AUGMENT_PRESETS, AugmentSpec, augment_batch, augment_spec, describe_augment
from core.errors import ConfigError

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def batch(b: int = 16, c: int = 3, h: int = 28, w: int = 28, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, c, h, w, generator=torch.Generator().manual_seed(seed))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_presets_and_descriptions():
    assert AUGMENT_PRESETS == ("none", "light", "flipshift", "turns", "medvcnn", "snet")
    for name in AUGMENT_PRESETS:
        assert describe_augment(name) and "\n" not in describe_augment(name)
    assert "15 degrees" in describe_augment("snet") and "zoom 20 %" in describe_augment("snet")
    with pytest.raises(ConfigError, match="unknown augmentation 'heavy'; choose one of none, light, flipshift, turns, medvcnn, snet"):
        augment_batch(batch(), "heavy")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("preset", AUGMENT_PRESETS)
@pytest.mark.parametrize("shape", [(16, 3, 28, 28), (5, 1, 20, 30)])
def test_shape_dtype_device_and_determinism(preset, device, shape):
    x = batch(*shape).to(device)
    a = augment_batch(x, preset, gen(1))
    b = augment_batch(x, preset, gen(1))
    assert a.shape == x.shape and a.dtype == x.dtype and a.device == x.device
    assert torch.equal(a, b)
    if preset == "none":
        assert a is x
    else:
        assert not torch.equal(a, augment_batch(x, preset, gen(2)))
        assert not torch.equal(a, x)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_other_float_dtypes_are_kept(dtype):
    x = batch(4).to(dtype)
    assert augment_batch(x, "snet", gen(0)).dtype == dtype


def test_global_generator_is_used_when_none_given():
    x = batch(8)
    torch.manual_seed(5)
    a = augment_batch(x, "light")
    torch.manual_seed(5)
    assert torch.equal(a, augment_batch(x, "light"))


def test_integer_input_is_refused():
    with pytest.raises(TypeError, match="float"):
        augment_batch(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), "light")


def dihedral(img: torch.Tensor) -> list[torch.Tensor]:
    """The eight flips/rotations of one (C, H, W) image."""
    out = []
    for flipped in (img, img.flip(-1)):
        out += [flipped.rot90(k, (-2, -1)) for k in range(4)]
    return out


def test_medvcnn_without_shift_is_an_exact_pixel_permutation():
    spec = replace(augment_spec("medvcnn"), shift=(0.0, 0.0), eighth_turn=0.0)
    assert not spec.has_affine
    x = batch(256, 3, 12, 12)
    out = augment_batch(x, spec, gen(0))
    seen = set()
    for i in range(x.shape[0]):
        matches = [k for k, t in enumerate(dihedral(x[i])) if torch.equal(out[i], t)]
        assert len(matches) == 1, f"sample {i} is not an exact flip/rotation of its input"
        seen.add(matches[0])
    assert seen == set(range(8))  # every one of the eight turns up in 256 draws


def test_affine_path_agrees_with_the_discrete_path_on_orientation():
    # A vanishing rotation forces the resampling path; flips and quarter turns must land
    # on the same pixels as the exact path does.
    x = batch(64, 1, 16, 16)
    spec = AugmentSpec(hflip=0.5, quarter_turns=True, rotate=1e-9)
    out = augment_batch(x, spec, gen(3))
    for i in range(x.shape[0]):
        err = min((out[i] - t).abs().max().item() for t in dihedral(x[i]))
        assert err < 1e-4


def test_fill_is_the_image_minimum_and_values_stay_in_range():
    x = torch.full((4, 3, 28, 28), 5.0)
    for preset in ("light", "flipshift", "medvcnn", "snet"):
        assert torch.allclose(augment_batch(x, preset, gen(0)), x, atol=1e-5)  # zero fill would show
    x = batch(32)
    out = augment_batch(x, "snet", gen(0))
    lo, hi = x.amin(dim=(2, 3)), x.amax(dim=(2, 3))
    assert (out.amin(dim=(2, 3)) >= lo - 1e-5).all() and (out.amax(dim=(2, 3)) <= hi + 1e-5).all()


def test_shift_moves_content_by_the_drawn_amount():
    # A single bright pixel in a dark image, shifted by at most 25 % of 40 px = 10 px.
    x = torch.zeros(64, 1, 40, 40)
    x[:, :, 20, 20] = 1.0
    out = augment_batch(x, AugmentSpec(shift=(0.25, 0.0)), gen(0))
    cols = (out[:, 0] * torch.arange(40.0)).sum(dim=(1, 2)) / out[:, 0].sum(dim=(1, 2))
    rows = (out[:, 0] * torch.arange(40.0).view(40, 1)).sum(dim=(1, 2)) / out[:, 0].sum(dim=(1, 2))
    assert ((cols - 20).abs() <= 10.01).all() and (cols - 20).abs().max() > 5
    assert torch.allclose(rows, torch.full_like(rows, 20.0), atol=1e-3)


def test_pixel_shift_is_an_exact_move_by_whole_pixels():
    # A random image inside a frame of its own minimum: every shifted copy is the same pixels,
    # moved by whole pixels (no blur), by at most 2 at 28 px, each of the 25 moves drawn.
    x = torch.full((400, 1, 28, 28), -3.0)
    x[:, :, 4:24, 4:24] = torch.rand(20, 20, generator=gen(3)) + 1.0
    out = augment_batch(x, AugmentSpec(pixel_shift=0.07), gen(0))
    inner = x[0, 0, 4:24, 4:24]
    moves = set()
    for i in range(out.shape[0]):
        (r, c) = torch.nonzero(out[i, 0] > -3.0).min(dim=0).values.tolist()
        assert torch.equal(out[i, 0, r:r + 20, c:c + 20], inner)
        assert (out[i, 0] > -3.0).sum() == 400  # nothing else is bright: the fill is the minimum
        moves.add((r - 4, c - 4))
    assert moves == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}


def test_pixel_shift_scales_with_the_image_and_keeps_channels_last():
    x = torch.zeros(200, 3, 64, 64)
    x[:, :, 32, 32] = 1.0
    x = x.contiguous(memory_format=torch.channels_last)
    out = augment_batch(x, "flipshift", gen(1))
    assert out.is_contiguous(memory_format=torch.channels_last)
    where = torch.nonzero(out[:, 0] == 1.0)  # (sample, row, col): one pixel each, still exact
    assert where.shape == (200, 3)
    assert (where[:, 1] - 32).abs().max() == 4  # round(0.07 * 64)
    assert ((where[:, 2] - 32).abs() <= 5).all()  # a flip moves column 32 to 31


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU to compare devices")
def test_same_seed_same_result_on_cpu_and_gpu():
    x = batch(32)
    for preset in AUGMENT_PRESETS:
        cpu = augment_batch(x, preset, gen(9))
        gpu = augment_batch(x.cuda(), preset, gen(9)).cpu()
        assert torch.allclose(cpu, gpu, atol=1e-4)
