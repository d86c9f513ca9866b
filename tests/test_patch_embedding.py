"""The patch embedding computes the strided convolution of timm's PatchEmbed, whose parameters it keeps."""
import pytest
import torch
import torch.nn.functional as F

from yolos_d2.modeling.patch_embedding import PatchEmbedding


@pytest.mark.parametrize("size", [(32, 48), (37, 50)])  # the second has pixels past the last whole patch
def test_patch_tokens_equal_the_strided_convolution(size):
    torch.manual_seed(0)
    embed = PatchEmbedding(patch_size=8, embed_dim=12)
    images = torch.randn(3, 3, *size)
    expected = F.conv2d(images, embed.proj.weight, embed.proj.bias, stride=8).flatten(2).transpose(1, 2)
    torch.testing.assert_close(embed(images), expected, rtol=1e-5, atol=1e-5)


def test_parameters_keep_timm_names_and_shapes():
    shapes = {name: tuple(p.shape) for name, p in PatchEmbedding(patch_size=16, embed_dim=192).state_dict().items()}
    assert shapes == {"proj.weight": (192, 3, 16, 16), "proj.bias": (192,)}
