import pytest
import timm
import torch

import learngene.models  # noqa: F401  (registers the Aux-Nets)
from learngene.errors import LearngeneError
from learngene.expand import expand_sws, load_expanded


def test_each_stage_is_one_registered_block(tiny_aux):
    assert tiny_aux.stage_sizes == (3, 3, 4, 3, 3)
    assert tiny_aux.layer_stages == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    state = tiny_aux.state_dict()
    assert sorted({k.split(".")[1] for k in state if k.startswith("stages.")}) == ["0", "1", "2", "3", "4"]
    # One copy per stage: no aliased tensors for safetensors or EMA to trip over.
    assert len({t.data_ptr() for t in state.values()}) == len(state)
    one_block = sum(p.numel() for p in tiny_aux.stages[0].parameters())
    rest = sum(p.numel() for n, p in tiny_aux.named_parameters() if not n.startswith("stages."))
    assert sum(p.numel() for p in tiny_aux.parameters()) == 5 * one_block + rest


def test_shared_block_gets_summed_gradient_of_its_layers(tiny_aux):
    # The same function with every applied layer unshared: timm's ViT with the Aux-Net's own layout.
    des = timm.create_model("vit_tiny_patch16_224", **tiny_aux.des_model_args(16)).eval()
    load_expanded(des, expand_sws(tiny_aux.state_dict(), tiny_aux.layer_stages))
    x = torch.randn(2, 1, 8, 8)
    tiny_aux(x).sum().backward()
    des(x).sum().backward()
    for stage, layers in [(0, [0, 1, 2]), (2, [6, 7, 8, 9]), (4, [13, 14, 15])]:
        for name, param in tiny_aux.stages[stage].named_parameters():
            summed = sum(des.blocks[i].get_parameter(name).grad for i in layers)
            torch.testing.assert_close(param.grad, summed, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("size,dim,heads", [("tiny", 192, 3), ("small", 384, 6), ("base", 768, 12)])
def test_registered_widths(size, dim, heads):
    model = timm.create_model(f"sws_aux_vit_{size}_patch16_224", img_size=32, num_classes=0)
    assert (model.embed_dim, model.num_heads, model.patch_embed.patch_size) == (dim, heads, (16, 16))
    assert model.stages[0].attn.qkv.weight.shape == (3 * dim, dim)


def test_custom_stage_sizes_and_bad_ones():
    model = timm.create_model("sws_aux_vit_tiny_patch16_224", img_size=8, patch_size=2, in_chans=1, num_classes=3,
                              embed_dim=16, num_heads=2, stage_sizes=(1, 2))
    assert model.layer_stages == [0, 1, 1]
    assert model(torch.randn(1, 1, 8, 8)).shape == (1, 3)
    for bad in [(), (3, 0), (2, -1)]:
        with pytest.raises(LearngeneError, match="stage_sizes"):
            timm.create_model("sws_aux_vit_tiny_patch16_224", img_size=8, patch_size=2, stage_sizes=bad)


def test_drop_path_rates_follow_applied_layers():
    model = timm.create_model("sws_aux_vit_tiny_patch16_224", img_size=8, patch_size=2, embed_dim=16, num_heads=2,
                              drop_path_rate=0.1)
    assert len(model.layer_drop_path) == 16
    assert model.layer_drop_path[0] == 0.0 and model.layer_drop_path[-1] == pytest.approx(0.1)


@pytest.mark.parametrize("name, scales", [
    # timm's layer decay: stem, then the learngene layers in depth order, fc_norm with the last of them, head at 1.
    ("sws_aux_vit_tiny_patch16_224", {"pos_embed": 0.5 ** 6, "patch_embed": 0.5 ** 6, "stages.0": 0.5 ** 5,
                                      "stages.1": 0.5 ** 4, "stages.2": 0.5 ** 3, "stages.3": 0.5 ** 2,
                                      "stages.4": 0.5, "fc_norm": 0.5, "head": 1.0}),
    ("tleg_aux_vit_tiny_patch16_224", {"pos_embed": 0.25, "patch_embed": 0.25, "base": 0.5, "slope": 0.5,
                                       "fc_norm": 0.5, "head": 1.0}),
])
def test_group_matcher_gives_timm_layer_decay_per_layer(name, scales):
    from timm.optim import create_optimizer_v2

    aux = timm.create_model(name, img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=32, num_heads=2)
    optimizer = create_optimizer_v2(aux, "adamw", lr=1e-3, layer_decay=0.5)
    group_of = {id(p): g["lr_scale"] for g in optimizer.param_groups for p in g["params"]}
    for param_name, param in aux.named_parameters():
        prefix = ".".join(param_name.split(".")[:2]) if param_name.startswith("stages.") else param_name.split(".")[0]
        assert group_of[id(param)] == scales[prefix], param_name


@pytest.mark.parametrize("name", ["sws_aux_vit_tiny_patch16_224", "tleg_aux_vit_tiny_patch16_224"])
def test_forward_intermediates_are_the_applied_layers_outputs(name):
    aux = timm.create_model(name, img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=32,
                            num_heads=2).eval()
    x = torch.randn(2, 1, 8, 8)
    final, maps = aux.forward_intermediates(x, indices=[0, -1])
    torch.testing.assert_close(final, aux.forward_features(x), rtol=0, atol=0)
    assert [m.shape for m in maps] == [(2, 32, 4, 4)] * 2
    torch.testing.assert_close(maps[1].flatten(2).transpose(1, 2), final, rtol=0, atol=0)
    tokens = aux.pos_drop(aux.patch_embed(x) + aux.pos_embed)
    first = aux.forward_intermediates(x, indices=len(aux.layer_drop_path), output_fmt="NLC",
                                      intermediates_only=True)  # an int: the last n layers, here all
    assert len(first) == len(aux.layer_drop_path)
    torch.testing.assert_close(first[0], aux.run_layer(tokens, 0), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["sws_aux_vit_tiny_patch16_224", "tleg_aux_vit_tiny_patch16_224"])
def test_fx_traced_aux_net_computes_the_eager_function_and_gradients(name):
    # timm's torch.fx feature extraction sees every applied layer, with gradients reaching the learngene tensors.
    from timm.models import GraphExtractNet

    torch.manual_seed(0)
    aux = timm.create_model(name, img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=32, num_heads=2)
    with torch.no_grad():  # off the init, where every TLEG slope norm is zero
        for p in aux.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    traced = GraphExtractNet(aux.eval(), ["head"])
    x = torch.randn(2, 1, 8, 8)
    traced(x).square().sum().backward()
    traced_grads = {n: p.grad.clone() for n, p in aux.named_parameters()}
    aux.zero_grad()
    eager = aux(x)
    eager.square().sum().backward()
    torch.testing.assert_close(traced(x), eager, rtol=0, atol=0)
    for n, p in aux.named_parameters():
        torch.testing.assert_close(traced_grads[n], p.grad, rtol=0, atol=0, msg=n)


@pytest.mark.parametrize("name", ["sws_aux_vit_tiny_patch16_224", "tleg_aux_vit_tiny_patch16_224"])
def test_fx_feature_extractor_trains_every_parameter(name):
    """What timm's own suite checks (test_model_backward_fx): the traced module that timm's FX feature extraction
    builds holds every parameter of the Aux-Net and a training step gives each one a nonzero gradient. A trace that
    read the tensors' values instead of the parameters leaves the learngene out (TLEG: only stem and head train)."""
    from timm.models import create_feature_extractor, get_graph_node_names

    torch.manual_seed(0)
    aux = timm.create_model(name, img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=32, num_heads=2)
    with torch.no_grad():  # off the init, where every TLEG slope norm is zero
        for p in aux.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    train_nodes, _ = get_graph_node_names(aux.train())
    traced = create_feature_extractor(aux, return_nodes=[train_nodes[-1]]).train()
    assert sorted(n for n, _ in traced.named_parameters()) == sorted(n for n, _ in aux.named_parameters())
    for _ in range(2):  # twice: tensors baked into the trace would refuse a second backward
        traced.zero_grad()
        traced(torch.randn(2, 1, 8, 8))[train_nodes[-1]].square().sum().backward()
        empty = [n for n, p in traced.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert empty == []


def test_pruning_keeps_the_taps_and_removes_what_no_kept_layer_reads(tiny_aux):
    """timm's prune_intermediate_layers: layers 0-4 of stages (3, 3, 4, 3, 3) read stages 0 and 1 alone; the other
    three stage blocks, fc_norm and the head go, and the kept layers' outputs are the unpruned model's."""
    import copy

    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        taps = tiny_aux.forward_intermediates(x, output_fmt="NLC", intermediates_only=True)
    block = sum(p.numel() for p in tiny_aux.stages[0].parameters())
    head = sum(p.numel() for m in (tiny_aux.fc_norm, tiny_aux.head) for p in m.parameters())
    pruned = copy.deepcopy(tiny_aux)
    assert pruned.prune_intermediate_layers([1, 4]) == [1, 4]
    assert sum(p.numel() for p in pruned.parameters()) == sum(p.numel() for p in tiny_aux.parameters()) \
        - 3 * block - head
    with torch.no_grad():
        kept = pruned.forward_intermediates(x, indices=[1, 4], output_fmt="NLC", intermediates_only=True)
        torch.testing.assert_close(kept, [taps[1], taps[4]], rtol=0, atol=0)
        torch.testing.assert_close(pruned.forward_features(x), taps[4], rtol=0, atol=0)


def test_features_only_and_no_pooling_give_the_applied_layers_tokens():
    aux = timm.create_model("tleg_aux_vit_tiny_patch16_224", img_size=8, patch_size=2, in_chans=1, embed_dim=32,
                            num_heads=2, num_layers=5).eval()
    x = torch.randn(2, 1, 8, 8)
    tokens = aux.forward_features(x)
    aux.reset_classifier(0, "")
    torch.testing.assert_close(aux(x), aux.fc_norm(tokens), rtol=0, atol=0)
    features = timm.create_model("tleg_aux_vit_tiny_patch16_224", img_size=8, patch_size=2, in_chans=1,
                                 embed_dim=32, num_heads=2, num_layers=5, features_only=True, out_indices=(1, 4))
    features.model.load_state_dict(aux.state_dict(), strict=False)
    assert features.feature_info.channels() == [32, 32] and features.feature_info.reduction() == [2, 2]
    maps = features.eval()(x)
    torch.testing.assert_close(maps[1].flatten(2).transpose(1, 2), tokens, rtol=0, atol=0)
    with pytest.raises(LearngeneError, match="global_pool"):
        aux.reset_classifier(0, "max")
