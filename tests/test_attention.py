"""
record_attention: the recorded weights are the ones the block attends with, and recording changes
nothing; the [DET] tokens' weights laid out on the patch grid and on the unpadded image.
"""
import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from yolos_d2.inference.attention import (
    attention_over_image,
    det_token_patch_attention,
    padded_patch_grid,
    record_attention,
)

from conftest import build_model

NUM_DET_TOKENS = 5
TINY = ["model.detector.backbone.depth=2", f"model.detector.backbone.num_det_tokens={NUM_DET_TOKENS}"]


@pytest.fixture(scope="module")
def detector():
    return build_model("quickstart", TINY).detector


def attend_with(attn: torch.nn.Module, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The output of ``attn`` on ``x`` (B, N, D) computed with the given (B, heads, N, N) attention weights."""
    batch, num_tokens, dim = x.shape
    heads = weights.shape[1]
    v = attn.qkv(x).view(batch, num_tokens, 3, heads, dim // heads)[:, :, 2].transpose(1, 2)
    return attn.proj((weights @ v).transpose(1, 2).reshape(batch, num_tokens, dim))


def record_with_inputs(backbone, run):
    """Run ``run()`` recording the last block's attention weights and the input of its ``attn``."""
    attn_inputs = []
    handle = backbone.blocks[-1].attn.qkv.register_forward_hook(lambda module, args, out: attn_inputs.append(args[0]))
    try:
        with record_attention(backbone) as recorded:
            run()
    finally:
        handle.remove()
    return recorded, attn_inputs


@pytest.mark.parametrize("grad_enabled", [False, True], ids=["inference", "autograd"])
def test_recorded_weights_reproduce_the_attention_output(detector, grad_enabled):
    """Rows sum to 1, and weights @ v -> proj equals the attention module's own output."""
    images = torch.randn(2, 3, 48, 64)
    backbone = detector.backbone
    with torch.set_grad_enabled(grad_enabled):
        recorded, attn_inputs = record_with_inputs(backbone, lambda: detector(images))
    assert len(recorded) == 1
    weights, x = recorded[0], attn_inputs[0].detach()
    num_tokens = 1 + 3 * 4 + NUM_DET_TOKENS
    assert weights.shape == (2, 3, num_tokens, num_tokens)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, num_tokens), rtol=0, atol=1e-5)
    attn = backbone.blocks[-1].attn
    with torch.no_grad():
        torch.testing.assert_close(attend_with(attn, x, weights), attn(x), rtol=1e-5, atol=1e-5)


def test_timm_attention_with_qk_norm():
    """timm's Attention with q_norm / k_norm: the norms are applied as timm applies them."""
    torch.manual_seed(0)
    vit = VisionTransformer(img_size=32, patch_size=16, embed_dim=32, depth=1, num_heads=2, qk_norm=True, num_classes=0)
    vit.eval()
    with torch.no_grad():
        for norm in (vit.blocks[0].attn.q_norm, vit.blocks[0].attn.k_norm):
            norm.weight.normal_(1.0, 0.5)
        recorded, attn_inputs = record_with_inputs(vit, lambda: vit(torch.randn(1, 3, 32, 32)))
        attn, x = vit.blocks[0].attn, attn_inputs[0]
        torch.testing.assert_close(attend_with(attn, x, recorded[0]), attn(x), rtol=1e-5, atol=1e-5)


def test_recording_leaves_the_outputs_unchanged_and_removes_its_hook(detector):
    images = torch.randn(1, 3, 48, 48)
    backbone = detector.backbone
    with torch.no_grad():
        plain = detector(images)
        with record_attention(backbone, block_index=0) as recorded:
            observed = detector(images)
    assert len(recorded) == 1
    for key in plain:
        assert torch.equal(plain[key], observed[key]), key
    with pytest.raises(KeyError), record_attention(backbone):
        raise KeyError("an error inside the block")
    assert all(not block.attn.qkv._forward_hooks for block in backbone.blocks)


def test_num_queries_keeps_the_last_rows(detector):
    backbone = detector.backbone
    with torch.no_grad(), record_attention(backbone) as full:
        with record_attention(backbone, num_queries=NUM_DET_TOKENS) as det:
            detector(torch.randn(1, 3, 32, 48))
    assert det[0].shape == (1, 3, NUM_DET_TOKENS, full[0].shape[-1])
    torch.testing.assert_close(det[0], full[0][:, :, -NUM_DET_TOKENS:])


def test_det_token_patch_attention_lays_the_patches_out_row_major():
    rows, cols, num_det, num_queries = 2, 3, 4, 5
    num_tokens = 1 + rows * cols + num_det
    # Each weight holds its key's index and, in the tenths, its query's index.
    weights = torch.arange(num_tokens).float() + 0.1 * torch.arange(num_queries).float()[:, None]
    patches = det_token_patch_attention(weights.expand(2, 3, -1, -1), (rows, cols), num_det)
    assert patches.shape == (2, 3, num_det, rows, cols)
    assert patches[1, 2, 0, 1, 2].item() == pytest.approx(1 + 1 * cols + 2 + 0.1)  # first [DET] = query 1 of 5
    assert patches[0, 0, 3, 0, 0].item() == pytest.approx(1 + 0.4)
    with pytest.raises(ValueError, match="3x3 patch grid"):
        det_token_patch_attention(weights.expand(1, 1, -1, -1), (3, 3), num_det)


def test_attention_is_mapped_back_to_the_unpadded_image():
    assert padded_patch_grid((40, 72), size_divisibility=16, patch_size=16) == (3, 5)
    assert padded_patch_grid((40, 72), size_divisibility=32, patch_size=16) == (4, 6)
    patch_maps = torch.arange(6.0).reshape(1, 2, 3)
    pixels = attention_over_image(patch_maps, patch_size=16, image_size=(20, 40))
    assert pixels.shape == (1, 20, 40)
    assert pixels[0, 15, 15] == 0 and pixels[0, 16, 15] == 3 and pixels[0, 19, 39] == 5 and pixels[0, 0, 32] == 2
