"""torch.compile (inductor, on CPU here) gives the eager Aux-Net's logits, shared blocks included."""
import pytest
import timm
import torch

import learngene.models  # noqa: F401  (registers the Aux-Nets)
from conftest import TINY_AUX


def compile_unavailable() -> str:
    """Why torch.compile cannot run here ("" when it can)."""
    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile is not supported on this Python/platform"
    try:  # inductor builds CPU kernels with a C++ compiler
        from torch._inductor.cpp_builder import get_cpp_compiler
        get_cpp_compiler()
    except Exception as e:  # torch raises its own error types when no compiler is found
        return f"inductor finds no C++ compiler ({type(e).__name__})"
    return ""


@pytest.mark.slow
@pytest.mark.skipif(bool(compile_unavailable()), reason=compile_unavailable())
def test_compiled_aux_net_matches_eager_logits():
    from torch._inductor import config as inductor_config

    torch.manual_seed(0)
    # Two stages, the first block applied twice: a shared block is traced once per application.
    model = timm.create_model("sws_aux_vit_tiny_patch16_224", stage_sizes=(2, 1), **TINY_AUX).eval()
    images = torch.randn(4, 1, 8, 8)
    # One compile thread: starting inductor's worker pool costs more than this model's few kernels.
    with torch.no_grad(), inductor_config.patch(compile_threads=1):
        compiled = torch.compile(model, fullgraph=True)(images)  # fullgraph: no graph breaks in the Aux-Net
        eager = model(images)
    assert compiled.shape == (4, 10)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
