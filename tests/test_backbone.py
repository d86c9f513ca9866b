"""Position embeddings of the backbone: resizing per input grid, caching, mid-layer embeddings."""
import pytest
import torch
import torch.nn.functional as F

from yolos_d2.modeling import ViTWithDetTokens
from yolos_d2.modeling.position_embedding import resize_patch_pos_embed


def _backbone(**kwargs):
    torch.manual_seed(0)
    args = dict(embed_dim=24, depth=3, num_heads=2, init_pe_size=(32, 48), mid_pe_size=(48, 32), num_det_tokens=5)
    args.update(kwargs)
    return ViTWithDetTokens(**args).eval()


def _bicubic(pos, old, new):
    grid = pos.reshape(pos.shape[0], *old, -1).permute(0, 3, 1, 2)
    return F.interpolate(grid, size=new, mode="bicubic", align_corners=False).flatten(2).transpose(1, 2)


def test_same_grid_uses_parameters_unchanged():
    backbone = _backbone()
    with torch.no_grad():
        pos, mid = backbone.position_embeddings((2, 3))
    assert torch.equal(pos, torch.cat([backbone.pos_embed, backbone.det_pos_embed], dim=1))
    assert mid.shape == (2, 1, 1 + 3 * 2 + 5, 24)


def test_transposed_grid_with_same_token_count_is_resized():
    # The original skipped the resize whenever the patch count matched; a 3x2 input grid against
    # a 2x3 init grid must still be resized.
    backbone = _backbone()
    with torch.no_grad():
        pos, mid = backbone.position_embeddings((3, 2))
        expected_patches = _bicubic(backbone.pos_embed[:, 1:], (2, 3), (3, 2))
        expected_mid = _bicubic(backbone.mid_pos_embed[:, 0, 1:-5], (3, 2), (3, 2))
    assert torch.allclose(pos[:, 1:-5], expected_patches, atol=1e-6)
    assert not torch.allclose(pos[:, 1:-5], backbone.pos_embed[:, 1:])
    assert torch.equal(pos[:, :1], backbone.pos_embed[:, :1])
    assert torch.equal(pos[:, -5:], backbone.det_pos_embed)
    assert torch.allclose(mid[:, 0, 1:-5], expected_mid, atol=1e-6)


def test_resize_is_bicubic_without_antialias():
    torch.manual_seed(0)
    pos = torch.randn(2, 20 * 30, 8)
    out = resize_patch_pos_embed(pos, (20, 30), (7, 11))
    assert torch.allclose(out, _bicubic(pos, (20, 30), (7, 11)), atol=1e-6)


def test_resized_embeddings_are_computed_once_per_grid(monkeypatch):
    backbone = _backbone()
    calls = []
    compute = backbone._compute_position_embeddings
    monkeypatch.setattr(backbone, "_compute_position_embeddings", lambda grid: calls.append(grid) or compute(grid))
    with torch.no_grad():
        first = backbone(torch.randn(1, 3, 64, 80))
        again = backbone(torch.randn(1, 3, 64, 80))
        backbone(torch.randn(1, 3, 80, 64))
    assert calls == [(4, 5), (5, 4)]
    assert first.shape == again.shape == (1, 5, 24)
    with torch.no_grad():  # an update of the parameters invalidates the cache
        backbone.pos_embed.add_(1.0)
        backbone(torch.randn(1, 3, 64, 80))
    assert calls == [(4, 5), (5, 4), (4, 5)]


def test_gradients_reach_position_embeddings_when_training():
    backbone = _backbone().train()
    backbone(torch.randn(2, 3, 64, 80)).sum().backward()
    for param in (backbone.pos_embed, backbone.det_pos_embed, backbone.mid_pos_embed, backbone.det_token):
        assert param.grad is not None and param.grad.abs().sum() > 0


def test_activation_checkpointing_gives_same_outputs_and_gradients():
    images = torch.randn(2, 3, 48, 64)
    results = []
    for use_act_checkpoint in (False, True):
        backbone = _backbone(use_act_checkpoint=use_act_checkpoint).train()
        out = backbone(images)
        out.square().sum().backward()
        results.append((out.detach(), backbone.blocks[0].attn.qkv.weight.grad.clone()))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-6)
    assert torch.allclose(results[0][1], results[1][1], atol=1e-6)


def test_mid_embeddings_are_added_after_every_block_but_the_last():
    backbone = _backbone()
    images = torch.randn(1, 3, 48, 32)
    with torch.no_grad():
        reference = backbone.forward_features(images)
        # Recompute by hand: blocks with the (unresized: 3x2 grid = mid grid) mid embeddings.
        x = backbone.patch_embed(images)
        x = torch.cat([backbone.cls_token, x, backbone.det_token], dim=1)
        x = x + backbone.position_embeddings((3, 2))[0]
        for i, block in enumerate(backbone.blocks):
            x = block(x)
            if i < len(backbone.blocks) - 1:
                x = x + backbone.mid_pos_embed[i]
        assert torch.allclose(backbone.norm(x), reference, atol=1e-6)


def mae_2d_sincos(dim, rows, cols):
    """MAE's get_2d_sincos_pos_embed (numpy), written out as the reference."""
    import numpy as np

    def one_axis(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid = np.meshgrid(np.arange(cols, dtype=np.float64), np.arange(rows, dtype=np.float64))
    return np.concatenate([one_axis(dim // 2, grid[0]), one_axis(dim // 2, grid[1])], axis=1)


def test_sincos_init_is_mae_table_and_stays_learnable():
    torch.manual_seed(0)
    backbone = ViTWithDetTokens(
        embed_dim=32, depth=1, num_heads=2, init_pe_size=(48, 80), num_det_tokens=3, pos_embed_init="sincos"
    )
    expected = torch.from_numpy(mae_2d_sincos(32, 3, 5)).float()
    torch.testing.assert_close(backbone.pos_embed[0, 1:], expected, rtol=0, atol=1e-6)
    assert torch.equal(backbone.pos_embed[0, 0], torch.zeros(32))
    assert backbone.pos_embed.requires_grad
    assert backbone.det_pos_embed.abs().max() > 0  # [DET] embeddings keep the truncated-normal init


def test_unknown_pos_embed_init_is_refused():
    with pytest.raises(ValueError, match="pos_embed_init"):
        ViTWithDetTokens(embed_dim=32, depth=1, num_heads=2, init_pe_size=(32, 32), pos_embed_init="zeros")
