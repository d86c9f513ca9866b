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
