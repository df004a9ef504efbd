"""Classical baselines on flattened pixels (seed 002, Table II), from scikit-learn.

One small contract for all five, so the trainer and the pages treat them alike::

    clf = create_classical("svm", seed=0)
    clf.fit(train_images, train_labels)          # uint8 (N, C, H, W); labels (N,) or (N, K) 0/1
    probs = clf.predict_proba(test_images)       # (N, K) float

Single-label rows of ``predict_proba`` sum to 1; multi-label columns are independent
"label k present" probabilities (one-vs-rest), as the network models' sigmoid outputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.errors import ConfigError, DataError

# name -> one line for a person.
_DESCRIPTIONS: dict[str, str] = {
    "logreg": "Logistic regression: one weight per pixel and class, the simplest classifier.",
    "random_forest": "Random forest: many decision trees that vote.",
    "svm": "Support vector machine: finds the widest margin between classes (RBF kernel).",
    "knn": "k-nearest neighbours: labels an image like the 5 most similar training images.",
    "decision_tree": "Decision tree: a single chain of yes/no questions about pixel values.",
}


def _estimator(name: str, seed: int) -> Any:
    """The scikit-learn estimator behind ``name``: its defaults except where a comment says why."""
    # scikit-learn is imported here, not at the top: it takes seconds, and the training
    # workers that import core.models for the networks never need it
    if name == "logreg":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        # Standardised pixels: on raw pixels lbfgs had not converged after 1000 steps
        # (minutes on 3,000 BloodMNIST images); standardised, it converges in ~250.
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=seed))
    if name == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_jobs=-1, random_state=seed)
    if name == "svm":
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import SVC

        # Probabilities by Platt scaling fitted on 3-fold out-of-fold scores, then one SVC
        # on all the data (ensemble=False): what SVC(probability=True) did, which
        # scikit-learn 1.9 deprecates; 3 folds rather than 5 to keep a few thousand
        # images quick. The folds are not shuffled, so no randomness is involved.
        return CalibratedClassifierCV(SVC(kernel="rbf", cache_size=1000), method="sigmoid", cv=3, ensemble=False)
    if name == "knn":
        from sklearn.neighbors import KNeighborsClassifier

        return KNeighborsClassifier(n_neighbors=5)
    if name == "decision_tree":
        from sklearn.tree import DecisionTreeClassifier

        return DecisionTreeClassifier(random_state=seed)
    raise ConfigError(f"Unknown classical baseline {name!r}; choose one of: {', '.join(list_classical())}.")


def list_classical() -> list[str]:
    """The classical baseline names.

    Returns:
        The names, sorted.
    """
    return sorted(_DESCRIPTIONS)


def create_classical(name: str, seed: int = 0) -> ClassicalBaseline:
    """Make an untrained classical baseline.

    Args:
        name: one of :func:`list_classical`.
        seed: random state of the estimator; the same seed and data give the same model.

    Returns:
        A :class:`ClassicalBaseline`.

    Raises:
        ConfigError: unknown name (the message lists the valid ones).
    """
    if name not in _DESCRIPTIONS:
        raise ConfigError(f"Unknown classical baseline {name!r}; choose one of: {', '.join(list_classical())}.")
    return ClassicalBaseline(name, _DESCRIPTIONS[name], _estimator(name, seed))


def _pixels(images: Any) -> np.ndarray:
    """(N, ...) images -> (N, features) float32 in [0, 1]."""
    if hasattr(images, "detach"):  # a torch tensor; avoid importing torch for this check
        images = images.detach().cpu().numpy()
    x = np.asarray(images)
    if x.ndim < 2 or len(x) == 0:
        raise DataError(
            f"Expected a non-empty batch of images shaped (N, C, H, W), got shape {x.shape}; pass the image array."
        )
    if np.issubdtype(x.dtype, np.integer):
        x = x.astype(np.float32) / 255.0  # 8-bit pixels
    else:
        x = x.astype(np.float32)  # already scaled to [0, 1]
    return x.reshape(len(x), -1)


class ClassicalBaseline:
    """A scikit-learn classifier behind the studio's fit / predict_proba contract.

    Attributes:
        name: the registered name, e.g. ``"svm"``.
        description: one line for a person.
        num_classes: K, the width of ``predict_proba``'s output (set by ``fit``).
        multilabel: whether ``fit`` saw a 0/1 label matrix (set by ``fit``).
    """

    def __init__(self, name: str, description: str, estimator: Any) -> None:
        self.name = name
        self.description = description
        self._estimator = estimator
        self._fitted: Any = None
        self._features: int | None = None
        self.num_classes: int | None = None
        self.multilabel: bool | None = None

    def fit(self, images: Any, labels: Any, num_classes: int | None = None) -> ClassicalBaseline:
        """Train on flattened pixels.

        Args:
            images: uint8 array or tensor (N, C, H, W) (floats are taken as already in [0, 1]).
            labels: int class ids (N,) or (N, 1), or a 0/1 multi-label matrix (N, K).
            num_classes: K for single-label data whose highest class may be absent from
                ``labels``; defaults to the highest label + 1.

        Returns:
            self.

        Raises:
            DataError: labels and images disagree in number, or fewer than two classes.
        """
        from sklearn.base import clone

        x = _pixels(images)
        y = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels)
        if len(y) != len(x):
            raise DataError(f"Got {len(x)} images but {len(y)} labels; pass one label row per image.")
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]  # MedMNIST stores single labels as (N, 1)
        if y.ndim == 1:
            y = y.astype(np.int64)
            if len(np.unique(y)) < 2:
                raise DataError("The training labels hold a single class; a classifier needs examples of at least two.")
            if y.min() < 0 or (num_classes is not None and y.max() >= num_classes):
                top = num_classes - 1 if num_classes is not None else "K-1"
                raise DataError(f"Class ids must lie in 0..{top}, but the labels run {y.min()}..{y.max()}; check them.")
            self.multilabel = False
            self.num_classes = int(num_classes or y.max() + 1)
            self._fitted = clone(self._estimator).fit(x, y)  # a fresh copy: fit twice, get the same model
        elif y.ndim == 2:
            self.multilabel = True
            self.num_classes = y.shape[1]
            from sklearn.multiclass import OneVsRestClassifier

            # one binary classifier per label; a label never present gets a constant predictor
            self._fitted = OneVsRestClassifier(clone(self._estimator)).fit(x, y.astype(np.int64))
        else:
            raise DataError(f"Labels must be shaped (N,) or (N, K), not {y.shape}; pass class ids or a 0/1 matrix.")
        self._features = x.shape[1]
        return self

    def predict_proba(self, images: Any) -> np.ndarray:
        """Class (or per-label) probabilities.

        Args:
            images: images shaped and scaled as for :meth:`fit`.

        Returns:
            float64 array (N, K): rows sum to 1 for single-label data; for multi-label
            data column k is the probability that label k is present.

        Raises:
            DataError: not fitted yet, or the images have a different size than in ``fit``.
        """
        if self._fitted is None:
            raise DataError(f"The {self.name} baseline has not been trained; call fit first.")
        x = _pixels(images)
        if x.shape[1] != self._features:
            raise DataError(
                f"The {self.name} baseline was trained on {self._features} pixel values per image, not {x.shape[1]}; "
                "use the same image size and channels."
            )
        p = self._fitted.predict_proba(x)
        if self.multilabel:
            return np.asarray(p, dtype=np.float64)
        # columns follow the classes seen in fit; classes never seen get probability 0
        out = np.zeros((len(x), self.num_classes), dtype=np.float64)
        out[:, self._fitted.classes_] = p
        return out

    def __repr__(self) -> str:
        return f"ClassicalBaseline({self.name!r}, {self._estimator!r})"
