import dataclasses

import pytest
import timm
import torch

from learngene.checkpoint import Learngene, load_learngene
from learngene.config import ElasticConfig, ModelConfig, OptimConfig, TrainConfig, check_train_config
from learngene.data import DataConfig
from learngene.distill import soft_kd_loss
from learngene.engine import train
from learngene.engine.elastic import ElasticSandwich, mean_over_passes
from learngene.errors import LearngeneError
from learngene.expand import cyclic_layer_sources, expand_sws, own_layer_sources
from learngene.expand.width import apply_width_plan, narrow_width, plan_width

WIDTHS = [8, 16, 24, 32]  # the tiny Aux-Net of conftest: width 32, 4 heads of 8 dims


@pytest.mark.parametrize("width, depth", [(8, None), (16, 7), (24, 12), (32, 5)])
def test_a_pass_equals_the_narrowed_des_net(tiny_aux, width, depth):
    """Slicing a learngene gives the Des-Net whose forward is the elastic Aux-Net's pass at that width."""
    sandwich = ElasticSandwich(ElasticConfig(widths=WIDTHS, sample_depths=[5, 16]), tiny_aux)
    images = torch.randn(3, 1, 8, 8)
    sources = own_layer_sources(tiny_aux.stage_sizes) if depth is None else cyclic_layer_sources(depth, (3, 3, 4, 3, 3))
    des = timm.create_model("vit_tiny_patch16_224", **dict(tiny_aux.des_model_args(len(sources)), embed_dim=width,
                                                           num_heads=width // 8)).eval()
    des.load_state_dict(narrow_width(expand_sws(tiny_aux.state_dict(), sources), 4, width))
    with torch.no_grad():
        torch.testing.assert_close(sandwich.forward(images, width, depth), des(images), atol=1e-5, rtol=0)


def test_draws_are_reproducible_and_start_with_the_smallest_width(tiny_aux):
    sandwich = ElasticSandwich(ElasticConfig(widths=WIDTHS, random_widths=2, sample_depths=[6, 9]), tiny_aux)
    draws = [sandwich.draw(epoch, step) for epoch in range(3) for step in range(20)]
    assert draws == [sandwich.draw(epoch, step) for epoch in range(3) for step in range(20)]
    assert all(len(d) == 3 and d[0][0] == 8 for d in draws)
    assert {w for d in draws for w, _ in d} == set(WIDTHS) and {n for d in draws for _, n in d} == {6, 7, 8, 9}
    assert ElasticSandwich(ElasticConfig(widths=WIDTHS), tiny_aux).draw(0, 0)[0] == (8, None)


def test_a_sandwich_step_updates_the_shared_prefix_only(tiny_aux):
    sandwich = ElasticSandwich(ElasticConfig(widths=[16, 32], random_widths=0), tiny_aux.train())
    images, teacher = torch.randn(4, 1, 8, 8), torch.randn(4, 10)
    before = {k: v.detach().clone() for k, v in tiny_aux.named_parameters()}
    passes = sandwich.extra_logits(images, epoch=0, step=0)
    assert len(passes) == 1 and passes[0].shape == (4, 10)
    mean_over_passes(lambda out: soft_kd_loss(out, teacher, tau=1.0), passes).backward()
    torch.optim.SGD(tiny_aux.parameters(), lr=0.1).step()
    after = dict(tiny_aux.named_parameters())
    qkv = after["stages.0.attn.qkv.weight"] - before["stages.0.attn.qkv.weight"]
    for prefix in (qkv[0:16, :16], qkv[32:48, :16], qkv[64:80, :16]):  # heads 0-1 of q, k, v on channels 0-15
        assert (prefix != 0).float().mean() > 0.9
    assert not qkv[16:32].any() and not qkv[48:64].any() and not qkv[:, 16:].any()  # heads 2-3, channels 16..
    head = after["head.weight"] - before["head.weight"]
    assert (head[:, :16] != 0).all() and not head[:, 16:].any()


def test_mean_over_passes():
    criterion = lambda out: out.sum()  # noqa: E731
    assert mean_over_passes(criterion, torch.ones(2)).item() == 2
    assert mean_over_passes(criterion, [torch.ones(2), torch.zeros(2), torch.full((2,), 2.0)]).item() == 2


@pytest.mark.parametrize("elastic, message", [
    (ElasticConfig(widths=[8, 16]), r"must be multiples of the head dim 8 up to the model's width 32"),
    (ElasticConfig(widths=[12, 32]), "must be multiples of the head dim 8"),
    (ElasticConfig(widths=[8, 32], sample_depths=[3, 16]), "must start at >= 5"),
])
def test_bad_elastic_settings(tiny_aux, elastic, message):
    with pytest.raises(LearngeneError, match=message):
        ElasticSandwich(elastic, tiny_aux)


def test_elastic_widths_follow_the_expanders_mlp_rule():
    """MLP ratio 21/16 (42 units at width 32): width 8 would have 10.5 units, which the expander refuses, so elastic
    training refuses it too; width 16 has 21, trained, planned and expanded alike."""
    from conftest import TINY_AUX
    torch.manual_seed(0)
    aux = timm.create_model("sws_aux_vit_tiny_patch16_224", **TINY_AUX, mlp_ratio=21 / 16).eval()
    with pytest.raises(LearngeneError, match=r"^elastic.widths \[8\] have no whole number of MLP units at the "
                                             r"model's 42 units for width 32"):
        ElasticSandwich(ElasticConfig(widths=[8, 32]), aux)
    sandwich = ElasticSandwich(ElasticConfig(widths=[16, 32]), aux)
    assert sandwich.skeleton(16, None).stages[0].mlp.fc1.out_features == 21
    plan = plan_width(Learngene(aux.state_dict(), "sws_aux_vit_tiny_patch16_224", aux.architecture_args(), "sws",
                                {"elastic": sandwich.metadata()}), 16)
    assert (plan.mlp_hidden, plan.trained_size) == (21, [16, 21])
    sources = own_layer_sources(aux.stage_sizes)
    des = timm.create_model("vit_tiny_patch16_224", **{**aux.des_model_args(16), **plan.model_args()}).eval()
    des.load_state_dict(apply_width_plan(expand_sws(aux.state_dict(), sources), plan))
    images = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(sandwich.forward(images, 16), des(images), atol=1e-5, rtol=0)


def test_sample_depths_must_be_a_range():
    cfg = TrainConfig(model=ModelConfig(name="x"), elastic=ElasticConfig(widths=[8], sample_depths=[9, 6]))
    with pytest.raises(LearngeneError, match=r"elastic.sample_depths=\[9, 6\] must be \[\] or \[lo, hi\]"):
        check_train_config(cfg)


def test_elastic_training_run_records_its_widths(tmp_path):
    aux = dict(img_size=8, patch_size=2, in_chans=1, num_classes=10, embed_dim=16, num_heads=2, stage_sizes=[1, 2])
    cfg = TrainConfig(model=ModelConfig(name="sws_aux_vit_tiny_patch16_224", kwargs=aux),
                      data=DataConfig(name="digits", batch_size=16, train_limit=64),
                      optim=OptimConfig(lr=3e-3, epochs=1), output=str(tmp_path / "run"), device="cpu",
                      elastic=ElasticConfig(widths=[8, 16], sample_depths=[2, 4]))
    torch.manual_seed(0)
    train(cfg)
    learngene = load_learngene(tmp_path / "run" / "learngene.safetensors")
    assert learngene.extra["elastic"] == {"widths": [8, 16], "sample_depths": [2, 4], "random_widths": 1}
    plain = dataclasses.replace(cfg, output=str(tmp_path / "plain"), elastic=ElasticConfig())
    torch.manual_seed(0)
    train(plain)
    assert "elastic" not in load_learngene(tmp_path / "plain" / "learngene.safetensors").extra
