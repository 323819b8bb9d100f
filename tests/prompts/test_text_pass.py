"""The learnable prompts' text pass: causal (CLIP) vs bidirectional (the MediCLIP and MadCLIP
references) against a hand-written transformer, and the wording/context switches."""

import math

import torch
import torch.nn.functional as F

from anomed.prompts import PromptLearner, PromptSet


def _by_hand(backbone, emb: torch.Tensor, ids: torch.Tensor, causal: bool) -> torch.Tensor:
    """CLIP's text tower written out: pre-norm blocks, multi-head attention (with or without
    the causal mask), ln_final, the end-of-text token, the projection."""
    t = backbone.text_tower
    x = emb + t.positional_embedding
    n = x.shape[1]
    mask = torch.full((n, n), float("-inf")).triu(1) if causal else torch.zeros(n, n)
    for block in t.transformer.resblocks:
        attn = block.attn
        h = block.ln_1(x)
        q, k, v = (h @ attn.in_proj_weight.t() + attn.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (z.reshape(z.shape[0], n, attn.num_heads, -1).transpose(1, 2) for z in (q, k, v))
        w = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + mask).softmax(-1)
        a = (w @ v).transpose(1, 2).reshape(x.shape)
        x = x + attn.out_proj(a)
        x = x + block.mlp(block.ln_2(x))
    x = t.ln_final(x)[torch.arange(x.shape[0]), ids.argmax(-1)]
    return x @ t.text_projection


def test_causal_and_bidirectional_passes_match_a_hand_written_transformer(tiny_backbone):
    ids = tiny_backbone.tokenize(["X X X X lesion.", "X X normal brain."])
    emb = tiny_backbone.token_embeddings(ids) + 0.1 * torch.randn(2, ids.shape[1], 128)
    with torch.no_grad():
        for causal in (True, False):
            ours = tiny_backbone.encode_text_embeddings(emb, ids, causal=causal)
            expected = _by_hand(tiny_backbone, emb, ids, causal)
            torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
        causal_out = tiny_backbone.encode_text_embeddings(emb, ids, causal=True)
        both_ways = tiny_backbone.encode_text_embeddings(emb, ids, causal=False)
    assert (causal_out - both_ways).abs().max() > 1e-3  # padding and later tokens now count


def test_per_prompt_context_and_raw_mean(tiny_backbone):
    words = (("normal", "healthy"), ("lesion", "disease", "tumor"))
    learner = PromptLearner(
        tiny_backbone, PromptSet(words, n_ctx=4), "per_prompt", prompt_mean="raw"
    )
    assert learner.ctx.shape[0] == 5 and learner.group.tolist() == [0, 1, 2, 3, 4]
    learner(tiny_backbone)[1].sum().backward()  # the abnormal class only
    grads = learner.ctx.grad.abs().sum(dim=(1, 2))
    assert bool((grads[:2] == 0).all()) and bool((grads[2:] > 0).all())
    with torch.no_grad():
        emb = learner.prompt_embeddings()
        feats = tiny_backbone.encode_text_embeddings(emb, learner.token_ids)
        expected = F.normalize(torch.stack([feats[:2].mean(0), feats[2:].mean(0)]), dim=-1)
        torch.testing.assert_close(learner(tiny_backbone), expected)


def test_a_word_with_braces_takes_the_organ_inside_the_placed_phrase():
    ps = PromptSet((), n_ctx=2, placement=("end", "front", "middle"), suffix="brain")
    assert ps.render_all("{} without flaw") == [
        "X X brain without flaw.",
        "brain without flaw X X.",
        "X brain without flaw X.",
    ]
    assert ps.render("{}") == "X X brain."
    assert ps.render("flawless", "front") == "flawless X X brain."  # no braces: organ last
