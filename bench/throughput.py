"""Training throughput: the MedMNIST reference input pipeline against the studio's trainer.

Both sides train the same model (same initial weights) with Adam 1e-3, batch 128, no
augmentation, in one process, one after the other, and are timed over the same number of
steps after the same warm-up. The reference reads each sample through the ``medmnist``
dataset class, PIL, ``ToTensor`` and ``Normalize(.5, .5)`` and a ``DataLoader`` (no workers),
as the MedMNIST experiments do. The studio path is ``core.train.trainer.Trainer`` itself.
"""

from __future__ import annotations

import copy
import time

import torch

from bench.machine import describe
from core.train.config import PRECISIONS


def add_arguments(p) -> None:
    p.add_argument("--dataset", required=True, help="a MedMNIST name, e.g. bloodmnist")
    p.add_argument("--model", required=True, help="a model name, e.g. medvcnn")
    p.add_argument("--data-dir", help="where the MedMNIST .npz files are (default $STUDIO_DATA_DIR)")
    p.add_argument("--steps", type=int, default=30, help="timed steps per side (after --warmup)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2, help="alternate reference/studio this many times; best kept")
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="the studio side's precision: auto (fp32 on the CPU) or bf16 (on a CPU with bf16 units)")


def reference_images_per_second(model, flag: str, size: int, data_dir: str, steps: int, warmup: int) -> float:
    """The MedMNIST experiments' loop: PIL -> ToTensor -> Normalize -> DataLoader -> Adam."""
    import medmnist
    from torchvision import transforms

    from core.data import medmnist_facts

    facts = medmnist_facts(flag)
    cls = getattr(medmnist, facts.python_class)
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean=[0.5], std=[0.5])])
    ds = cls(split="train", transform=tf, download=False, root=data_dir, size=None if size == 28 else size)
    loader = torch.utils.data.DataLoader(ds, batch_size=128, shuffle=True)
    multi_label = facts.task == "multi-label"
    criterion = torch.nn.BCEWithLogitsLoss() if multi_label else torch.nn.CrossEntropyLoss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    done, t0, images = 0, None, 0
    while done < warmup + steps:
        for x, y in loader:
            if done == warmup:
                t0 = time.perf_counter()
            opt.zero_grad()
            out = model(x)
            loss = criterion(out, y.float()) if multi_label else criterion(out, y.squeeze(1).long())
            loss.backward()
            opt.step()
            done += 1
            if done > warmup:
                images += x.shape[0]
            if done == warmup + steps:
                break
    return images / (time.perf_counter() - t0)


def studio_images_per_second(model, flag: str, size: int, data_dir: str, steps: int, warmup: int,
                             precision: str = "auto") -> float:
    """The studio's own training loop over the same steps."""
    from core.data import load_dataset
    from core.train.callbacks import Callback
    from core.train.config import TrainConfig
    from core.train.trainer import Trainer, make_batches

    data = load_dataset(flag, size=size, data_dir=data_dir)
    cfg = TrainConfig(dataset=flag, model="bench", image_size=size, epochs=1, batch_size=128, optimizer="adam",
                      lr=1e-3, schedule="none", augment="none", log_every=10_000, tta=False, precision=precision)
    mean = std = (0.5, 0.5, 0.5)
    train = make_batches(data.images["train"], data.labels["train"], mean, std)
    val = make_batches(data.images["val"][:128], data.labels["val"][:128], mean, std)

    class Clock(Callback):
        def __init__(self):
            self.t = {}

        def on_step_end(self, trainer, step, logs):
            self.t[step] = time.perf_counter()

    clock = Clock()
    trainer = Trainer(model, cfg, data.task, torch.device("cpu"), train, val, callbacks=[clock])
    trainer.steps_per_epoch = warmup + steps
    trainer.train_one_epoch(1)
    return steps * 128 / (clock.t[warmup + steps] - clock.t[warmup])


def run(args) -> int:
    from core.data import medmnist_facts
    from core.models import create_model
    from core.paths import data_dir as default_data_dir

    if args.threads:
        torch.set_num_threads(args.threads)
    flag = args.dataset.lower()
    facts = medmnist_facts(flag)
    channels, classes = facts.channels, facts.num_classes
    root = str(default_data_dir(args.data_dir))
    torch.manual_seed(0)
    base = create_model(args.model, channels, classes, args.size)
    print(f"# {describe()}")
    print(f"# {args.model} on {flag} {args.size}px, batch 128, Adam, {args.steps} steps after {args.warmup} warm-up, "
          f"studio precision {args.precision}")
    ref, studio = [], []
    for r in range(args.rounds):
        ref.append(reference_images_per_second(copy.deepcopy(base), flag, args.size, root, args.steps, args.warmup))
        studio.append(studio_images_per_second(copy.deepcopy(base), flag, args.size, root, args.steps, args.warmup,
                                               args.precision))
        print(f"round {r + 1}: reference {ref[-1]:.0f} images/s, studio {studio[-1]:.0f} images/s")
    best_ref, best_studio = max(ref), max(studio)
    print(f"reference: {best_ref:.0f} images/s")
    print(f"studio: {best_studio:.0f} images/s")
    print(f"speedup: {best_studio / best_ref:.2f}")
    return 0
