import os

# Never wait on the Hugging Face hub: set before anything imports huggingface_hub.
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


TINY_AUX = dict(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=32, num_heads=4)


@pytest.fixture
def tiny_aux():
    """A randomly initialized CPU-sized SWS Aux-Net with the default stages (3, 3, 4, 3, 3)."""
    import timm

    import learngene.models  # noqa: F401  (registers the Aux-Nets)

    torch.manual_seed(0)
    return timm.create_model("sws_aux_vit_tiny_patch16_224", **TINY_AUX).eval()
