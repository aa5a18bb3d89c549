"""Weight selection (IMwLM) on timm ViT, ConvNeXt and ResNet state dicts."""
import numpy as np
import pytest
import timm
import torch

from learngene.baselines import select_weights, uniform_indices
from learngene.baselines.weight_selection import ELEMENT_SELECTIONS
from learngene.errors import LearngeneError

# vit_small / vit_tiny widths (384 / 192, 6 / 3 heads of 64) on tiny images, few blocks.
VIT = dict(img_size=32, patch_size=8, num_classes=10)


def vit(name="vit_small_patch16_224", seed=0, **kwargs):
    torch.manual_seed(seed)
    return timm.create_model(name, **{**VIT, **kwargs})


def released_rule(parent: np.ndarray, child_shape) -> np.ndarray:
    """Independent re-implementation of the authors' uniform element selection (after their PR #8)."""
    out = parent
    for axis, (n_parent, n_child) in enumerate(zip(parent.shape, child_shape)):
        if n_parent % n_child == 0:
            idx = np.arange(n_child) * (n_parent // n_child)
        else:
            idx = np.round(np.linspace(0, n_parent - 1, n_child)).astype(np.int64)
        out = np.take(out, idx, axis=axis)
    return out


def index_coded(state):
    """Same keys and shapes, every tensor holding its own flat element index (exact in float32)."""
    return {k: torch.arange(v.numel(), dtype=torch.float32).reshape(v.shape) for k, v in state.items()}


def selected_axes(parent_shape, child: torch.Tensor) -> list[torch.Tensor]:
    """Recover the per-axis parent indices from a selection of an index-coded tensor, checking it is separable."""
    coords = torch.unravel_index(child.long(), tuple(parent_shape))
    axes = []
    for axis in range(child.dim()):
        corner = tuple(slice(None) if a == axis else 0 for a in range(child.dim()))
        axes.append(coords[axis][corner])
    expected = torch.arange(int(np.prod(parent_shape))).reshape(parent_shape)
    for axis, idx in enumerate(axes):
        expected = expected.index_select(axis, idx)
    assert torch.equal(expected, child.long())
    return axes


def test_uniform_matches_released_rule_on_every_key():
    parent, child = vit(depth=3).state_dict(), vit("vit_tiny_patch16_224", seed=1, depth=2).state_dict()
    selected = select_weights(parent, child)
    assert list(selected) == list(child)
    for key, value in selected.items():
        assert value.shape == child[key].shape and value.dtype == child[key].dtype, key
        if "head" in key:
            assert torch.equal(value, child[key]), key
        else:
            expected = released_rule(parent[key].numpy(), tuple(child[key].shape))
            np.testing.assert_array_equal(value.numpy(), expected, err_msg=key)


@pytest.mark.parametrize("n_parent,n_child", [(384, 320), (1152, 960), (1536, 1280), (7, 3), (5, 5)])
def test_uniform_indices_stay_in_range(n_parent, n_child):
    idx = uniform_indices(n_parent, n_child)
    assert idx.dtype == torch.long and len(idx) == n_child
    assert idx[0] == 0 and idx.max() <= n_parent - 1
    assert bool((idx[1:] > idx[:-1]).all())


def test_non_divisible_widths_select_in_range():
    # 384 -> 320 gives the fused qkv 1152 -> 960 and MLP 1536 -> 1280 cases the released code once got wrong.
    parent = vit(depth=2).state_dict()
    child = vit(depth=2, embed_dim=320, num_heads=5).state_dict()
    selected = select_weights(index_coded(parent), child)
    qkv = selected_axes(parent["blocks.0.attn.qkv.weight"].shape, selected["blocks.0.attn.qkv.weight"])
    assert torch.equal(qkv[0], uniform_indices(1152, 960)) and qkv[0].max() == 1151
    fc1 = selected_axes(parent["blocks.1.mlp.fc1.weight"].shape, selected["blocks.1.mlp.fc1.weight"])
    assert torch.equal(fc1[0], uniform_indices(1536, 1280)) and torch.equal(fc1[1], uniform_indices(384, 320))


def axis_sets(parent, child, selected):
    """{(n_parent, n_child): set of index tuples seen on axes of that size pair} over all selected tensors."""
    sets = {}
    for key, value in selected.items():
        if "head" in key:
            continue
        for axis, idx in enumerate(selected_axes(parent[key].shape, value)):
            pair = (parent[key].shape[axis], child[key].shape[axis])
            sets.setdefault(pair, set()).add(tuple(idx.tolist()))
    return sets


def test_random_selection_is_consistent_across_tensors():
    parent, child = index_coded(vit(depth=2).state_dict()), vit("vit_tiny_patch16_224", depth=2).state_dict()
    selected = select_weights(parent, child, elements="random", seed=3)
    # one index set per size pair: e.g. the embedding axis of patch embed, pos embed, norms, qkv, proj, fc1, fc2
    sets = axis_sets(parent, child, selected)
    assert all(len(s) == 1 for s in sets.values()), {p: len(s) for p, s in sets.items()}
    embed = next(iter(sets[(384, 192)]))
    assert embed != tuple(range(192)) and embed != tuple(uniform_indices(384, 192).tolist())
    assert torch.equal(selected["pos_embed"], select_weights(parent, child, elements="random", seed=3)["pos_embed"])
    assert not torch.equal(selected["pos_embed"], select_weights(parent, child, elements="random", seed=4)["pos_embed"])


def test_random_inconsistent_draws_per_tensor():
    parent, child = index_coded(vit(depth=2).state_dict()), vit("vit_tiny_patch16_224", depth=2).state_dict()
    sets = axis_sets(parent, child, select_weights(parent, child, elements="random-inconsistent", seed=3))
    assert len(sets[(384, 192)]) > 10


def test_consecutive_takes_the_first_slices_of_each_qkv_part():
    parent, child = index_coded(vit(depth=2).state_dict()), vit("vit_tiny_patch16_224", depth=2).state_dict()
    sets = axis_sets(parent, child, select_weights(parent, child, elements="consecutive"))
    first_of_each_part = tuple(part * 384 + i for part in range(3) for i in range(192))  # q, k, v: 192 of 384 each
    assert sets.pop((1152, 576)) == {first_of_each_part}
    assert sets == {pair: {tuple(range(pair[1]))} for pair in sets}


def decode_attention(parent_width, selected, block=0):
    """Where each element of an index-coded parent's attention came from.

    Returns ``(qkv_rows, qkv_inputs, bias_rows, proj_outputs, proj_inputs)``, each a LongTensor of parent positions:
    a qkv row is ``part * parent_width + channel`` (timm's fused q, k, v blocks, channel = head * head_dim + dim).
    """
    d = parent_width
    qkv_rows, qkv_inputs = selected_axes((3 * d, d), selected[f"blocks.{block}.attn.qkv.weight"])
    (bias_rows,) = selected_axes((3 * d,), selected[f"blocks.{block}.attn.qkv.bias"])
    proj_outputs, proj_inputs = selected_axes((d, d), selected[f"blocks.{block}.attn.proj.weight"])
    return qkv_rows, qkv_inputs, bias_rows, proj_outputs, proj_inputs


@pytest.mark.parametrize("elements", ELEMENT_SELECTIONS)
@pytest.mark.parametrize("head_aware", [False, True])
@pytest.mark.parametrize("child_args", [dict(embed_dim=192, num_heads=3), dict(embed_dim=320, num_heads=5),
                                        dict(embed_dim=96, num_heads=3)])
def test_qkv_provenance_for_every_element_rule(elements, head_aware, child_args):
    """Every child q, k, v row comes from the parent's q, k, v part, with one channel set shared by the three parts
    and by proj's input axis (per tensor under random-inconsistent); the released uniform rule stays as released."""
    parent = index_coded(vit(depth=2).state_dict())  # 384 wide, 6 heads of 64
    child = vit(depth=2, **child_args).state_dict()
    child_width, child_heads = child_args["embed_dim"], child_args["num_heads"]
    selected = select_weights(parent, child, elements=elements, seed=7, head_aware=head_aware,
                              num_heads=(6, child_heads))
    for block in range(2):
        qkv_rows, qkv_inputs, bias_rows, proj_outputs, proj_inputs = decode_attention(384, selected, block)
        if elements == "uniform" and not head_aware:  # the released rule, bit for bit
            for suffix in ("qkv.weight", "qkv.bias", "proj.weight"):
                key = f"blocks.{block}.attn.{suffix}"
                np.testing.assert_array_equal(selected[key].numpy(), released_rule(parent[key].numpy(),
                                                                                   tuple(child[key].shape)))
            continue
        part, channel = qkv_rows // 384, qkv_rows % 384
        assert torch.equal(part, torch.arange(3 * child_width) // child_width)  # child q, k, v <- parent q, k, v
        q, k, v = channel.view(3, child_width)
        assert torch.equal(q, k) and torch.equal(k, v)  # child channel i reads one parent channel in q, k and v
        assert len(set(q.tolist())) == child_width
        if head_aware:  # and each child head reads one parent head
            parent_head = q.view(child_heads, -1) // 64
            assert bool((parent_head == parent_head[:, :1]).all())
        if elements == "random-inconsistent":  # the ablation: a fresh set for every tensor
            continue
        embed = selected_axes(parent["norm.weight"].shape, selected["norm.weight"])[0]
        assert torch.equal(bias_rows, qkv_rows) and torch.equal(proj_inputs, v)  # proj reads v's channels
        assert torch.equal(qkv_inputs, embed) and torch.equal(proj_outputs, embed)  # the residual stream's set
        if elements == "consecutive" and not head_aware:
            assert q.tolist() == list(range(child_width))
        if elements == "random" and not head_aware:
            assert torch.equal(q, embed)  # one logical dimension, one random set


@pytest.mark.parametrize("elements", ["uniform", "consecutive", "random"])
@pytest.mark.parametrize("child_args,child_heads", [(dict(embed_dim=192, num_heads=3), 3),
                                                    (dict(embed_dim=96, num_heads=3), 3)])
def test_head_aware_keeps_each_child_head_in_one_parent_head(elements, child_args, child_heads):
    parent = index_coded(vit(depth=1).state_dict())  # 6 heads of 64
    child = vit(depth=1, **child_args).state_dict()
    selected = select_weights(parent, child, elements=elements, seed=5, head_aware=True, num_heads=(6, child_heads))
    dim, child_dim = 384, child_args["embed_dim"]
    head_dim = child_dim // child_heads
    rows, embed_in = selected_axes((3 * dim, dim), selected["blocks.0.attn.qkv.weight"])
    (bias_rows,) = selected_axes((3 * dim,), selected["blocks.0.attn.qkv.bias"])
    embed_out, proj_in = selected_axes((dim, dim), selected["blocks.0.attn.proj.weight"])
    assert torch.equal(rows, bias_rows) and torch.equal(embed_in, embed_out)
    part, within = rows // dim, rows % dim
    assert torch.equal(part, torch.arange(3 * child_dim) // child_dim)  # q, k, v rows stay q, k, v rows
    q, k, v = within.view(3, child_heads, head_dim)  # parent position of each child head's dims
    assert torch.equal(q, k) and torch.equal(q, v)
    parent_head = q // 64
    assert bool((parent_head == parent_head[:, :1]).all())  # one parent head per child head
    assert len(set(parent_head[:, 0].tolist())) == child_heads
    assert torch.equal(proj_in, q.flatten())  # proj reads the same heads and dims


def test_plain_uniform_mixes_heads():
    parent = index_coded(vit(depth=1).state_dict())
    selected = select_weights(parent, vit("vit_tiny_patch16_224", depth=1).state_dict())
    rows, _ = selected_axes((1152, 384), selected["blocks.0.attn.qkv.weight"])
    assert len(set((rows[:64] // 64).tolist())) == 2  # child head 0 takes rows of parent heads 0 and 1


@pytest.mark.parametrize("layers,expected", [("first", [0, 1, 2]), ("last", [3, 4, 5]), ("mid", [1, 2, 3]),
                                             ("uniform", [0, 2, 4])])
def test_layer_selection(layers, expected):
    parent = vit(depth=6, embed_dim=32, num_heads=2).state_dict()
    child = vit(depth=3, embed_dim=32, num_heads=2).state_dict()
    selected = select_weights(parent, child, layers=layers)
    for i, source in enumerate(expected):
        assert torch.equal(selected[f"blocks.{i}.mlp.fc1.weight"], parent[f"blocks.{source}.mlp.fc1.weight"])
    assert torch.equal(selected["patch_embed.proj.weight"], parent["patch_embed.proj.weight"])


def test_convnext_selection_loads_strict():
    torch.manual_seed(0)
    parent = timm.create_model("convnext_atto", depths=(2, 2, 3, 2), dims=(32, 64, 128, 256), num_classes=10)
    child = timm.create_model("convnext_atto", depths=(1, 1, 2, 1), dims=(16, 32, 64, 128), num_classes=10)
    selected = select_weights(parent.state_dict(), child.state_dict())
    child.load_state_dict(selected, strict=True)
    expected = released_rule(parent.state_dict()["stages.2.blocks.1.mlp.fc1.weight"].numpy(), (256, 64, 1, 1))
    np.testing.assert_array_equal(child.stages[2].blocks[1].mlp.fc1.weight.detach().numpy(), expected)
    assert torch.equal(selected["head.norm.weight"], child.state_dict()["head.norm.weight"])  # "head": own init
    assert child(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_resnet_selection_loads_strict():
    torch.manual_seed(0)
    parent = timm.create_model("resnet18", layers=(3, 4, 2, 2), channels=(32, 64, 128, 256), stem_width=32,
                               num_classes=10)
    child = timm.create_model("resnet18", layers=(2, 2, 1, 1), channels=(16, 32, 64, 128), stem_width=16,
                              num_classes=10)
    parent_state = parent.state_dict()
    selected = select_weights(parent_state, child.state_dict(), layers="uniform")
    child.load_state_dict(selected, strict=True)
    expected = released_rule(parent_state["layer2.2.conv1.weight"].numpy(), (32, 32, 3, 3))  # 4 -> 2: blocks 0, 2
    np.testing.assert_array_equal(selected["layer2.1.conv1.weight"].numpy(), expected)
    assert child.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(LearngeneError, match="layer selection 'last' maps layer1.0.conv1.weight to layer1.1"):
        select_weights(parent_state, child.state_dict(), layers="last")


def test_errors_name_the_problem():
    small = vit(depth=2).state_dict()
    with pytest.raises(LearngeneError, match="cannot deepen"):
        select_weights(small, vit("vit_tiny_patch16_224", depth=3).state_dict())
    with pytest.raises(LearngeneError, match="wider than the parent"):
        select_weights(small, vit(depth=2, embed_dim=512, num_heads=8).state_dict())
    convnext = timm.create_model("convnext_atto", depths=(1, 1, 1, 1), dims=(8, 16, 32, 64)).state_dict()
    with pytest.raises(LearngeneError, match="family"):
        select_weights(convnext, vit("vit_tiny_patch16_224", depth=1).state_dict())
    with pytest.raises(LearngeneError, match="unknown element selection"):
        select_weights(small, small, elements="sideways")
    with pytest.raises(LearngeneError, match="unknown layer selection"):
        select_weights(small, small, layers="top")
    with pytest.raises(LearngeneError, match="num_heads"):
        select_weights(small, small, head_aware=True)
    with pytest.raises(LearngeneError, match="head_aware"):
        select_weights(convnext, convnext, head_aware=True, num_heads=(1, 1))


def test_select_head_selects_the_classifier_like_every_layer():
    """Off (the released rule) the classifier keeps the child's init, at chance before training; on, it is selected
    like every other layer: every class, the rule's embedding channels, so the child's features meet the weights
    that read them. A parent with other classes is refused."""
    parent, child = vit().state_dict(), vit("vit_tiny_patch16_224", seed=1).state_dict()
    kept = select_weights(parent, child)
    assert torch.equal(kept["head.weight"], child["head.weight"]) and torch.equal(kept["head.bias"], child["head.bias"])
    selected = select_weights(parent, child, select_head=True)
    assert torch.equal(selected["head.weight"], parent["head.weight"][:, uniform_indices(384, 192)])
    assert torch.equal(selected["head.bias"], parent["head.bias"])
    assert torch.equal(selected["norm.weight"], kept["norm.weight"])  # the rest is unchanged
    other = vit("vit_tiny_patch16_224", num_classes=100).state_dict()
    with pytest.raises(LearngeneError, match="select_head needs a parent with the child's classes: head.weight has 10"):
        select_weights(parent, other, select_head=True)


@pytest.mark.parametrize("head_aware", [False, True])
def test_class_token_parent_selects_a_pooled_child(tmp_path, head_aware):
    """timm's ViT-L (class token, final norm) is the ImageNet benchmark's parent of the pooled SWS Des-B."""
    from learngene.checkpoint import save_model_folder
    from learngene.methods import init_weight_selection

    parent = vit(depth=3)  # class token, token pooling: norm before the head, no fc_norm
    save_model_folder(parent, tmp_path / "parent", preprocessing=None, model_args=dict(VIT, depth=3))
    pooled = dict(VIT, embed_dim=192, num_heads=3, class_token=False, global_pool="avg")  # fc_norm, no norm
    init = init_weight_selection(str(tmp_path / "parent"), depth=2, model="vit_tiny_patch16_224", model_args=pooled,
                                 head_aware=head_aware)
    p, state, embed = parent.state_dict(), init.state_dict, uniform_indices(384, 192)
    assert torch.equal(state["pos_embed"], p["pos_embed"][:, 1:, embed])  # the patch positions, not the token's
    assert torch.equal(state["fc_norm.weight"], p["norm.weight"][embed])
    assert torch.equal(state["fc_norm.bias"], p["norm.bias"][embed])
    assert torch.equal(state["blocks.1.mlp.fc2.bias"], p["blocks.1.mlp.fc2.bias"][embed])
    timm.create_model("vit_tiny_patch16_224", **pooled, depth=2).load_state_dict(state)  # strict: every key, no extra
