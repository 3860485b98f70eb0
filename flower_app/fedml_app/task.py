"""Model and data for the FedML Flower App.

Dataset: scikit-learn's bundled Wisconsin breast cancer data set (569 samples,
30 features, binary target); no download needed. Every node loads the full
data set and deterministically picks its own partition from
``partition-id`` / ``num-partitions`` (node config).
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

NUM_FEATURES = 30
TEST_FRACTION = 0.2
MIN_PARTITION_SIZE = 10  # every partition gets at least this many samples


def setup_torch() -> None:
    """Keep torch light-weight: 1 intra-op / inter-op thread."""
    torch.set_num_threads(1)
    # Can only be set once per process, before parallel work.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)


# --------------------------------------------------------------------------- model
class Net(nn.Module):
    """Tiny MLP (or logistic regression if ``hidden_units == 0``); outputs a logit."""

    def __init__(self, hidden_units: int = 16) -> None:
        super().__init__()
        if hidden_units and hidden_units > 0:
            self.body = nn.Sequential(
                nn.Linear(NUM_FEATURES, hidden_units),
                nn.ReLU(),
                nn.Linear(hidden_units, 1),
            )
        else:
            self.body = nn.Sequential(nn.Linear(NUM_FEATURES, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).squeeze(-1)


def build_model(hidden_units: int, seed: int) -> Net:
    """Build a model with deterministic initial weights."""
    torch.manual_seed(seed)
    return Net(hidden_units)


# --------------------------------------------------------------------------- data
def _bundled_csv_path() -> Path | None:
    """Locate scikit-learn's bundled ``breast_cancer.csv`` without importing sklearn."""
    spec = importlib.util.find_spec("sklearn")  # does not execute sklearn/__init__
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "datasets" / "data" / "breast_cancer.csv"
        if path.is_file():
            return path
    return None


@lru_cache(maxsize=1)
def load_full_dataset() -> tuple[np.ndarray, np.ndarray]:
    """Return (X, y) of scikit-learn's breast cancer data set as float32.

    Reads the CSV bundled with scikit-learn directly (the same file
    ``sklearn.datasets.load_breast_cancer`` parses), which avoids ~1 s of
    ``import sklearn.datasets`` in every short-lived ``flwr-clientapp``
    process. Falls back to ``load_breast_cancer`` if the file is not found.
    """
    path = _bundled_csv_path()
    if path is not None:
        raw = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)
        if raw.shape == (569, NUM_FEATURES + 1):
            return raw[:, :-1].astype(np.float32), raw[:, -1].astype(np.float32)
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    return data.data.astype(np.float32), data.target.astype(np.float32)


def iid_partition(num_samples: int, num_partitions: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    idx = rng.permutation(num_samples)
    return [np.sort(p) for p in np.array_split(idx, num_partitions)]


def dirichlet_partition(
    labels: np.ndarray,
    num_partitions: int,
    alpha: float,
    seed: int,
    min_size: int = MIN_PARTITION_SIZE,
    max_tries: int = 100,
) -> list[np.ndarray]:
    """Per-class Dirichlet label-skew partitioning (deterministic with ``seed``).

    Retries until every partition has at least ``min_size`` samples; if that
    does not happen within ``max_tries`` draws, samples are moved from the
    largest partitions to the too-small ones so no partition is ever empty.
    """
    if alpha <= 0:
        raise ValueError(f"dirichlet-alpha must be > 0, got {alpha}")
    n = len(labels)
    min_size = min(min_size, n // num_partitions)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    parts: list[list[int]] = []
    for _ in range(max_tries):
        parts = [[] for _ in range(num_partitions)]
        for c in classes:
            idx_c = np.flatnonzero(labels == c)
            rng.shuffle(idx_c)
            props = rng.dirichlet(np.full(num_partitions, alpha))
            cuts = (np.cumsum(props) * len(idx_c)).astype(int)[:-1]
            for p, chunk in enumerate(np.split(idx_c, cuts)):
                parts[p].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            break
    else:
        # Fallback: top up small partitions from the largest ones.
        for p in range(num_partitions):
            while len(parts[p]) < min_size:
                donor = max(range(num_partitions), key=lambda i: len(parts[i]))
                parts[p].append(parts[donor].pop())
    return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]


def partition_indices(
    labels: np.ndarray, num_partitions: int, partitioning: str, alpha: float, seed: int
) -> list[np.ndarray]:
    if partitioning == "iid":
        return iid_partition(len(labels), num_partitions, seed)
    if partitioning == "dirichlet":
        return dirichlet_partition(labels, num_partitions, alpha, seed)
    raise ValueError(f"Unknown partitioning {partitioning!r} (use 'iid' or 'dirichlet')")


@dataclass
class LocalData:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@lru_cache(maxsize=8)
def load_partition(
    partition_id: int,
    num_partitions: int,
    partitioning: str = "iid",
    alpha: float = 0.5,
    seed: int = 42,
) -> LocalData:
    """Return this node's partition, split 80/20 and standardized with train stats."""
    if not 0 <= partition_id < num_partitions:
        raise ValueError(f"partition-id must be in [0, {num_partitions}), got {partition_id}")
    x, y = load_full_dataset()
    idx = partition_indices(y, num_partitions, partitioning, alpha, seed)[partition_id]

    # Deterministic local 80/20 split (seed depends on partition).
    rng = np.random.default_rng([seed, partition_id])
    idx = rng.permutation(idx)
    n_test = max(1, int(round(TEST_FRACTION * len(idx))))
    test_idx, train_idx = idx[:n_test], idx[n_test:]

    x_tr, x_te = x[train_idx], x[test_idx]
    mean = x_tr.mean(axis=0)
    std = x_tr.std(axis=0)
    std[std < 1e-8] = 1.0
    x_tr = (x_tr - mean) / std
    x_te = (x_te - mean) / std
    return LocalData(
        x_train=torch.from_numpy(x_tr),
        y_train=torch.from_numpy(y[train_idx]),
        x_test=torch.from_numpy(x_te),
        y_test=torch.from_numpy(y[test_idx]),
    )


# --------------------------------------------------------------------------- train / eval
def train(
    model: Net,
    data: LocalData,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    proximal_mu: float = 0.0,
) -> float:
    """Local SGD training; returns the mean training loss over all batches."""
    global_params = [p.detach().clone() for p in model.parameters()] if proximal_mu > 0 else None
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    n = len(data.y_train)
    total, count = 0.0, 0
    for _ in range(max(1, epochs)):
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            b = perm[start : start + batch_size]
            opt.zero_grad()
            loss = loss_fn(model(data.x_train[b]), data.y_train[b])
            if global_params is not None:
                prox = sum((w - w0).pow(2).sum() for w, w0 in zip(model.parameters(), global_params, strict=False))
                loss = loss + (proximal_mu / 2.0) * prox
            loss.backward()
            opt.step()
            total += float(loss.item()) * len(b)
            count += len(b)
    return total / max(count, 1)


@torch.no_grad()
def evaluate(model: Net, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Return (loss, accuracy) of ``model`` on (x, y)."""
    model.eval()
    logits = model(x)
    loss = float(nn.functional.binary_cross_entropy_with_logits(logits, y).item())
    acc = float(((logits > 0).float() == y).float().mean().item())
    return loss, acc


def state_dict_to_cpu(sd: OrderedDict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    return OrderedDict((k, v.detach().cpu().clone()) for k, v in sd.items())
