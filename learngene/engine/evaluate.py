"""Top-1 / top-5 accuracy and cross-entropy of a model on a loader (summed over ranks under torchrun)."""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader


def autocast(device: torch.device, amp: str):
    """Mixed precision for ``amp`` in ("none", "bf16", "fp16"); a no-op context for "none"."""
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=amp != "none")


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device | str, amp: str = "none",
             per_image: bool = False) -> dict:
    """``{"top1": %, "top5": %, "loss": mean CE}`` over every image of ``loader`` (top-k capped at the class count).

    Under torchrun each rank passes its own share of the data and the sums are all-reduced, so
    every rank returns the metrics of the whole set. With ``per_image`` the result also holds
    ``"correct"``: a bool CPU tensor, whether each image of this process's ``loader`` (in its order) is
    a top-1 hit (what paired statistics over images need).
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, top-1 hits, top-5 hits, images
    correct = []
    for images, targets in loader:
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(images)
        logits = logits.float()
        hits = logits.topk(min(5, logits.shape[-1]), dim=-1).indices == targets[:, None]
        sums += torch.stack([F.cross_entropy(logits, targets, reduction="sum"), hits[:, 0].sum(),
                             hits.any(dim=-1).sum(), torch.tensor(targets.numel(), device=device)]).double()
        if per_image:
            correct.append(hits[:, 0].cpu())
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums)
    model.train(was_training)
    loss, top1, top5, count = sums.tolist()
    metrics = {"top1": 100.0 * top1 / count, "top5": 100.0 * top5 / count, "loss": loss / count}
    if per_image:
        metrics["correct"] = torch.cat(correct) if correct else torch.zeros(0, dtype=torch.bool)
    return metrics


def test_split_metrics(model: nn.Module, loader: DataLoader, procs, amp: str = "none") -> dict:
    """``evaluate`` on an evaluation split whose strided shares ``loader`` holds on each rank
    (``distributed.shard_loader``), with ``correct``: the top-1 hit of every image of the whole split, as a string
    of 0/1 in the split's order (what the benchmark's paired statistics read)."""
    metrics = evaluate(model.to(procs.device), loader, procs.device, amp, per_image=True)
    shares = procs.all_gather(metrics.pop("correct").tolist())  # rank r holds images r, r + W, r + 2W, ...
    correct = [None] * sum(len(s) for s in shares)
    for r, share in enumerate(shares):
        correct[r::len(shares)] = share
    return dict(metrics, correct="".join("1" if hit else "0" for hit in correct))
