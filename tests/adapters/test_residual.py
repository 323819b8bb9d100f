import torch

from anomed.adapters.residual import AdapterBranch, ResidualAdapters


def test_branch_maths():
    branch = AdapterBranch(width=6, joint_dim=4)
    x = torch.randn(2, 3, 6)
    mid, back = branch(x)
    leaky = torch.nn.functional.leaky_relu
    torch.testing.assert_close(mid, leaky(x @ branch.down[0].weight.t()))
    torch.testing.assert_close(back, leaky(mid @ branch.up[0].weight.t()))
    assert branch.down[0].bias is None and branch.up[0].bias is None


def test_residual_update_is_gamma_x_plus_alpha_cls_plus_beta_seg():
    adapters = ResidualAdapters([2], width=6, joint_dim=4, gamma=0.8, alpha=0.1, beta=0.1)
    x = torch.randn(1, 5, 6)
    assert torch.equal(adapters.hook(1, x), x)  # untapped block passes through
    out = adapters.hook(2, x)
    _, cls_back = adapters.cls_branches[0](x)
    _, seg_back = adapters.seg_branches[0](x)
    torch.testing.assert_close(out, 0.8 * x + 0.1 * cls_back + 0.1 * seg_back)
    assert [t.shape for t in adapters.seg_tokens] == [(1, 5, 4)]


def test_early_adapter_changes_later_tokens(tiny_backbone):
    layers = [2, 4]
    adapters = ResidualAdapters(layers, tiny_backbone.vision_width, tiny_backbone.embed_dim)
    images = torch.rand(1, 3, 112, 112)

    def later_tokens():
        adapters.reset()
        tiny_backbone.encode_image(images, layers, block_hook=adapters.hook)
        return adapters.seg_tokens[1].detach().clone()

    before = later_tokens()
    with torch.no_grad():
        adapters.cls_branches[0].up[0].weight.mul_(3.0)  # only the block-2 adapter changes
    assert not torch.allclose(later_tokens(), before)


def test_gradients_reach_adapters_through_later_blocks(tiny_backbone):
    adapters = ResidualAdapters([2, 4], tiny_backbone.vision_width, tiny_backbone.embed_dim)
    adapters.reset()
    tiny_backbone.encode_image(torch.rand(1, 3, 112, 112), [2, 4], block_hook=adapters.hook)
    adapters.seg_tokens[1].sum().backward()  # a loss on the last tap only
    assert adapters.cls_branches[0].up[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_backbone.parameters())
