"""Which epoch (or average of epochs) to keep: selection rules compared on validation only.

One real training run per seed (the studio's default recipe, through ``run_training``) records
the validation scores of every epoch and the weights of its last epochs. Each rule is then
judged without looking at the test split and without flattering the rules that pick an epoch
on validation: the validation split is cut in two halves at random many times, a rule chooses
on one half and is scored on the other (a rule that picks nothing, such as "the last epoch",
is scored on the same halves).

Rules:
- ``best val AUC`` (the default recipe's monitor), ``best val loss``, ``best val ACC``;
- ``best val ACC, AUC breaks ties``;
- ``last epoch``;
- ``average of the last K epochs' weights`` (K = 3, 5, 10), the averaged network's own scores.
"""

from __future__ import annotations

import collections
import statistics
import tempfile

import numpy as np

from core.train.callbacks import Callback

TAILS = (3, 5, 10)


def add_arguments(p) -> None:
    p.add_argument("--dataset", required=True, help="a MedMNIST name (or any dataset flag the studio reads)")
    p.add_argument("--minutes", type=float, default=2.0, help="training budget per seed, in minutes")
    p.add_argument("--data-dir", help="where the MedMNIST .npz files are (default $STUDIO_DATA_DIR)")
    p.add_argument("--model", default="medvcnn")
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--max-epochs", type=int, default=300)
    p.add_argument("--halves", type=int, default=100, help="random half splits of the validation set")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="change one setting of the recipe, as in bench accuracy")


class Recorder(Callback):
    """A trainer callback: every epoch's validation scores, and the last epochs' evaluated weights."""

    def __init__(self, keep: int = max(TAILS)):
        self.scores: list[np.ndarray] = []
        self.recent: collections.deque = collections.deque(maxlen=keep)
        self.tail_scores: dict[int, np.ndarray] = {}
        self.labels: np.ndarray | None = None  # the validation labels, in the scores' order
        self.task: str | None = None

    def on_validation_end(self, trainer, epoch, logs):
        if self.labels is None:
            self.labels, self.task = trainer.val.labels.numpy(), trainer.task
        self.scores.append(np.array(trainer.last_val_scores, copy=True))
        weights = trainer.ema.state_dict() if trainer.ema is not None else {
            k: v.detach().cpu().clone() for k, v in trainer.model.state_dict().items()}
        self.recent.append(weights)

    def on_fit_end(self, trainer, status):
        import torch

        from core.forward import scores_from_logits
        from core.train.trainer import predict_logits

        saved = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        for k in TAILS:
            states = list(self.recent)[-k:]
            if len(states) < k:
                continue
            avg = {}
            for name, value in states[-1].items():
                avg[name] = (torch.stack([s[name].float() for s in states]).mean(0).to(value.dtype)
                             if value.is_floating_point() else value)
            trainer.model.load_state_dict(avg)
            logits = predict_logits(trainer.model, trainer.val, trainer.device, channels_last=trainer.channels_last)
            self.tail_scores[k] = scores_from_logits(logits, trainer.task).numpy()
        trainer.model.load_state_dict(saved)


def _metrics(scores: np.ndarray, labels: np.ndarray, task: str) -> tuple[float, float]:
    from core.train.trainer import quick_metrics

    m = quick_metrics(scores, labels, task)
    return m["acc"], m["auc"]


def _nll(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (single-label tasks)."""
    y = labels.reshape(-1).astype(int)
    if scores.ndim == 1 or scores.shape[1] == 1:  # one sigmoid score
        p1 = np.clip(scores.reshape(-1), 1e-7, 1 - 1e-7)
        return float(-np.mean(np.where(y == 1, np.log(p1), np.log(1 - p1))))
    return float(-np.mean(np.log(np.clip(scores[np.arange(len(y)), y], 1e-7, 1.0))))


def judge(rec: Recorder, labels: np.ndarray, task: str, halves: int, seed: int = 0) -> dict[str, dict]:
    """Each rule's mean ACC / AUC on held-out halves of the validation split.

    Args:
        rec: what the training run recorded.
        labels: the validation labels, in the order of the recorded scores.
        task: the dataset's task.
        halves: how many random half splits.
        seed: for the splits.

    Returns:
        ``{rule: {"acc": mean, "auc": mean, "epochs": [the epoch chosen on each first half]}}``.
    """
    rng = np.random.default_rng(seed)
    n = len(labels)
    picks = {
        "best val AUC (default)": lambda a: max(range(len(a)), key=lambda e: (a[e][1], -e)),
        "best val ACC": lambda a: max(range(len(a)), key=lambda e: (a[e][0], -e)),
        "best val ACC, AUC breaks ties": lambda a: max(range(len(a)), key=lambda e: (a[e][0], a[e][1], -e)),
        "best val loss": lambda a: min(range(len(a)), key=lambda e: (a[e][2], e)),
    }
    out: dict[str, dict] = {r: {"acc": [], "auc": [], "epochs": []} for r in picks}
    fixed = {"last epoch": rec.scores[-1], **{f"average of the last {k} epochs": s
                                               for k, s in sorted(rec.tail_scores.items())}}
    out.update({r: {"acc": [], "auc": [], "epochs": []} for r in fixed})
    for _ in range(halves):
        order = rng.permutation(n)
        a_idx, b_idx = order[: n // 2], order[n // 2:]
        on_a = [(*_metrics(s[a_idx], labels[a_idx], task), _nll(s[a_idx], labels[a_idx])) for s in rec.scores]
        for rule, pick in picks.items():
            e = pick(on_a)
            acc, auc = _metrics(rec.scores[e][b_idx], labels[b_idx], task)
            out[rule]["acc"].append(acc)
            out[rule]["auc"].append(auc)
            out[rule]["epochs"].append(e + 1)
        for rule, s in fixed.items():
            acc, auc = _metrics(s[b_idx], labels[b_idx], task)
            out[rule]["acc"].append(acc)
            out[rule]["auc"].append(auc)
    return {r: {"acc": float(np.nanmean(v["acc"])), "auc": float(np.nanmean(v["auc"])),
                "epochs": v["epochs"]} for r, v in out.items()}


def run(args) -> int:
    from bench.accuracy import parse_overrides, train_one
    from bench.machine import describe

    flag = args.dataset.lower()
    overrides = parse_overrides(args.set)
    print(f"# {describe()}")
    print(f"# selection rules, {args.model} on {flag} {args.size}px, default recipe, {args.minutes:g} min per seed, "
          f"seeds {args.seeds}, {args.halves} validation half splits" + (f", changed: {overrides}" if overrides else ""))
    per_seed = []
    with tempfile.TemporaryDirectory(prefix="bench-selection-") as tmp:
        for seed in args.seeds:
            rec = Recorder()
            r = train_one(flag, args.model, args.size, "default", seed, args.minutes, args.max_epochs,
                          args.data_dir, tmp, overrides, extra_callbacks=[rec])
            result = judge(rec, rec.labels, rec.task, args.halves, seed)
            per_seed.append(result)
            print(f"seed {seed}: {len(rec.scores)} epochs, best val AUC epoch {r['best_epoch']}, "
                  f"test of the default choice ACC {r['acc']:.4f} AUC {r['auc']:.4f}", flush=True)
            for rule, res in result.items():
                chosen = f", epochs chosen {int(np.median(res['epochs']))} (median)" if res["epochs"] else ""
                print(f"  {rule}: held-out half ACC {res['acc']:.4f} AUC {res['auc']:.4f}{chosen}", flush=True)
    print()
    print("| rule (chosen on one half of val, scored on the other) | val ACC | val AUC |")
    print("|---|---|---|")
    for rule in per_seed[0]:
        accs = [s[rule]["acc"] for s in per_seed if rule in s]
        aucs = [s[rule]["auc"] for s in per_seed if rule in s]
        print(f"| {rule} | {statistics.mean(accs):.4f} | {statistics.mean(aucs):.4f} |")
    return 0
