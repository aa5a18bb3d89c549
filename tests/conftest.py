import os
import signal

# Never wait on the Hugging Face hub: set before anything imports huggingface_hub.
os.environ["HF_HUB_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

# A shell without job control starts background commands (`.ci/run &`) with SIGINT ignored, and children inherit
# that: the tests that press Ctrl-C on a tool would then test nothing a terminal user sees. Restore Python's
# handler, which exec resets to the default in every child.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


TINY_AUX = dict(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=32, num_heads=4)


@pytest.fixture
def tiny_aux():
    """A randomly initialized CPU-sized SWS Aux-Net with the default stages (3, 3, 4, 3, 3)."""
    import timm

    import learngene.models  # noqa: F401  (registers the Aux-Nets)

    torch.manual_seed(0)
    return timm.create_model("sws_aux_vit_tiny_patch16_224", **TINY_AUX).eval()


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A real single-node Slurm (tests/slurm_cluster.py) for the session. Skipped where Slurm is not installed,
    unless LEARNGENE_REQUIRE_SLURM=1 (CI), where that is a failure."""
    from slurm_cluster import LocalSlurm, missing_programs

    missing = missing_programs()
    if missing:
        reason = f"Slurm is not installed ({', '.join(missing)} not found): apt-get install slurm-wlm munge"
        if os.environ.get("LEARNGENE_REQUIRE_SLURM") == "1":
            pytest.fail(reason + " (LEARNGENE_REQUIRE_SLURM=1)")
        pytest.skip(reason)
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    cluster.start()
    yield cluster
    cluster.stop()


# The heaviest modules first: a module is one xdist group (below), and pytest-xdist hands groups to workers in
# collection order, so a long module collected last would run alone at the end.
HEAVY_MARKS = ("imagenet_tier", "slurm", "slow")


def pytest_collection_modifyitems(config, items):
    """Group the tests for pytest-xdist's ``--dist loadgroup`` (.ci/run): every test of a module on one worker, so
    that its module-scoped fixtures (a trained Aux-Net, an ImageFolder) are built once, and every test of the real
    Slurm on one worker, which starts one cluster (the ``slurm`` fixture is per session, so per worker). A test
    with its own ``xdist_group`` mark keeps it."""
    group_of, weight_of = {}, {}
    for item in items:
        own = item.get_closest_marker("xdist_group")  # a test that needs no fixture of its module's costly ones
        group = group_of[item] = (own.args[0] if own else "slurm" if "slurm" in item.fixturenames
                                  else item.module.__name__)
        if not own:
            item.add_marker(pytest.mark.xdist_group(group))
        marks = {mark.name for mark in item.iter_markers()}
        weight = next((i for i, mark in enumerate(HEAVY_MARKS) if mark in marks), len(HEAVY_MARKS))
        weight_of[group] = min(weight_of.get(group, weight), weight)
    position = {item: i for i, item in enumerate(items)}
    items.sort(key=lambda item: (weight_of[group_of[item]], position[item]))
