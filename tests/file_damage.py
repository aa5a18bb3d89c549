"""Damage one tensor inside a file on disk, as a bad disk block or a broken copy would: the file still parses."""
from pathlib import Path

import torch


def zero_tensor_bytes(path: Path, tensor: torch.Tensor, count: int | None = None) -> None:
    """Zero the first ``count`` bytes (default all) of ``tensor``'s values where the file stores them."""
    raw = tensor.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    data = bytearray(path.read_bytes())
    start = data.find(raw)
    assert start >= 0 and data.find(raw, start + 1) < 0, "the tensor's bytes must occur exactly once in the file"
    count = len(raw) if count is None else count
    assert any(raw[:count]), "zeroing must change the file"
    data[start:start + count] = bytes(count)
    path.write_bytes(bytes(data))
