"""``python -m core models``, ``datasets`` and ``recipes``: what the studio offers."""

from __future__ import annotations

from core.cli.common import print_table


def add_commands(sub) -> None:
    """Add ``models``, ``datasets`` and ``recipes`` to the subparsers ``sub``."""
    sub.add_parser("models", help="list the architectures").set_defaults(func=cmd_models)
    d = sub.add_parser("datasets", help="list MedMNIST datasets and which files are present")
    d.add_argument("--data-dir")
    d.add_argument("--import", dest="import_file", help="import an official MedMNIST .npz file (MD5 checked)")
    d.set_defaults(func=cmd_datasets)
    sub.add_parser("recipes", help="list the training recipes").set_defaults(func=cmd_recipes)


def cmd_models(args) -> int:
    from core.models import list_classical, list_models, model_info

    rows = []
    for name in list_models():
        info = model_info(name, 3, 8, 28)
        rows.append({"model": name, "source": info.paper, "params (28px RGB, 8 classes)": f"{info.params:,}",
                     "description": info.description})
    for name in list_classical():
        rows.append({"model": name, "source": "scikit-learn", "params (28px RGB, 8 classes)": "-",
                     "description": "classical baseline on flattened pixels"})
    print_table(rows)
    return 0


def cmd_datasets(args) -> int:
    from core.data import import_npz, list_medmnist, medmnist_facts, medmnist_on_disk
    from core.paths import data_dir

    root = data_dir(args.data_dir)
    if args.import_file:
        path = import_npz(args.import_file, data_dir=root)
        print(f"imported {path.name} into {root} (MD5 checked)")
        return 0
    on_disk = medmnist_on_disk(root)
    rows = []
    for facts in map(medmnist_facts, list_medmnist()):
        rows.append({"dataset": facts.flag, "task": facts.medmnist_task, "classes": facts.num_classes,
                     "channels": facts.channels, "train/val/test": "/".join(str(facts.n_samples[k]) for k in ("train", "val", "test")),
                     "sizes on disk": ", ".join(map(str, on_disk.get(facts.flag, []))) or "-"})
    print(f"data directory: {root}")
    print_table(rows)
    return 0


def cmd_recipes(args) -> int:
    from core.train import RECIPES

    print_table([{"recipe": r.name, "source": r.source, "description": r.description} for r in RECIPES.values()])
    print("`--recipe paper` picks the model's own paper recipe (seed models) or the default.")
    return 0
