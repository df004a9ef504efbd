"""One way to assemble and submit a training run, used by the command line
(``python -m core train``), the Home page's quick start and the Train page.

:func:`run_request` turns a dataset, a model, a recipe and the settings a person changed
into checked params (``core.train.make_config`` -> ``validate`` -> ``build_params``) with a
readable name; :func:`run_requests` does it for several models at once; :func:`submit`
hands them to a :class:`core.runs.JobRunner`, which checks them again against the demo's
limits and queues all or none. The command line trains its request in the foreground
instead (:mod:`core.cli.train`).

A run is named after its dataset as people know it (``organa_folder``), never after the
path an upload is kept under on the server (:func:`core.paths.readable_dataset_name`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

from core.paths import readable_dataset_name


@dataclass(frozen=True)
class RunRequest:
    """A run ready to be created: its params.json, its display name and its settings.

    Attributes:
        params: what :func:`core.train.build_params` makes (``config`` and the facts).
        name: the display name; None lets the store name it by its id.
        config: the checked :class:`core.train.TrainConfig`.
    """

    params: dict[str, Any]
    name: str | None
    config: Any


def default_run_name(model: str, dataset: Any, size: int) -> str:
    """What a run is called when the person gives no name: ``medvcnn on organa_folder, 28 px``."""
    return f"{model} on {readable_dataset_name(dataset)}, {size} px"


def run_request(dataset: str | os.PathLike, model: str, recipe: str = "default", *, name: str | None = None,
                check_data: bool = False, **settings: Any) -> RunRequest:
    """The checked params of one run.

    Args:
        dataset: a MedMNIST name or the path of an image folder, zip or ``.npz`` dataset.
        model: a model name (:func:`core.models.list_models` or a classical baseline).
        recipe: ``default``, ``paper``, ``medmnist`` or a seed key.
        name: the display name; None keeps None (the store then names it by its id).
        check_data: load the dataset once, so a missing or unreadable one fails before
            any run directory exists (the command line and the quick start do).
        **settings: the settings the person changed (``image_size``, ``epochs``, ``lr``,
            ``batch_size``, ``data_dir``, ...), as :func:`core.train.make_config` takes them.

    Returns:
        The request.

    Raises:
        StudioError: an unknown model or recipe, a setting out of range (the demo's
            limits included), or a dataset that cannot be loaded.
    """
    from core.train import build_params, make_config, validate

    cfg = validate(make_config(os.fspath(dataset), model, recipe, **settings))
    if check_data:
        from core.data import load_dataset

        load_dataset(cfg.dataset, size=cfg.image_size, data_dir=cfg.data_dir, seed=cfg.data_seed)
    return RunRequest(build_params(cfg), name, cfg)


def run_requests(dataset: str | os.PathLike, models: Sequence[str], recipe: str = "default", *,
                 name: str | None = None, **settings: Any) -> list[RunRequest]:
    """One request per model, all with the same dataset, recipe and settings.

    Args:
        dataset, recipe, settings: as :func:`run_request`.
        models: the model names.
        name: the person's name for the batch: the run's name for one model,
            ``"<name> (<model>)"`` for several; empty or None gives each
            :func:`default_run_name`.

    Returns:
        The requests, in the order of ``models``.
    """
    out = []
    for model in models:
        request = run_request(dataset, model, recipe, **settings)
        cfg = request.config
        if name:
            label = f"{name} ({cfg.model})" if len(models) > 1 else name
        else:
            label = default_run_name(cfg.model, cfg.dataset, cfg.image_size)
        out.append(RunRequest(request.params, label, cfg))
    return out


def submit(runner: Any, requests: Sequence[RunRequest], owner: str | None = None) -> list[str]:
    """Queue ``requests`` on ``runner`` (a :class:`core.runs.JobRunner`): all of them, or none.

    Args:
        runner: the job runner.
        requests: from :func:`run_request` / :func:`run_requests`.
        owner: who asks (the browser session); None for the command line.

    Returns:
        The run ids, in the order of ``requests``.
    """
    return runner.submit_many([(r.params, r.name) for r in requests], owner=owner)
