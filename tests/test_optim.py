import pytest
import torch
from monai.networks.nets import UNETR, ViT
from monai.optimizers import WarmupCosineSchedule

from shared.optimizers.layer_decay import param_groups
from tests.helpers import TINY_ENCODER, tiny_mae


def _scale_of(groups, param):
    return next(g["lr_scale"] for g in groups if any(p is param for p in g["params"]))


def _decay_of(groups, param):
    return next(g["weight_decay"] for g in groups if any(p is param for p in g["params"]))


def test_layer_decay_for_unetr_follows_the_paper():
    net = UNETR(1, 14, 32, feature_size=8, **TINY_ENCODER)
    groups = param_groups(net, lr=1e-3, weight_decay=0.05, layer_decay=0.75)
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    assert _scale_of(groups, net.vit.patch_embedding.patch_embeddings.weight) == pytest.approx(0.75**13)
    assert _scale_of(groups, net.vit.blocks[0].mlp.linear1.weight) == pytest.approx(0.75**12)
    assert _scale_of(groups, net.vit.blocks[11].mlp.linear1.weight) == pytest.approx(0.75)
    assert _scale_of(groups, net.vit.norm.weight) == 1.0
    assert _scale_of(groups, net.out.conv.conv.weight) == 1.0
    for g in groups:
        assert g["lr"] == pytest.approx(1e-3 * g["lr_scale"])
    assert groups[0]["lr_scale"] == 1.0  # what logs "the" learning rate reads group 0: the base rate


def test_no_weight_decay_on_biases_norms_tokens_and_position_embeddings():
    vit = ViT(1, 32, 16, num_layers=2, classification=True, **TINY_ENCODER)
    groups = param_groups(vit, lr=1e-3, weight_decay=0.05, layer_decay=0.75)
    assert _decay_of(groups, vit.cls_token) == 0.0
    assert _decay_of(groups, vit.patch_embedding.position_embeddings) == 0.0
    assert _decay_of(groups, vit.blocks[0].norm1.weight) == 0.0
    assert _decay_of(groups, vit.blocks[0].mlp.linear1.bias) == 0.0
    assert _decay_of(groups, vit.blocks[0].mlp.linear1.weight) == 0.05
    assert _scale_of(groups, vit.cls_token) == pytest.approx(0.75**3)


def test_mae_pretraining_groups_skip_frozen_position_embeddings_and_keep_one_scale():
    net = tiny_mae(img_size=32, cls_token=True)  # the X-ray MAE's class token, as its mask token, is not decayed
    groups = param_groups(net, lr=1e-3, weight_decay=0.05)
    assert all(g["lr_scale"] == 1.0 for g in groups)
    params = [p for g in groups for p in g["params"]]
    assert not any(p is net.decoder_pos_embed for p in params)
    assert _decay_of(groups, net.mask_token) == 0.0 and _decay_of(groups, net.cls_token) == 0.0


def test_warmup_cosine_schedule_keeps_the_per_layer_ratio():
    net = UNETR(1, 14, 32, feature_size=8, **TINY_ENCODER)
    optimizer = torch.optim.AdamW(param_groups(net, lr=1e-3, layer_decay=0.75))
    schedule = WarmupCosineSchedule(optimizer, warmup_steps=2, t_total=10)
    for _ in range(3):
        optimizer.step()
        schedule.step()
    ratios = {round(g["lr"] / (1e-3 * g["lr_scale"]), 8) for g in optimizer.param_groups}
    assert len(ratios) == 1 and 0 < ratios.pop() < 1
