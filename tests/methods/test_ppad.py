import torch

from anomed.methods import create_method
from anomed.methods.ppad import combine_positions, region_boxes, region_patch_masks


def test_region_boxes_follow_the_paper_at_224():
    assert region_boxes(224) == [
        (0, 224, 0, 112),
        (0, 224, 112, 224),
        (0, 120, 0, 224),
        (120, 224, 0, 224),
        (0, 224, 0, 224),
    ]


def test_patch_masks_round_partly_covered_patches_up():
    masks = region_patch_masks(224, 32).reshape(5, 7, 7)  # ViT-B/32: 7 x 7 patches
    # "upper lung" ends at row 120, inside patch row 3 (rows 96-127): that row counts as inside
    assert masks[2, :4].all() and not masks[2, 4:].any()
    # "lower lung" starts at row 120: patch row 3 is partly covered, so inside too
    assert masks[3, 3:].all() and not masks[3, :3].any()
    assert masks[0, :, :4].all() and not masks[0, :, 4:].any()  # 112 / 32 = 3.5 -> 4 columns
    assert masks[4].all()


def test_max_or_mean_rule():
    probs = torch.tensor([[0.9, 0.1, 0.2, 0.3, 0.5], [0.7, 0.1, 0.1, 0.1, 0.5]])
    torch.testing.assert_close(combine_positions(probs), torch.tensor([0.9, 0.3]))


def test_image_prompt_replaces_only_tokens_outside_the_region(tiny_backbone):
    method = create_method("ppad", tiny_backbone, {"n_ctx": 4})
    seen = {}
    original = tiny_backbone.encode_image

    def spy(images, layers, block_hook=None, patch_hook=None):
        tokens = torch.randn(
            images.shape[0], method.patch_masks.shape[1], tiny_backbone.vision_width
        )
        seen["in"], seen["out"] = tokens, patch_hook(tokens)
        return original(images, layers, block_hook, patch_hook)

    tiny_backbone.encode_image = spy
    try:
        method.position_logits(
            torch.rand(1, 3, 112, 112), torch.tensor([0]), method.text_features()
        )
    finally:
        del tiny_backbone.encode_image
    inside = method.patch_masks[0].bool()
    assert torch.equal(seen["out"][0, inside], seen["in"][0, inside])
    torch.testing.assert_close(seen["out"][0, ~inside], method.image_prompt[~inside])


def test_text_features_once_per_step_and_only_prompts_train(tiny_backbone):
    method = create_method("ppad", tiny_backbone, {"n_ctx": 4})
    assert method.text_features().shape == (5, 2, tiny_backbone.embed_dim)
    batch = {
        "image": torch.rand(2, 3, 112, 112),
        "region": torch.tensor([0, 4]),
        "label": torch.tensor([0, 1]),
    }
    method.training_step(batch)["loss"].backward()
    trained = {n for n, p in method.named_parameters() if p.grad is not None}
    assert trained == {"image_prompt", "ctx"}
    out = method(torch.rand(2, 3, 112, 112))
    assert out.anomaly_map.shape == (2, 112, 112) and out.image_score.shape == (2,)


def test_openai_format_checkpoint_loads(tmp_path):
    """A CheXzero-style OpenAI-format CLIP state dict, converted to safetensors (its .pt, a
    pickle, is refused unread: tests/fuzz/test_fuzz_trust.py)."""
    from safetensors.torch import save_file

    from anomed.backbone import BackboneConfig, load_backbone

    src = load_backbone(BackboneConfig(model="anomed-tiny-b32", init_seed=3))
    path = tmp_path / "chexzero_like.safetensors"
    save_file({k: v.contiguous() for k, v in src.model.state_dict().items()}, str(path))
    loaded = load_backbone(BackboneConfig(model="anomed-tiny-b32", pretrained=str(path)))
    for key in ("visual.conv1.weight", "token_embedding.weight", "text_projection"):
        torch.testing.assert_close(loaded.model.state_dict()[key], src.model.state_dict()[key])
