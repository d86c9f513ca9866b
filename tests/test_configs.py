"""Each variant LazyConfig states the seed's settings and builds its model."""
import pytest
from detectron2.config import instantiate

from conftest import VARIANTS, config_path
from yolos_d2.config import load_config

EXPECTED = {
    # variant: (embed_dim, depth, heads, init_pe_size, mid_pe_size, eval_size, ims/GPU, lr, epochs)
    "yolos_ti": (192, 12, 3, [800, 1328], None, 512, 2, 5e-5, 300),
    "yolos_s": (384, 12, 6, [512, 864], [512, 864], 800, 1, 2.5e-5, 150),
    "yolos_s_200ep": (384, 12, 6, [512, 864], [512, 864], 800, 1, 2.5e-5, 150),
    "yolos_s_dwr": (330, 14, 6, [512, 864], [512, 864], 800, 1, 2.5e-5, 150),
    "yolos_b": (768, 12, 12, [800, 1344], [800, 1344], 800, 1, 2.5e-5, 150),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_settings(variant):
    dim, depth, heads, init_pe, mid_pe, eval_size, per_gpu, lr, epochs = EXPECTED[variant]
    cfg = load_config(config_path(variant))
    backbone = cfg.model.detector.backbone
    assert (backbone.embed_dim, backbone.depth, backbone.num_heads) == (dim, depth, heads)
    assert (backbone.patch_size, backbone.mlp_ratio, backbone.qkv_bias, backbone.norm_eps) == (16, 4.0, True, 1e-6)
    assert list(backbone.init_pe_size) == init_pe
    assert (list(backbone.mid_pe_size) if backbone.mid_pe_size is not None else None) == mid_pe
    assert backbone.num_det_tokens == 100
    (resize,) = instantiate(cfg.dataloader.test.mapper.augmentations)
    assert (resize.short_edge_length, resize.max_size) == ((eval_size,), eval_size * 1333 // 800)
    train_augs = cfg.dataloader.train.mapper.augmentations
    first, last = (256, 608) if variant == "yolos_ti" else (480, 800)
    assert list(train_augs.scales) == list(range(first, last + 1, 16))
    assert train_augs.get("max_size") is None  # the original's cap: last * 1333 // 800
    total_batch = cfg.dataloader.train.total_batch_size
    assert total_batch == per_gpu * 8
    assert cfg.optimizer.lr == lr
    schedule = instantiate(cfg.lr_multiplier)
    assert schedule(0.0) == 1.0 and schedule.epoch_value(epochs) == pytest.approx(1e-7)
    # Hand-computed: 118,287 / 16 = 7,392.9 -> 7,393 iterations per epoch; / 8 -> 14,786.
    assert cfg.train.max_iter == epochs * {16: 7393, 8: 14786}[total_batch]
    assert cfg.model.detector.num_classes == 80


@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_builds_the_papers_model(variant):
    """Built one block deep (fast): the paper's width, heads, 100 [DET] tokens and COCO's 80 classes + no-object."""
    dim, _, heads, *_ = EXPECTED[variant]
    model = instantiate(load_config(config_path(variant), ["model.detector.backbone.depth=1"]).model)
    backbone = model.detector.backbone
    assert backbone.det_token.shape == (1, 100, dim)
    assert backbone.blocks[0].attn.num_heads == heads and backbone.blocks[0].mlp.fc1.out_features == 4 * dim
    assert model.detector.class_embed.layers[-1].out_features == 81
    assert model.detector.bbox_embed.layers[-1].out_features == 4


def test_yolos_s_200ep_differs_from_yolos_s_only_in_its_weights_and_output_folder():
    yolos_s, yolos_s_200ep = (load_config(config_path(name)) for name in ("yolos_s", "yolos_s_200ep"))
    for key in ("model", "dataloader", "optimizer", "lr_multiplier"):
        assert yolos_s[key] == yolos_s_200ep[key], key
    differing = {key for key in yolos_s.train if yolos_s.train[key] != yolos_s_200ep.train[key]}
    assert differing == {"init_checkpoint", "output_dir"}
    assert yolos_s_200ep.train.init_checkpoint == "deit_small_200ep_yolos_d2.pth"


def test_parameter_groups_follow_the_original():
    from yolos_d2.engine import get_param_groups

    model = instantiate(load_config(config_path("yolos_s"), ["model.detector.backbone.depth=2"]).model)
    decay, no_decay = get_param_groups(model)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    decay_names = {names[id(p)] for p in decay["params"]}
    assert {"detector.backbone.pos_embed", "detector.backbone.det_pos_embed", "detector.backbone.cls_token",
            "detector.backbone.det_token", "detector.backbone.blocks.0.attn.qkv.bias",
            "detector.backbone.norm.weight"} <= no_decay_names
    assert {"detector.backbone.mid_pos_embed", "detector.backbone.blocks.0.attn.qkv.weight",
            "detector.class_embed.layers.0.bias"} <= decay_names
    assert "weight_decay" not in decay and no_decay["weight_decay"] == 0.0
    assert len(decay_names) + len(no_decay_names) == len(names)
