import pytest
import torch

from anomed.backbone import BackboneConfig, load_backbone, scale_layers
from anomed.errors import AnomedError


def test_scale_layers_keeps_reference_depth_and_scales_shallow_models():
    assert scale_layers([6, 12, 18, 24], depth=24) == [6, 12, 18, 24]
    assert scale_layers([6, 12, 18, 24], depth=6) == [2, 3, 4, 6]
    assert scale_layers([12, 18, 24], depth=12) == [6, 9, 12]
    assert scale_layers([1, 2], depth=2, reference=24) == [1]


def test_encode_image_taps_requested_blocks(tiny_backbone):
    images = torch.rand(2, 3, 112, 112)
    out = tiny_backbone.encode_image(images, [2, 4])
    n = tiny_backbone.grid_size[0] * tiny_backbone.grid_size[1]
    assert tiny_backbone.grid_size == (8, 8)
    assert [t.shape for t in out.tapped] == [(2, 1 + n, tiny_backbone.vision_width)] * 2
    assert out.image_embedding.shape == (2, tiny_backbone.embed_dim)


def test_final_tap_matches_open_clip_forward(tiny_backbone):
    images = torch.rand(2, 3, 112, 112)
    ours = tiny_backbone.encode_image(images, [tiny_backbone.depth]).image_embedding
    theirs = tiny_backbone.model.encode_image(tiny_backbone.normalize(images))
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_block_hook_changes_later_tokens_only(tiny_backbone):
    images = torch.rand(1, 3, 112, 112)
    plain = tiny_backbone.encode_image(images, [1, 2, 6]).tapped

    def hook(i, x):
        return x * 0.5 if i == 1 else x

    hooked = tiny_backbone.encode_image(images, [1, 2, 6], block_hook=hook).tapped
    torch.testing.assert_close(hooked[0], plain[0] * 0.5)
    assert not torch.allclose(hooked[2], plain[2])


def test_patch_hook_rewrites_input_tokens(tiny_backbone):
    images = torch.rand(1, 3, 112, 112)
    plain = tiny_backbone.encode_image(images, [1]).tapped[0]
    zeroed = tiny_backbone.encode_image(images, [1], patch_hook=torch.zeros_like).tapped[0]
    assert not torch.allclose(plain, zeroed)


def test_backbone_is_frozen_and_stays_in_eval(tiny_backbone):
    assert not any(p.requires_grad for p in tiny_backbone.parameters())
    tiny_backbone.train()
    assert not tiny_backbone.training


def test_text_from_embeddings_matches_open_clip(tiny_backbone):
    ids = tiny_backbone.tokenize(["a photo of a brain", "lesion"])
    ours = tiny_backbone.encode_text_embeddings(tiny_backbone.token_embeddings(ids), ids)
    torch.testing.assert_close(ours, tiny_backbone.model.encode_text(ids), rtol=1e-4, atol=1e-5)


def test_image_size_override_interpolates_grid():
    bb = load_backbone(BackboneConfig(model="anomed-tiny", image_size=240))
    assert bb.image_size == 240 and bb.grid_size == (17, 17)


def test_random_init_is_reproducible_from_seed():
    a = load_backbone(BackboneConfig(model="anomed-tiny-b32", init_seed=7))
    b = load_backbone(BackboneConfig(model="anomed-tiny-b32", init_seed=7))
    torch.testing.assert_close(a.visual.conv1.weight, b.visual.conv1.weight)


def test_unknown_model_name_suggests_close_names():
    with pytest.raises(AnomedError, match=r"unknown open_clip model 'ViT-L-41'.*ViT-L-14"):
        load_backbone(BackboneConfig(model="ViT-L-41"))


def test_missing_local_checkpoint_names_the_file(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(AnomedError, match="nope.safetensors: no such checkpoint file"):
        load_backbone(BackboneConfig(model="anomed-tiny-b32", pretrained=str(missing)))


def test_local_checkpoint_file_loads(tmp_path):
    from safetensors.torch import save_file

    src = load_backbone(BackboneConfig(model="anomed-tiny-b32", init_seed=1))
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in src.model.state_dict().items()}, str(path))
    loaded = load_backbone(BackboneConfig(model="anomed-tiny-b32", pretrained=str(path)))
    torch.testing.assert_close(loaded.visual.conv1.weight, src.visual.conv1.weight)


def test_unknown_preprocess_preset_is_an_error():
    with pytest.raises(AnomedError, match="preprocess preset"):
        load_backbone(BackboneConfig(model="anomed-tiny-b32", preprocess="imagenet"))


def test_vision_attention_runs_fused_sdpa(tiny_backbone):
    from torch.profiler import profile

    with torch.no_grad(), profile() as prof:
        tiny_backbone.encode_image(torch.rand(1, 3, 112, 112), [6])
    assert any("scaled_dot_product" in e.name for e in prof.events())


def test_compiled_blocks_give_the_same_tokens_and_state_dict():
    backbone = load_backbone(BackboneConfig(model="anomed-tiny", image_size=56))
    images = torch.rand(2, 3, 56, 56)
    with torch.no_grad():
        before = backbone.encode_image(images, [3, 6]).tapped
        text_before = backbone.encode_text(["a brain"])
    keys = list(backbone.state_dict())
    backbone.compile_blocks(backend="eager")  # the plumbing; inductor itself is torch's business
    with torch.no_grad():
        after = backbone.encode_image(images, [3, 6]).tapped
        text_after = backbone.encode_text(["a brain"])
    assert list(backbone.state_dict()) == keys  # checkpoints and fingerprints unaffected
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(text_before, text_after)


def test_text_towers_without_a_prompt_token_are_refused():
    from anomed.backbone.clip import FrozenCLIP, create_clip

    cfg = BackboneConfig(model="anomed-tiny")
    model = create_clip(cfg)
    model.text_pool_type = "none"  # no token to read a prompt's feature at
    with pytest.raises(AnomedError, match="pools by 'none'"):
        FrozenCLIP(model, cfg)


def test_cxr_preprocessing_uses_ppads_exact_constants():
    from anomed.backbone.clip import PREPROCESS_PRESETS

    mean, std = PREPROCESS_PRESETS["cxr"]  # PPAD's few_shot/train_*.py Normalize
    assert mean == (0.39799,) * 3 and std == (0.32721349,) * 3
