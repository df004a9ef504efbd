"""Batch augmentation on the device, inside the training step.

Every transform works on the whole float batch at once, never image by image. A preset of
flips and quarter turns alone is applied as exact pixel permutations chosen per sample with
``torch.where``. A preset with any rotation, zoom, shift or shear builds one affine matrix
per sample (flips and turns folded in) and resamples the batch once with ``grid_sample``
(bilinear).

Random numbers are drawn on the CPU from the caller's generator and then moved to the
batch's device, so a seed gives the same augmentation on CPU and GPU.

Pixels that move in from outside the image take each image's own minimum per channel (its
darkest value, normally the background) rather than 0: after normalisation 0 is mid-grey,
which would draw bright corners on an X-ray.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from core.errors import ConfigError


@dataclass(frozen=True)
class AugmentSpec:
    """What one preset does; every range is symmetric around "no change".

    Attributes:
        hflip: probability of a left-right flip.
        vflip: probability of an up-down flip.
        quarter_turns: rotate by 0, 90, 180 or 270 degrees, uniformly (exact; on non-square
            images only 0 or 180).
        eighth_turn: probability of a further 45 degree rotation (with ``quarter_turns``,
            0.5 makes every multiple of 45 degrees equally likely).
        rotate: largest rotation in degrees, drawn uniformly in [-rotate, rotate].
        zoom: largest relative zoom; the factor is uniform in [1 - zoom, 1 + zoom], above 1
            enlarges the content.
        shift: largest shift as a fraction of (width, height).
        shear: largest horizontal shear factor (0.1 moves the top row 10 % of the height
            sideways relative to the middle).
        pixel_shift: largest shift as a fraction of the size, applied as whole pixels (an
            exact move with no resampling blur: 0.07 is up to 2 pixels at 28 px, 16 at 224).
        description: one line for the person choosing it.
    """

    hflip: float = 0.0
    vflip: float = 0.0
    quarter_turns: bool = False
    eighth_turn: float = 0.0
    rotate: float = 0.0
    zoom: float = 0.0
    shift: tuple[float, float] = (0.0, 0.0)
    shear: float = 0.0
    pixel_shift: float = 0.0
    description: str = ""

    @property
    def has_affine(self) -> bool:
        """Whether the preset needs resampling (anything beyond flips and quarter turns)."""
        return bool(self.eighth_turn or self.rotate or self.zoom or any(self.shift) or self.shear)

    @property
    def is_identity(self) -> bool:
        """Whether the preset changes nothing."""
        return not (self.hflip or self.vflip or self.quarter_turns or self.pixel_shift or self.has_affine)


_PRESETS = {
    "none": AugmentSpec(description="None: images are used as they are"),
    "light": AugmentSpec(hflip=0.5, rotate=10.0, description="Light: random left-right flip and rotation up to 10 degrees"),
    "flipshift": AugmentSpec(
        hflip=0.5, pixel_shift=0.07,
        description="Flip and shift: random left-right flip and a shift of up to 7 % (2 pixels at 28 px), "
                    "exact, with no blur",
    ),
    # For images with no up, down, left or right (cells, tissue, dermoscopy): every turn and
    # mirror image of the square, all exact pixel moves, plus the whole-pixel shift.
    "turns": AugmentSpec(
        hflip=0.5, vflip=0.5, quarter_turns=True, pixel_shift=0.07,
        description="Turns, flips and shift: any quarter turn, mirror images and a shift of up to 7 %, exact, "
                    "for images with no up or down (cells, tissue)",
    ),
    # Seed 000, Table 1: flips, 45/90 degree rotations, translation "(16.2, 5.5)"; our reading
    # of the latter is a shift of up to 16.2 % across and 5.5 % down.
    "medvcnn": AugmentSpec(
        hflip=0.5,
        vflip=0.5,
        quarter_turns=True,
        eighth_turn=0.5,
        shift=(0.162, 0.055),
        description="MedvCNN paper: random flips, rotation by a multiple of 45 degrees, shift up to 16 % across and 5.5 % down",
    ),
    # Seed 002, section 4.3 (Keras ImageDataGenerator settings); shear 10 % read as factor 0.1.
    "snet": AugmentSpec(
        hflip=0.5,
        rotate=15.0,
        zoom=0.2,
        shift=(0.1, 0.1),
        shear=0.1,
        description="S-Net paper: rotation up to 15 degrees, zoom 20 %, left-right flip, shift 10 %, shear 10 %",
    ),
}

AUGMENT_PRESETS = tuple(_PRESETS)


# Columns of the per-sample random draw; fixed so a seed means the same thing for every preset.
_HFLIP, _VFLIP, _QUARTER, _EIGHTH, _ROT, _ZOOM, _SHIFT_X, _SHIFT_Y, _SHEAR = range(9)
_DRAWS = 9


def augment_spec(preset: str | AugmentSpec) -> AugmentSpec:
    """The :class:`AugmentSpec` of a preset name (an AugmentSpec is returned as is)."""
    if isinstance(preset, AugmentSpec):
        return preset
    spec = _PRESETS.get(str(preset).strip().lower()) if isinstance(preset, str) else None
    if spec is None:
        raise ConfigError(f"unknown augmentation {preset!r}; choose one of {', '.join(AUGMENT_PRESETS)}")
    return spec


def describe_augment(preset: str | AugmentSpec) -> str:
    """One line saying what a preset does."""
    return augment_spec(preset).description


def without_mirroring(preset: str | AugmentSpec) -> AugmentSpec:
    """A preset with every transform that moves an image's left side to the right removed.

    For data whose labels name a side (``kidney-left``; see :mod:`core.data.laterality`): a
    left-right flip keeps the label and swaps the side, and so do quarter turns (180
    degrees puts the left on the right) and 45-degree turns. Up-down flips, small
    rotations, zoom, shifts and shear keep each side where it is and stay.

    Args:
        preset: a name from :data:`AUGMENT_PRESETS` or an :class:`AugmentSpec`.

    Returns:
        The spec without ``hflip``, ``quarter_turns`` and ``eighth_turn`` (the same spec when
        it had none of them). The random draws per sample are unchanged, so the remaining
        transforms are the ones the full preset would have drawn.
    """
    import dataclasses

    spec = augment_spec(preset)
    if not (spec.hflip or spec.quarter_turns or spec.eighth_turn):
        return spec
    return dataclasses.replace(spec, hflip=0.0, quarter_turns=False, eighth_turn=0.0,
                               description=f"{spec.description} (no left-right flips or turns: left and right "
                                           "matter in these images)")


def augment_batch(x: torch.Tensor, preset: str | AugmentSpec, generator: torch.Generator | None = None) -> torch.Tensor:
    """Augment a batch, each sample with its own random transform.

    Args:
        x: float batch (B, C, H, W), already normalised, on any device.
        preset: a name from :data:`AUGMENT_PRESETS` or an :class:`AugmentSpec`.
        generator: a CPU ``torch.Generator``; the same seed gives the same output on every
            device. None uses torch's global generator.

    Returns:
        A tensor of the same shape, dtype and device ("none" returns ``x`` itself).
    """
    spec = augment_spec(preset)
    if not torch.is_floating_point(x) or x.ndim != 4:
        raise TypeError(f"augment_batch needs a float (B, C, H, W) batch, got {x.dtype} {tuple(x.shape)}")
    if spec.is_identity or x.shape[0] == 0:
        return x
    b, _, h, w = x.shape
    # Drawn on the CPU (where the generator lives) so every device sees the same numbers.
    u = torch.rand((b, _DRAWS), generator=generator, device=generator.device if generator is not None else "cpu")
    u = u.cpu().double().numpy()
    if spec.has_affine:
        # Flips and quarter turns fold into the same matrix: one resampling pass in all.
        out = _affine(x, _theta(spec, u, h, w))
        return _shift_pixels(out, spec.pixel_shift, u) if spec.pixel_shift else out
    return _discrete(x, spec, u)


def _discrete(x: torch.Tensor, spec: AugmentSpec, u: np.ndarray) -> torch.Tensor:
    b, _, h, w = x.shape
    k = _quarter_turns(u, h, w) if spec.quarter_turns else np.zeros(b, dtype=np.int64)
    choices = np.stack([u[:, _HFLIP] < spec.hflip, u[:, _VFLIP] < spec.vflip, k == 1, k == 2, k == 3], axis=1)
    masks = torch.from_numpy(choices).to(x.device).view(b, 5, 1, 1, 1)  # one host-to-device copy
    out = x
    if spec.hflip:
        out = torch.where(masks[:, 0], out.flip(-1), out)
    if spec.vflip:
        out = torch.where(masks[:, 1], out.flip(-2), out)
    if spec.quarter_turns:
        turned = torch.where(masks[:, 3], out.flip((-2, -1)), out)
        if h == w:
            turned = torch.where(masks[:, 2], out.rot90(1, (-2, -1)), turned)
            turned = torch.where(masks[:, 4], out.rot90(3, (-2, -1)), turned)
        out = turned
    if spec.pixel_shift:
        out = _shift_pixels(out, spec.pixel_shift, u)
    return out


def _shift_pixels(x: torch.Tensor, fraction: float, u: np.ndarray) -> torch.Tensor:
    """Move each image by whole pixels (up to ``fraction`` of its size each way); the pixels
    that come in take the image's own minimum per channel, as in the affine path."""
    b, c, h, w = x.shape
    my, mx = max(1, round(fraction * h)), max(1, round(fraction * w))
    dy = np.minimum((u[:, _SHIFT_Y] * (2 * my + 1)).astype(np.int64), 2 * my) - my
    dx = np.minimum((u[:, _SHIFT_X] * (2 * mx + 1)).astype(np.int64), 2 * mx) - mx
    padded = x.amin(dim=(2, 3), keepdim=True).expand(b, c, h + 2 * my, w + 2 * mx).clone()
    padded[:, :, my:my + h, mx:mx + w] = x
    # Output pixel (i, j) is input pixel (i - dy, j - dx): row i + my - dy of the padded image.
    rows = torch.from_numpy(np.arange(h)[None, :] + my - dy[:, None]).to(x.device)
    cols = torch.from_numpy(np.arange(w)[None, :] + mx - dx[:, None]).to(x.device)
    out = padded.gather(2, rows.view(b, 1, h, 1).expand(b, c, h, w + 2 * mx))
    out = out.gather(3, cols.view(b, 1, 1, w).expand(b, c, h, w))
    return out.contiguous(memory_format=torch.channels_last) if x.is_contiguous(
        memory_format=torch.channels_last) and not x.is_contiguous() else out


def _quarter_turns(u: np.ndarray, h: int, w: int) -> np.ndarray:
    k = np.minimum((u[:, _QUARTER] * 4).astype(np.int64), 3)
    # A quarter turn of a non-square image would change its shape: keep 0 or 180 degrees.
    return k if h == w else k - k % 2


def _theta(spec: AugmentSpec, u: np.ndarray, h: int, w: int) -> np.ndarray:
    # A few dozen tiny operations: done in NumPy on the CPU, where they cost microseconds.
    angle = (2 * u[:, _ROT] - 1) * math.radians(spec.rotate)
    if spec.quarter_turns:
        angle = angle + _quarter_turns(u, h, w) * (math.pi / 2)
    if spec.eighth_turn:
        angle = angle + (u[:, _EIGHTH] < spec.eighth_turn) * (math.pi / 4)
    inv_zoom = 1.0 / (1 + (2 * u[:, _ZOOM] - 1) * spec.zoom)
    shear = (2 * u[:, _SHEAR] - 1) * spec.shear
    flip_x = np.where(u[:, _HFLIP] < spec.hflip, -1.0, 1.0)
    flip_y = np.where(u[:, _VFLIP] < spec.vflip, -1.0, 1.0)
    cos, sin = np.cos(angle), np.sin(angle)
    theta = np.empty((u.shape[0], 2, 3))
    # Output pixel -> input pixel, in pixels around the centre: flip . rotate . shear . 1/zoom;
    # off-diagonal terms rescaled because the grid runs over [-1, 1] on both axes.
    theta[:, 0, 0] = flip_x * cos * inv_zoom
    theta[:, 0, 1] = flip_x * (cos * shear - sin) * inv_zoom * (h / w)
    theta[:, 1, 0] = flip_y * sin * inv_zoom * (w / h)
    theta[:, 1, 1] = flip_y * (sin * shear + cos) * inv_zoom
    theta[:, 0, 2] = (2 * u[:, _SHIFT_X] - 1) * (2 * spec.shift[0])
    theta[:, 1, 2] = (2 * u[:, _SHIFT_Y] - 1) * (2 * spec.shift[1])
    return theta


def _affine(x: torch.Tensor, theta: np.ndarray) -> torch.Tensor:
    _, _, h, w = x.shape
    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    grid = _grid(torch.from_numpy(theta).to(device=x.device, dtype=work.dtype), h, w)
    # Shift by the per-image, per-channel minimum so that zero padding fills with it.
    floor = work.amin(dim=(2, 3), keepdim=True)
    out = F.grid_sample(work - floor, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.add_(floor).to(x.dtype)


def _grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``F.affine_grid(theta, (B, C, h, w), align_corners=False)`` by broadcasting.

    affine_grid runs a batched matmul with inner size 3, which on CPU costs several times the
    resampling itself. Here the x and y planes are built as (B, 2, H, W) and returned as a
    permuted view, which grid_sample reads without a copy.
    """
    xs = (torch.arange(w, dtype=theta.dtype, device=theta.device) * 2 + 1) / w - 1
    ys = ((torch.arange(h, dtype=theta.dtype, device=theta.device) * 2 + 1) / h - 1).view(h, 1)
    t = theta.view(-1, 2, 3, 1, 1)
    planes = torch.addcmul(t[:, :, 1] * ys + t[:, :, 2], t[:, :, 0], xs)  # (B, 2, H, W)
    return planes.permute(0, 2, 3, 1)
