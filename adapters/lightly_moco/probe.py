"""Evaluation of a trained encoder: kNN and linear-probe top-1, and the NDA paper's Fig. 9 check.

Fig. 9 of the NDA paper compares, for MoCo-v2 with and without NDA, the cosine distance between
an image's representation and that of its jigsaw view: with NDA the jigsaw view is pushed away
(it was an explicit negative), so the distance should be larger.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nda_plugins import transforms

__all__ = ["extract_features", "jigsaw_distances", "knn_top1", "linear_probe_top1"]


@torch.no_grad()
def extract_features(encoder, x: torch.Tensor, *, batch_size: int = 512) -> torch.Tensor:
    """``encoder(x)`` in chunks, in eval mode: ``(N, 3, S, S)`` -> ``(N, F)``."""
    was_training = encoder.training
    encoder.eval()
    try:
        return torch.cat([encoder(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    finally:
        encoder.train(was_training)


@torch.no_grad()
def knn_top1(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor,
             *, k: int = 20, temperature: float = 0.1) -> float:
    """Weighted kNN top-1 (InstDisc / MoCo protocol): cosine neighbours vote with ``exp(sim / t)``.

    Returns:
        Top-1 accuracy in ``[0, 1]``.
    """
    k = min(k, len(train_f))
    train_f, test_f = F.normalize(train_f, dim=1), F.normalize(test_f, dim=1)
    num_classes = int(torch.cat([train_y, test_y]).max()) + 1
    correct = 0
    for i in range(0, len(test_f), 1024):
        sim, idx = (test_f[i:i + 1024] @ train_f.T).topk(k, dim=1)
        votes = torch.zeros(len(idx), num_classes, device=sim.device, dtype=sim.dtype)
        votes.scatter_add_(1, train_y[idx], (sim / temperature).exp())
        correct += int((votes.argmax(dim=1) == test_y[i:i + 1024]).sum())
    return correct / len(test_f)


def linear_probe_top1(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor,
                      *, steps: int = 300, lr: float = 0.05, weight_decay: float = 1e-4) -> float:
    """Multinomial logistic regression on frozen, standardised features; top-1 on the test set.

    Full-batch Adam from zero weights (a convex problem: no seed dependence).

    Returns:
        Top-1 accuracy in ``[0, 1]``.
    """
    mean, std = train_f.mean(dim=0), train_f.std(dim=0).clamp_min(1e-6)
    a, b = ((train_f - mean) / std).detach(), ((test_f - mean) / std).detach()
    num_classes = int(torch.cat([train_y, test_y]).max()) + 1
    weight = torch.zeros(a.shape[1], num_classes, device=a.device, requires_grad=True)
    bias = torch.zeros(num_classes, device=a.device, requires_grad=True)
    opt = torch.optim.Adam([weight, bias], lr=lr, weight_decay=weight_decay)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(a @ weight + bias, train_y).backward()
            opt.step()
    with torch.no_grad():
        return float(((b @ weight + bias).argmax(dim=1) == test_y).float().mean())


@torch.no_grad()
def jigsaw_distances(encoder, x: torch.Tensor, *, grid: int = 2, seed: int = 0) -> torch.Tensor:
    """Cosine distance ``1 - cos(f(x), f(jigsaw(x)))`` per image (NDA paper, Fig. 9).

    The jigsaw views come from a generator seeded with ``seed``, so two encoders are compared on
    the same views.

    Returns:
        ``(N,)`` distances in ``[0, 2]``.
    """
    jigsaw = transforms.build("jigsaw", grid=grid)
    g = torch.Generator(device=x.device).manual_seed(seed)
    views = torch.cat([jigsaw(x[i:i + 512], generator=g) for i in range(0, len(x), 512)])
    f, fj = extract_features(encoder, x), extract_features(encoder, views)
    return 1 - F.cosine_similarity(f, fj, dim=1)
