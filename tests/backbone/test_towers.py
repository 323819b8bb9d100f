"""The tower adapters on the tiny BiomedCLIP-, SigLIP- and SigLIP2-shaped backbones and a bare timm
ViT with a register token: open_clip's own features, the token layout, prompts as embeddings."""

from __future__ import annotations

import pytest
import torch

from anomed.backbone import BackboneConfig, load_backbone
from anomed.errors import AnomedError
from anomed.prompts import PromptLearner, PromptSet
from anomed.prompts.learnable import PLACEHOLDER, class_means

TINY = ["anomed-tiny-biomedclip", "anomed-tiny-siglip", "anomed-tiny-siglip2"]


@pytest.fixture(scope="module", params=TINY)
def backbone(request):
    return load_backbone(BackboneConfig(model=request.param, image_size=112))


def test_the_shapes_are_what_their_configs_say(backbone):
    kinds = {
        "anomed-tiny-biomedclip": ("timm-vit", "hf-text", "softmax", True),
        "anomed-tiny-siglip": ("timm-vit", "open_clip-text", "sigmoid", False),
        "anomed-tiny-siglip2": ("timm-vit", "open_clip-text", "sigmoid", False),
    }
    vision, text, scoring, cls = kinds[backbone.cfg.model]
    assert (backbone.vision.kind, backbone.text.kind) == (vision, text)
    assert backbone.text_scoring == scoring and backbone.vision.has_class_token is cls
    assert backbone.text.causal is False  # BERT and SigLIP's text tower: bidirectional
    assert backbone.grid_size == (7, 7) and backbone.depth == 6
    mean = {"softmax": 0.48145466, "sigmoid": 0.5}[scoring]  # OpenAI's, or SigLIP's 0.5
    assert float(backbone.pixel_mean[0, 0]) == pytest.approx(mean)


def test_global_image_features_equal_open_clips_encode_image(backbone):
    images = torch.rand(2, 3, 112, 112)
    with torch.no_grad():
        ours = backbone.encode_image(images, [2, backbone.depth])
        theirs = backbone.model.encode_image(backbone.normalize(images))
    torch.testing.assert_close(ours.image_embedding, theirs, rtol=0, atol=1e-5)
    assert [t.shape for t in ours.tapped] == [(2, 1 + 49, backbone.vision_width)] * 2


def test_index_0_is_the_class_token_or_the_mean_of_the_patches(backbone):
    with torch.no_grad():
        tokens = backbone.encode_image(torch.rand(1, 3, 112, 112), [3]).tapped[0]
    mean = tokens[:, 1:].mean(dim=1)
    assert torch.allclose(tokens[:, 0], mean) is (not backbone.vision.has_class_token)


def test_plain_text_equals_open_clips_encode_text(backbone):
    texts = ["a photo of a flawless brain.", "damaged liver", "lesion"]
    with torch.no_grad():
        theirs = backbone.model.encode_text(backbone.tokenize(texts))
    torch.testing.assert_close(backbone.encode_text(texts), theirs, rtol=0, atol=1e-5)


def test_context_set_to_the_placeholder_word_equals_the_plain_text(backbone):
    """The learnable-prompt path (embeddings in) with its context vectors at the placeholder's
    own word embedding is the plain-text path of the rendered prompts."""
    prompts = PromptSet((("normal brain",), ("lesion",)), n_ctx=4)
    learner = PromptLearner(backbone, prompts, "shared")
    x_id = backbone.placeholder_id(PLACEHOLDER)
    word = backbone.token_embeddings(torch.tensor([[x_id]]))[0, 0]
    with torch.no_grad():
        learner.ctx.copy_(word.expand_as(learner.ctx))
        ours = learner(backbone)
        plain = backbone.encode_text(learner.texts)
    expected = class_means(plain, learner.prompt_class, 2)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)


def test_whole_image_window_equals_the_global_embedding(backbone):
    """WinCLIP's masked windows: a window of every patch is the full pass."""
    images = torch.rand(2, 3, 112, 112)
    every = torch.arange(49)[None]
    with torch.no_grad():
        window = backbone.encode_token_subsets(images, every)[:, 0]
        full = backbone.encode_image(images, [backbone.depth]).image_embedding
    torch.testing.assert_close(window, full, rtol=0, atol=1e-5)


def test_projected_tokens_live_in_the_joint_space(backbone):
    tokens = torch.randn(2, 5, backbone.vision_width)
    assert backbone.project_tokens(tokens).shape == (2, 5, backbone.embed_dim)


def test_bare_timm_vit_with_registers_is_an_image_only_tower():
    """timm's test_vit2: one register token, no class token, average pooling."""
    bb = load_backbone(BackboneConfig(model="timm:test_vit2", image_size=64))
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = bb.encode_image(images, [4, bb.depth])
        theirs = bb.model(bb.normalize(images))
        identity = bb.encode_image(images, [4], block_hook=lambda i, x: x).tapped[0]
    assert not bb.has_text and bb.vision.prefix == 1
    assert [t.shape for t in out.tapped] == [(2, 1 + 16, 64)] * 2  # the register is dropped
    torch.testing.assert_close(out.image_embedding, theirs, rtol=0, atol=1e-5)
    torch.testing.assert_close(identity, out.tapped[0])
    with pytest.raises(AnomedError, match="image-only model"):
        bb.encode_text(["a brain"])


def test_unknown_timm_name_is_one_line():
    with pytest.raises(AnomedError, match="unknown timm model 'vit_nosuch'"):
        load_backbone(BackboneConfig(model="timm:vit_nosuch"))


def test_prompts_longer_than_the_text_context_are_refused():
    bb = load_backbone(BackboneConfig(model="anomed-tiny-siglip", image_size=112))
    with pytest.raises(AnomedError, match="does not fit the 64-token text context"):
        PromptLearner(bb, PromptSet((("normal",), ("lesion",)), n_ctx=64))
