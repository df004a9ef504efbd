"""An ensemble: several trained networks whose probabilities are averaged, as one network.

The ensemble is an ``nn.Module`` like any model of the zoo: it takes the normalised batch
``(N, C, S, S)`` and returns ``(N, K)`` logits, so evaluation, Classify, ``predict``, Monte-Carlo
dropout, the explanations and export need nothing of their own for it. Its logits are those of
the averaged probabilities: ``log(mean_m softmax(z_m))`` (a softmax gives the mean back), or for
multi-label tasks ``logit(mean_m sigmoid(z_m))``.

Members may have been trained with different input normalisations (ImageNet statistics for a
pretrained network, 0.5 / 0.5 for the others): each member undoes the ensemble's normalisation
and applies its own, an affine map per channel (``x * scale + offset``), kept as buffers.

An ensemble is not registered for training (:func:`core.models.list_models` does not offer it);
it is assembled from finished runs (:mod:`core.experiments.ensemble`) and rebuilt from its
checkpoint's ``model_args["members"]`` by :func:`build_ensemble`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

#: The name an ensemble's checkpoint and params.json give as its model.
ENSEMBLE = "ensemble"

#: Probabilities are kept at least this far from 0 and 1 before the log, so logits stay finite.
_EPS = 1e-7


class Member(nn.Module):
    """One member: its network, behind the change from the ensemble's normalisation to its own."""

    def __init__(self, net: nn.Module, scale: torch.Tensor, offset: torch.Tensor):
        super().__init__()
        self.net = net
        self.register_buffer("scale", scale.reshape(1, -1, 1, 1).float())
        self.register_buffer("offset", offset.reshape(1, -1, 1, 1).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * self.scale + self.offset)


class Ensemble(nn.Module):
    """The members' averaged probabilities, returned as logits (see the module docstring).

    Attributes:
        members: the :class:`Member` modules.
        multi_label: one sigmoid per label (else a softmax over the classes).
        gradcam_layers: each member's Grad-CAM layer as a dotted path from the ensemble
            (``members.0.net.<layer>``); :func:`core.explain.explain` sums their maps.
    """

    def __init__(self, members: Sequence[Member], multi_label: bool, gradcam_layers: Sequence[str] = ()):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.multi_label = bool(multi_label)
        self.gradcam_layers = list(gradcam_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for member in self.members:
            z = member(x).float()
            p = torch.sigmoid(z) if self.multi_label else torch.softmax(z, dim=1)
            total = p if total is None else total + p
        mean = (total / len(self.members)).clamp(_EPS, 1 - _EPS)
        return torch.log(mean) - torch.log1p(-mean) if self.multi_label else torch.log(mean)


def _affine(ensemble_mean: Sequence[float], ensemble_std: Sequence[float], mean: Sequence[float],
            std: Sequence[float], channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """scale, offset with ``(x * e_std + e_mean - mean) / std == x * scale + offset``."""
    em, es = torch.tensor(ensemble_mean[:channels]), torch.tensor(ensemble_std[:channels])
    m, s = torch.tensor(mean[:channels]), torch.tensor(std[:channels])
    return es / s, (em - m) / s


def member_spec(ckpt: dict[str, Any], run_id: str, gradcam_layer: str | None) -> dict[str, Any]:
    """What an ensemble's checkpoint records of one member (enough to rebuild it)."""
    return {"run_id": run_id, "model_name": ckpt["model_name"], "model_args": dict(ckpt["model_args"]),
            "mean": [float(v) for v in ckpt["mean"]], "std": [float(v) for v in ckpt["std"]],
            "gradcam_layer": gradcam_layer}


def build_ensemble(args: dict[str, Any], task: str, mean: Sequence[float], std: Sequence[float],
                   nets: Sequence[nn.Module] | None = None,
                   rebuild: Callable[[dict[str, Any]], nn.Module] | None = None) -> Ensemble:
    """The ensemble an ensemble checkpoint describes, with the members' weights when ``nets``
    are given (trained networks, in the order of ``args["members"]``), else random ones (load
    the checkpoint's ``state_dict`` next).

    Args:
        args: the checkpoint's ``model_args``: ``in_channels`` and ``members`` (each
            :func:`member_spec`).
        task: the task name (``multi-label`` averages sigmoids, anything else softmaxes).
        mean: the ensemble's input normalisation (its first member's).
        std: the ensemble's input normalisation.
        nets: the members' networks, or None to rebuild them from their specs.
        rebuild: makes a member's network from ``{"model_name", "model_args"}`` when ``nets``
            is None (:func:`core.inference.rebuild_model`).
    """
    channels = int(args["in_channels"])
    members, layers = [], []
    for i, spec in enumerate(args["members"]):
        if nets is not None:
            net = nets[i]
        elif rebuild is not None:
            net = rebuild({"model_name": spec["model_name"], "model_args": spec["model_args"]})
        else:
            raise ValueError("build_ensemble needs the members' networks or a way to rebuild them")
        scale, offset = _affine(mean, std, spec["mean"], spec["std"], channels)
        members.append(Member(net, scale, offset))
        if spec.get("gradcam_layer"):
            layers.append(f"members.{i}.net.{spec['gradcam_layer']}")
    return Ensemble(members, multi_label=task == "multi-label", gradcam_layers=layers)
