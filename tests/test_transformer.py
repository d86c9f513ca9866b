"""The encoder block: its in-place inference path and its [DET]-only queries compute the same as the plain path."""
import pytest
import torch
import torch.nn.functional as F

from yolos_d2.modeling.transformer import Block


def _block():
    torch.manual_seed(0)
    block = Block(dim=32, num_heads=4, mlp_ratio=3.0).eval()
    with torch.no_grad():
        for param in block.parameters():
            param.normal_(std=0.2)
    return block


def _reference(block, x):
    """The block written out as DeiT computes it."""
    batch, num_tokens, dim = x.shape
    heads = block.attn.num_heads
    qkv = F.linear(block.norm1(x), block.attn.qkv.weight, block.attn.qkv.bias)
    q, k, v = qkv.view(batch, num_tokens, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
    weights = (q @ k.transpose(-2, -1) * (dim // heads) ** -0.5).softmax(-1)
    x = x + block.attn.proj((weights @ v).transpose(1, 2).reshape(batch, num_tokens, dim))
    return x + block.mlp.fc2(F.gelu(block.mlp.fc1(block.norm2(x))))


@pytest.mark.parametrize("num_queries", [None, 5])
def test_inference_and_autograd_paths_match_reference(num_queries):
    block = _block()
    x = torch.randn(2, 17, 32)
    expected = _reference(block, x)[:, 17 - (num_queries or 17) :]
    x_before = x.clone()
    with torch.no_grad():
        inference = block(x, num_queries)
    autograd = block(x.requires_grad_(), num_queries)
    assert torch.equal(x.detach(), x_before), "the inference path must not modify its input"
    assert inference.shape == autograd.shape == expected.shape
    assert torch.allclose(inference, expected, atol=1e-5)
    assert torch.allclose(autograd, expected, atol=1e-5)


def test_gradients_through_det_only_queries_equal_full_block():
    block = _block()
    x = torch.randn(1, 12, 32, requires_grad=True)
    block(x, num_queries=4).square().sum().backward()
    grad_det_only = x.grad.clone()
    x.grad = None
    block(x)[:, -4:].square().sum().backward()
    assert torch.allclose(grad_det_only, x.grad, atol=1e-5)


@pytest.mark.parametrize("num_tokens", [20, 25])  # either side of 3 * head_dim = 24
def test_training_attention_gradients_match_reference_with_explicit_and_fused_kernels(num_tokens, monkeypatch):
    block = _block()
    x = torch.randn(2, num_tokens, 32)
    fused_calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a: fused_calls.append(1) or sdpa(*a))
    x_ours = x.clone().requires_grad_()
    block(x_ours).square().sum().backward()
    grads_ours = [p.grad.clone() for p in block.parameters()]
    block.zero_grad()
    x_ref = x.clone().requires_grad_()
    _reference(block, x_ref).square().sum().backward()
    # Short sequences take the explicit products, longer ones the fused kernel.
    assert bool(fused_calls) == (num_tokens > 24)
    torch.testing.assert_close(x_ours.grad, x_ref.grad, rtol=1e-4, atol=1e-5)
    for ours, reference in zip(grads_ours, (p.grad for p in block.parameters())):
        torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)


def test_explicit_attention_under_bfloat16_autocast_is_within_bfloat16_resolution():
    block = _block()
    x = torch.randn(2, 20, 32, requires_grad=True)
    expected = block(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = block(x)
    # bfloat16 keeps 8 significant bits: a relative error of 2^-8 per rounding, a few roundings deep.
    scale = expected.abs().max().item()
    assert (mixed.float() - expected).abs().max().item() <= 8 * 2**-8 * scale
