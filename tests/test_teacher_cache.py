"""The teacher-logit cache replays the teacher's outputs so that the KD loss matches online distillation."""
import math

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from file_damage import zero_tensor_bytes
from learngene.data import DataConfig
from learngene.distill import soft_kd_loss
from learngene.distill.teacher_cache import TeacherLogitCache, data_config_hash, reconstruct_logits, topk_logprobs
from learngene.errors import LearngeneError

NUM_CLASSES = 10
KEY = dict(teacher="tiny-teacher", data_cfg=DataConfig(name="digits", batch_size=8), seed=0)


def open_cache(root, **overrides):
    return TeacherLogitCache(root, **{**KEY, "num_classes": NUM_CLASSES, "topk": NUM_CLASSES, **overrides})


def record_epoch(cache, batches, teacher, epoch=0):
    with torch.no_grad():
        for step, images in enumerate(batches):
            cache.record(epoch, step, images, teacher(images))
    return cache.finish_epoch(epoch)


@pytest.fixture
def batches():
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(8, 1, 8, 8, generator=generator) for _ in range(3)]


@pytest.mark.parametrize("tau", [1.0, 4.0])
def test_full_k_float32_replays_the_online_kd_loss(tmp_path, tiny_aux, batches, tau):
    """k = C in float32: cached and online KD agree to 1e-6 on every batch of the epoch (model teacher on disk)."""
    cache = open_cache(tmp_path, dtype="float32")
    assert cache.lookup(0, 0, batches[0]) is None  # nothing recorded yet
    path = record_epoch(cache, batches, tiny_aux)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.json", path.name]  # no temporary files left

    student = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, NUM_CLASSES))
    replay = open_cache(tmp_path, dtype="float32")  # a later run opening the same cache
    for step, images in enumerate(batches):
        with torch.no_grad():
            online = soft_kd_loss(student(images), tiny_aux(images), tau)
        cached = soft_kd_loss(student(images), replay.lookup(0, step, images), tau)
        assert cached.item() == pytest.approx(online.item(), rel=1e-6, abs=1e-6)


def test_full_k_float16_is_within_storage_rounding(tmp_path, batches):
    """fp16 log-probabilities are off by at most half an fp16 step (2^-11 relative), which bounds the KD error."""
    generator = torch.Generator().manual_seed(2)
    teacher_logits = [3 * torch.randn(8, NUM_CLASSES, generator=generator) for _ in batches]
    cache = open_cache(tmp_path)
    for step, (images, logits) in enumerate(zip(batches, teacher_logits)):
        cache.record(0, step, images, logits)
    cache.finish_epoch(0)
    for step, (images, logits) in enumerate(zip(batches, teacher_logits)):
        student = torch.randn(8, NUM_CLASSES, generator=generator)
        cached_logits = cache.lookup(0, step, images)
        logprobs = torch.log_softmax(logits, -1)
        # Unit roundoff 2^-11, and half the subnormal step 2^-25 for log-probabilities within 6e-5 of zero.
        assert torch.allclose(cached_logits, logprobs, rtol=2 ** -11, atol=2 ** -25)
        assert not torch.equal(cached_logits, logprobs)  # the rounding is real: the bounds are what is tested
        # Each log p moves by d_i, |d_i| <= eps, and the renormalization by at most eps more; to first order
        # KL(p || q) then moves by sum_i p_i (d_i - c)(log p_i - log q_i), at most 2 eps E_p|log p - log q|.
        eps = 2 ** -11 * logprobs.abs().max().item() + 2 ** -25
        log_q = torch.log_softmax(student, -1)
        bound = 2 * eps * (logprobs.exp() * (logprobs - log_q).abs()).sum(1).mean().item()
        online, cached = soft_kd_loss(student, logits, 1.0), soft_kd_loss(student, cached_logits, 1.0)
        assert abs(cached.item() - online.item()) <= bound


def test_topk_is_exact_when_the_other_classes_are_tied():
    """The rest of the mass is spread evenly, so a teacher whose other logits are all equal is replayed exactly."""
    generator = torch.Generator().manual_seed(3)
    teacher = torch.full((6, 100), -2.0)
    top_classes = torch.randperm(100, generator=generator)[:5]
    teacher[:, top_classes] = 4 * torch.rand(6, 5, generator=generator)  # all above -2
    student = torch.randn(6, 100, generator=generator)
    logits = reconstruct_logits(*topk_logprobs(teacher, 5), num_classes=100)
    assert torch.allclose(logits.softmax(-1), teacher.softmax(-1), atol=1e-7)
    for tau in (1.0, 2.0):
        assert soft_kd_loss(student, logits, tau).item() == pytest.approx(soft_kd_loss(student, teacher, tau).item(),
                                                                          rel=1e-6)


def test_topk_keeps_top_probabilities_and_bounds_the_kd_error():
    """At tau 1, top-k probabilities and the rest mass m are exact; per image the KL moves by at most
    m * (log(C - k) + spread of log q over the other classes)."""
    generator = torch.Generator().manual_seed(4)
    num_classes, k = 100, 10
    teacher = 2.5 * torch.randn(16, num_classes, generator=generator)
    student = torch.randn(16, num_classes, generator=generator)
    values, classes, rest_logmass = topk_logprobs(teacher, k)
    logits = reconstruct_logits(values, classes, rest_logmass, num_classes)
    probs, replayed = teacher.softmax(-1), logits.softmax(-1)
    assert torch.allclose(replayed.gather(1, classes), probs.gather(1, classes), atol=1e-7)
    rest = torch.ones_like(probs, dtype=torch.bool).scatter(1, classes, False)
    rest_mass = (probs * rest).sum(1)
    assert torch.allclose(rest_logmass.exp(), rest_mass, rtol=1e-5)

    log_q = torch.log_softmax(student, -1)
    spread = log_q.masked_fill(~rest, -math.inf).amax(1) - log_q.masked_fill(~rest, math.inf).amin(1)
    bound = (rest_mass * (math.log(num_classes - k) + spread)).mean()
    error = (soft_kd_loss(student, logits, 1.0) - soft_kd_loss(student, teacher, 1.0)).abs()
    assert 0 < error <= bound


@pytest.mark.parametrize("change", [dict(teacher="other-teacher"), dict(seed=1),
                                    dict(data_cfg=DataConfig(name="digits", batch_size=16)), dict(topk=5),
                                    dict(world_size=2)])
def test_a_cache_recorded_under_another_key_is_refused(tmp_path, batches, change):
    record_epoch(open_cache(tmp_path), batches, lambda x: x.flatten(1)[:, :NUM_CLASSES])
    field = next(iter(change)).replace("data_cfg", "data_hash")
    with pytest.raises(LearngeneError, match=f"recorded with {field} "):
        open_cache(tmp_path, **change)


def test_a_cache_moves_to_another_machine_and_loader_setting(tmp_path, batches):
    """Where the files are, how many workers read them and label smoothing change no pixel: the cache replays."""
    teacher = lambda x: x.flatten(1)[:, :NUM_CLASSES]  # noqa: E731
    record_epoch(open_cache(tmp_path), batches, teacher)
    moved = DataConfig(name="digits", batch_size=8, root="/elsewhere", download=True, num_workers=4, smoothing=0.1)
    torch.testing.assert_close(open_cache(tmp_path, data_cfg=moved).lookup(0, 1, batches[1]),
                               torch.log_softmax(teacher(batches[1]), -1), atol=1e-2, rtol=0)
    pixels = [dict(img_size=16), dict(digits_shift=1), dict(train_limit=100), dict(mixup=0.8), dict(val_holdout=0.2)]
    assert len({data_config_hash(DataConfig(name="digits", batch_size=8, **change)) for change in pixels}
               | {data_config_hash(moved)}) == len(pixels) + 1


def test_a_shard_of_another_cache_is_refused(tmp_path, batches):
    path = record_epoch(open_cache(tmp_path / "a"), batches, lambda x: x.flatten(1)[:, :NUM_CLASSES])
    other = open_cache(tmp_path / "b", seed=7)
    path.rename(other.shard_path(0))
    with pytest.raises(LearngeneError, match="recorded with seed 0 \\(now 7\\)"):
        other.lookup(0, 0, batches[0])


def test_a_batch_with_other_pixels_is_refused(tmp_path, batches):
    """Different augmentation draws (here: one image flipped) must not silently get another image's logits."""
    cache = open_cache(tmp_path)
    record_epoch(cache, batches, lambda x: x.flatten(1)[:, :NUM_CLASSES])
    assert cache.lookup(0, 1, batches[1].clone()) is not None
    flipped = batches[1].clone()
    flipped[3] = flipped[3].flip(-1)
    with pytest.raises(LearngeneError, match="1 of 8 images differ"):
        cache.lookup(0, 1, flipped)
    with pytest.raises(LearngeneError, match="holds 3 batches"):
        cache.lookup(0, 3, batches[0])


def test_only_whole_epochs_are_written(tmp_path, batches):
    """A run resumed mid-epoch records from step 1: that epoch is not cached (its first batch would be missing)."""
    cache = open_cache(tmp_path)
    teacher = lambda x: x.flatten(1)[:, :NUM_CLASSES]  # noqa: E731
    for step, images in enumerate(batches[1:], start=1):
        cache.record(0, step, images, teacher(images))
    assert cache.finish_epoch(0) is None
    assert not cache.has_epoch(0)
    assert record_epoch(cache, batches, teacher, epoch=1) == cache.shard_path(1)


def test_a_shard_with_zeroed_logprobs_is_refused(tmp_path, batches):
    """The issue's case: zeroed log-probabilities replay as a uniform-ish teacher unless the checksum catches it."""
    teacher = lambda x: 3 * x.flatten(1)[:, :NUM_CLASSES]  # noqa: E731
    path = record_epoch(open_cache(tmp_path), batches, teacher)
    zero_tensor_bytes(path, load_file(path)["logprobs"])
    with pytest.raises(LearngeneError) as error:
        open_cache(tmp_path).lookup(0, 0, batches[0])
    assert str(error.value) == (f"teacher cache shard {path} is corrupted: its contents no longer match the checksum "
                                "stored when it was written; delete it (the next run records that epoch again)")


def test_a_shard_missing_a_tensor_is_one_line(tmp_path, batches):
    path = record_epoch(open_cache(tmp_path), batches, lambda x: x.flatten(1)[:, :NUM_CLASSES])
    with safe_open(str(path), framework="pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys() if k != "fingerprints"}
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(LearngeneError) as error:
        open_cache(tmp_path).lookup(0, 0, batches[0])
    assert str(error.value) == f"teacher cache shard {path} has no fingerprints: it is not a whole shard; delete it"


def test_topk_above_the_class_count_keeps_every_class(tmp_path, batches):
    """The default k = 10 on a 4-class dataset caches all 4 classes (and a later k = 20 shares that cache)."""
    teacher = lambda x: 3 * x.flatten(1)[:, :4]  # noqa: E731
    cache = open_cache(tmp_path, num_classes=4, topk=10, dtype="float32")
    assert cache.topk == 4 and cache.manifest["topk"] == 4
    record_epoch(cache, batches, teacher)
    replay = open_cache(tmp_path, num_classes=4, topk=20, dtype="float32")
    for step, images in enumerate(batches):
        torch.testing.assert_close(replay.lookup(0, step, images), torch.log_softmax(teacher(images), -1))
    with pytest.raises(LearngeneError, match="topk must be at least 1, got 0"):
        open_cache(tmp_path / "zero", topk=0)
