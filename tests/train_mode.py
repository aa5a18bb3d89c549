"""A check shared by the Aux-Net tests: two models are the same function in train mode, drop path included."""
import torch


def assert_same_train_mode_function(aux, des, x: torch.Tensor) -> None:
    """``aux`` and ``des`` give the same outputs under the same seed (drop path draws alike), the same seed gives the
    same outputs again, and another seed other outputs (drop path does draw)."""
    outputs = []
    for model in (aux, des, aux):
        torch.manual_seed(1)
        with torch.no_grad():
            outputs.append(model(x))
    torch.testing.assert_close(outputs[1], outputs[0], atol=1e-5, rtol=0)
    assert torch.equal(outputs[2], outputs[0])
    torch.manual_seed(2)
    with torch.no_grad():
        assert not torch.allclose(aux(x), outputs[0], atol=1e-3)  # drop path does draw: another seed, other logits
