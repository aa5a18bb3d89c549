"""An opt-in teacher-logit cache (FKD / ReLabel style): run the teacher once, replay its outputs later.

Distilling an Aux-Net runs a large teacher (LeViT-384 for SWS) on every training batch. The teacher is
frozen, so its output on a batch is a function of the batch's pixels alone: record it in one run and
later runs (other Aux-Nets, ablations, a restarted run) can replay it instead of running the teacher.

**What is stored.** One safetensors shard per (epoch, rank), ``epoch0003-rank0of1.safetensors``, with
one row per training image in the order the images were seen (row ``offsets[step] + i`` is image ``i``
of batch ``step``):

* ``logprobs`` (rows, k), float16 by default: the teacher's top-k *log-probabilities*, i.e. its top-k
  logits shifted by their logsumexp. A softmax at any temperature ignores a shift per row, so these are
  as good as the logits, and fp16 stays precise near the top, where the probability mass is.
* ``classes`` (rows, k): the class index of each value (int16, or int32 for more than 32,767 classes).
* ``rest_logmass`` (rows,), float32: log of the probability mass outside the top k (-inf when k = C).
* ``fingerprints`` (rows, 2), float32: two checksums of each input image (below).
* ``offsets`` (steps + 1,): where each batch's rows start.

**Reconstruction.** :func:`reconstruct_logits` gives full logits for the KD loss: the top-k entries
are the stored values, every other class gets ``rest_logmass - log(C - k)``, i.e. the remaining mass
spread evenly (FKD's choice). At temperature 1 the top-k probabilities and the total mass outside them
are then exact; only how that mass is split among the other classes is lost, which changes the KD loss
per image by at most ``m * (log(C - k) + spread of the student's log-probabilities over those classes)``
with ``m`` the mass outside the top k (small for a trained teacher with k = 10 of 1,000). With k = C
nothing is lost but the storage rounding.

**When a cache is valid.** A cached row is the teacher's output on one image of one batch as it was
when recorded. Replaying it is right only if the teacher would now see the identical pixels, which holds
when all of these are unchanged:

1. the teacher and everything that changes its outputs (``teacher``: a string that changes with them;
   the training engine passes a content hash of the teacher's weights and settings);
2. every data setting that changes the pixels of a training batch or the batches' order (``data_cfg`` is
   hashed but for ``learngene.data.factory.NOT_PIXEL_FIELDS``: dataset, image size, batch size, augmentation,
   mixup/cutmix, train limit, ...; not the folder the files are read from, the loader workers or label
   smoothing, so a cache can move to another machine and a resumed run may change its workers);
3. the seed and the epoch order: the sampler order must depend only on (seed, epoch), as
   ``learngene.data.build_loaders`` guarantees;
4. the random draws of the augmentations and of Mixup/CutMix: the training engine makes them independent of
   the student (its init, its drop path) by drawing each image's augmentation from (seed, epoch, image index)
   (``learngene.data.seeded``) and Mixup/CutMix from (seed, epoch, step) (``learngene.engine.state``);
5. the number of processes and this process's rank.

The key of 1-3 and 5 (the ``teacher`` string, data config hash, seed, world size; plus k, storage dtype
and number of classes) is recorded in ``cache.json`` and in every shard; a cache opened with another
key, or a shard that does not belong to it, is refused with a :class:`LearngeneError`. The cache trusts
the ``teacher`` string: two teachers given the same string share a cache. Condition 4 cannot be keyed,
so every replayed batch is checked against its recorded fingerprints (a plain sum and a fixed random
weighting of each image's pixels): a batch with other pixels is refused instead of silently training on
another image's targets. An epoch is cached only when it was recorded whole, from its first step.

**Integrity.** Every shard stores the sha256 of its tensors (``learngene.checkpoint.payload_checksum``),
checked when the shard is loaded: a shard damaged on disk, or missing a tensor, is refused with one
line saying to delete it (the next run records that epoch again).

**k.** ``topk`` larger than the number of classes keeps every class (k = C, nothing lost but the
storage rounding), so the default k = 10 also works on datasets with fewer classes.

Training loops use it as (see also ``tools/bench_speed.py``)::

    teacher_logits = cache.lookup(epoch, step, images)
    if teacher_logits is None:  # not cached yet: run the teacher and record its outputs
        with torch.no_grad():
            teacher_logits = teacher(images)
        cache.record(epoch, step, images, teacher_logits)
    ...
    cache.finish_epoch(epoch)  # after the epoch's last step: writes the shard
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from learngene.checkpoint import (CHECKSUM_KEY, atomic_path, atomic_write_text, check_checksum, json_digest,
                                  payload_checksum)
from learngene.data.factory import NOT_PIXEL_FIELDS
from learngene.errors import LearngeneError

CACHE_FORMAT = "learngene-teacher-cache/v3"  # v2: shards carry a checksum; v3: data hash without NOT_PIXEL_FIELDS
MANIFEST_NAME = "cache.json"
STORAGE_DTYPES = {"float16": torch.float16, "float32": torch.float32}
SHARD_TENSORS = ("logprobs", "classes", "rest_logmass", "fingerprints", "offsets")


def data_config_hash(data_cfg) -> str:
    """A short hash of the fields of a data config (a dataclass or a mapping) that change the training batches'
    pixels or order: all but ``NOT_PIXEL_FIELDS`` (where the files are, how they are read, label smoothing)."""
    fields = dataclasses.asdict(data_cfg) if dataclasses.is_dataclass(data_cfg) else dict(data_cfg)
    return json_digest({k: v for k, v in fields.items() if k not in NOT_PIXEL_FIELDS})


def topk_logprobs(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(values, classes, rest_logmass)``: the top-k log-probabilities of each row and the log of the mass left."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    values, classes = logprobs.topk(k, dim=-1)
    if k == logits.shape[-1]:
        return values, classes, values.new_full(values.shape[:-1], -math.inf)
    # logsumexp over the other classes, not log(1 - sum(top-k)), which cancels badly for a confident teacher.
    rest_logmass = logprobs.scatter(-1, classes, -math.inf).logsumexp(dim=-1)
    return values, classes, rest_logmass


def reconstruct_logits(values: torch.Tensor, classes: torch.Tensor, rest_logmass: torch.Tensor,
                       num_classes: int) -> torch.Tensor:
    """Full float32 logits (as log-probabilities): stored top-k values, the rest of the mass spread evenly."""
    num_rest = max(num_classes - values.shape[-1], 1)  # with k = C the fill (-inf) is overwritten everywhere
    fill = (rest_logmass.float() - math.log(num_rest)).unsqueeze(-1)
    logits = fill.expand(*values.shape[:-1], num_classes).clone()
    return logits.scatter_(-1, classes.long(), values.float())


@functools.lru_cache(maxsize=8)
def _fingerprint_weights(num_values: int, device: torch.device) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(num_values, generator=generator).to(device)


def input_fingerprints(images: torch.Tensor) -> torch.Tensor:
    """(batch, 2) float32 checksums of each image: its pixel sum and a fixed random weighting of its pixels.

    Elementwise products, not a matmul, so TF32 matmul settings cannot change the result.
    """
    pixels = images.detach().flatten(1).float()
    weights = _fingerprint_weights(pixels.shape[1], pixels.device)
    return torch.stack([pixels.sum(1), (pixels * weights).sum(1)], dim=1)


def fingerprints_match(recorded: torch.Tensor, current: torch.Tensor, num_values: int) -> torch.Tensor:
    """Per-image bool: equal up to float32 summation noise (record and replay may run on different devices)."""
    tolerance = 1e-3 * math.sqrt(num_values) + 1e-4 * recorded.abs()
    return ((recorded - current).abs() <= tolerance).all(dim=1)


class TeacherLogitCache:
    """Teacher top-k outputs on disk under ``root``, keyed by teacher, data config, seed and world size.

    ``lookup`` returns replayed logits for a batch of an epoch whose shard exists (else None); ``record``
    collects the teacher's outputs of an epoch being recorded; ``finish_epoch`` writes that epoch's shard.
    ``topk`` is clamped to ``num_classes`` (k = C keeps every class).
    """

    def __init__(self, root: str | os.PathLike, *, teacher: str, data_cfg, seed: int, num_classes: int,
                 topk: int = 10, dtype: str = "float16", rank: int = 0, world_size: int = 1):
        if topk < 1:
            raise LearngeneError(f"teacher cache topk must be at least 1, got {topk}: set distill.teacher_cache_topk")
        topk = min(topk, num_classes)
        if dtype not in STORAGE_DTYPES:
            raise LearngeneError(f"teacher cache dtype {dtype!r} is not one of {', '.join(STORAGE_DTYPES)}")
        if not 0 <= rank < world_size:
            raise LearngeneError(f"rank {rank} is outside world size {world_size}")
        self.root = Path(root)
        self.rank = rank
        self.num_classes = num_classes
        self.topk = topk
        self.dtype = STORAGE_DTYPES[dtype]
        self.manifest = dict(format=CACHE_FORMAT, teacher=teacher, data_hash=data_config_hash(data_cfg), seed=seed,
                             world_size=world_size, num_classes=num_classes, topk=topk, dtype=dtype)
        self._check_or_write_manifest()
        self._loaded: tuple[int, dict[str, torch.Tensor], list[int]] | None = None  # (epoch, tensors, offsets)
        self._recording: tuple[int, list[tuple[torch.Tensor, ...]]] | None = None  # (epoch, rows of each step)

    def _check_or_write_manifest(self) -> None:
        path = self.root / MANIFEST_NAME
        if not path.exists():
            atomic_write_text(json.dumps(self.manifest, indent=2) + "\n", path)
            return
        try:
            recorded = json.loads(path.read_text())
        except (OSError, ValueError):
            raise LearngeneError(f"{path} is not a teacher-cache manifest: delete {self.root} or use another "
                                 "cache folder") from None
        self._check_same(recorded, str(path))

    def _check_same(self, recorded: dict, where: str) -> None:
        differ = [f"{k} {recorded.get(k)!r} (now {v!r})" for k, v in self.manifest.items() if recorded.get(k) != v]
        if differ:
            raise LearngeneError(f"teacher cache {where} was recorded with {', '.join(differ)}: its logits are not "
                                 f"valid for this run; use another cache folder or delete {self.root}")

    def shard_path(self, epoch: int) -> Path:
        return self.root / f"epoch{epoch:04d}-rank{self.rank}of{self.manifest['world_size']}.safetensors"

    def has_epoch(self, epoch: int) -> bool:
        return self.shard_path(epoch).is_file()

    def lookup(self, epoch: int, step: int, images: torch.Tensor) -> torch.Tensor | None:
        """Replayed teacher logits (float32, on ``images.device``) for batch ``step`` of ``epoch``, or None."""
        if self._loaded is None or self._loaded[0] != epoch:
            if not self.has_epoch(epoch):
                return None
            self._loaded = (epoch, *self._load_shard(epoch, images.device))
        _, shard, offsets = self._loaded
        if step + 1 >= len(offsets):
            raise LearngeneError(f"teacher cache {self.shard_path(epoch)} holds {len(offsets) - 1} batches, asked "
                                 f"for batch {step}: the data settings changed; use another cache folder")
        rows = slice(offsets[step], offsets[step + 1])
        if images.shape[0] != rows.stop - rows.start:
            raise LearngeneError(f"teacher cache batch {step} of epoch {epoch} has {rows.stop - rows.start} images, "
                                 f"this one {images.shape[0]}: the data settings changed; use another cache folder")
        matches = fingerprints_match(shard["fingerprints"][rows], input_fingerprints(images), images[0].numel())
        if not bool(matches.all()):
            raise LearngeneError(
                f"teacher cache batch {step} of epoch {epoch}: {int((~matches).sum())} of {images.shape[0]} images "
                "differ from the recorded ones, so the augmentation draws changed (see 'When a cache is valid' in "
                "learngene/distill/teacher_cache.py); use another cache folder or delete it")
        return reconstruct_logits(shard["logprobs"][rows], shard["classes"][rows], shard["rest_logmass"][rows],
                                  self.num_classes)

    def _load_shard(self, epoch: int, device: torch.device) -> tuple[dict[str, torch.Tensor], list[int]]:
        path = self.shard_path(epoch)
        try:
            with safe_open(str(path), framework="pt", device=str(device)) as f:
                metadata = f.metadata() or {}
                self._check_same(json.loads(metadata.get("manifest", "{}")), str(path))
                shard = {k: f.get_tensor(k) for k in f.keys()}
        except (SafetensorError, OSError, ValueError):
            raise LearngeneError(f"teacher cache shard {path} is truncated or not a shard: delete it") from None
        missing = [name for name in SHARD_TENSORS if name not in shard]
        missing += [] if CHECKSUM_KEY in metadata else [f"{CHECKSUM_KEY} metadata"]
        if missing:
            raise LearngeneError(f"teacher cache shard {path} has no {', '.join(missing)}: it is not a whole shard; "
                                 "delete it")
        check_checksum(path, "teacher cache shard", metadata[CHECKSUM_KEY], shard,
                       "delete it (the next run records that epoch again)")
        return shard, shard.pop("offsets").tolist()

    def record(self, epoch: int, step: int, images: torch.Tensor, teacher_logits: torch.Tensor) -> None:
        """Keep the top-k of the teacher's outputs for batch ``step``; steps must come in order from 0."""
        recording = self._recording
        if step == 0:
            recording = self._recording = (epoch, [])
        elif recording is None or recording[0] != epoch or len(recording[1]) != step:
            # Started mid-epoch (a resumed run) or skipped a batch: this epoch cannot be cached whole.
            self._recording = None
            return
        values, classes, rest_logmass = topk_logprobs(teacher_logits.detach(), self.topk)
        class_dtype = torch.int16 if self.num_classes <= torch.iinfo(torch.int16).max else torch.int32
        recording[1].append((values.to(self.dtype), classes.to(class_dtype), rest_logmass,
                             input_fingerprints(images)))

    def finish_epoch(self, epoch: int) -> Path | None:
        """Write the shard of ``epoch`` if it was recorded whole; return its path (None when nothing was written)."""
        if self._recording is None or self._recording[0] != epoch:
            return None
        steps = self._recording[1]
        self._recording = None
        names = ("logprobs", "classes", "rest_logmass", "fingerprints")
        shard = {name: torch.cat([s[i] for s in steps]).cpu().contiguous() for i, name in enumerate(names)}
        sizes = torch.tensor([0] + [len(s[0]) for s in steps])
        shard["offsets"] = sizes.cumsum(0)
        path = self.shard_path(epoch)
        metadata = {"manifest": json.dumps(self.manifest), CHECKSUM_KEY: payload_checksum(shard)}
        with atomic_path(path) as tmp:
            save_file(shard, str(tmp), metadata=metadata)
        return path
