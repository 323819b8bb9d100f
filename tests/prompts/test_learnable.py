import torch

from anomed.prompts import PromptLearner, PromptSet, TextCache, class_means


def _learner(backbone, **kw):
    words = (("normal", "healthy"), ("lesion", "disease", "abnormal finding"))
    return PromptLearner(backbone, PromptSet(words, n_ctx=4, **kw))


def test_class_features_are_unit_vectors(tiny_backbone):
    feats = _learner(tiny_backbone)(tiny_backbone)
    assert feats.shape == (2, tiny_backbone.embed_dim)
    torch.testing.assert_close(feats.norm(dim=-1), torch.ones(2))


def test_only_context_vectors_get_gradients(tiny_backbone):
    learner = _learner(tiny_backbone)
    learner(tiny_backbone).sum().backward()
    assert [n for n, p in learner.named_parameters() if p.requires_grad] == ["ctx"]
    assert learner.ctx.grad is not None and learner.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in tiny_backbone.parameters())
    assert list(learner.state_dict()) == ["ctx"]


def test_class_specific_contexts_are_independent(tiny_backbone):
    learner = _learner(tiny_backbone)
    learner(tiny_backbone)[0].sum().backward()  # the normal class only
    assert learner.ctx.grad[0].abs().sum() > 0
    assert learner.ctx.grad[1].abs().sum() == 0


def test_context_is_spliced_at_placeholders(tiny_backbone):
    for placement in ("end", "front", "middle"):
        learner = _learner(tiny_backbone, placement=placement)
        emb = learner.prompt_embeddings()
        assert torch.equal(
            emb[learner.is_ctx], learner.ctx[learner.group].reshape(-1, emb.shape[-1])
        )
        assert torch.equal(emb[~learner.is_ctx], learner.frozen[~learner.is_ctx])


def test_render_places_the_word():
    ps = PromptSet((("x",),), n_ctx=4, prefix="left lung", suffix="brain")
    assert ps.render("normal") == "left lung X X X X normal brain."
    assert PromptSet((), n_ctx=2, placement="front").render("ok") == "ok X X."
    assert PromptSet((), n_ctx=2, placement="middle").render("ok") == "X ok X."


def test_context_bias_gives_per_image_features(tiny_backbone):
    learner = _learner(tiny_backbone)
    bias = torch.randn(3, tiny_backbone.text_width)
    feats = learner(tiny_backbone, ctx_bias=bias)
    assert feats.shape == (3, 2, tiny_backbone.embed_dim)
    zero = torch.zeros(1, tiny_backbone.text_width)
    torch.testing.assert_close(learner(tiny_backbone, ctx_bias=zero)[0], learner(tiny_backbone))


def test_class_means_by_hand():
    feats = torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.0, -1.0]])
    means = class_means(feats, torch.tensor([0, 0, 1]), 2)
    s = 2**-0.5
    torch.testing.assert_close(means, torch.tensor([[s, s], [0.0, -1.0]]))


def test_inference_reuses_class_features_until_the_context_changes(tiny_backbone):
    learner = PromptLearner(tiny_backbone, PromptSet((("normal",), ("tumor",)), n_ctx=4))
    cache = TextCache()

    def text():
        return cache.learnt("class", learner.parameters(), lambda: learner(tiny_backbone))

    with torch.no_grad():
        first = text()
        assert text() is first  # memoised: no text-tower pass per batch at inference
    optimizer = torch.optim.SGD(learner.parameters(), lr=1.0)
    text().sum().backward()  # with gradients: always a fresh graph
    optimizer.step()
    with torch.no_grad():
        stepped = text()
    assert stepped is not first and not torch.allclose(stepped, first)
    learner.load_state_dict({"ctx": torch.zeros_like(learner.ctx)})
    with torch.no_grad():
        loaded = text()
        assert not torch.allclose(loaded, stepped)
        torch.testing.assert_close(loaded, learner(tiny_backbone))


def test_memo_is_dropped_after_any_optimizer_step_even_fused(tiny_backbone):
    from anomed.methods import create_method

    method = create_method("mediclip", tiny_backbone, {"n_ctx": 4})
    optimizer = torch.optim.Adam(method.prompts.parameters(), lr=0.1, fused=True)  # no _version
    with torch.no_grad():
        before = method.class_text()
    method.class_text().sum().backward()
    optimizer.step()
    method.on_optimizer_step()  # what the training loop does after every step
    with torch.no_grad():
        assert not torch.allclose(method.class_text(), before)


def test_learner_keeps_no_backbone_and_borrowed_context_stays_outside(tiny_backbone):
    learner = _learner(tiny_backbone)
    assert not any(isinstance(m, type(tiny_backbone)) for m in learner.modules())
    borrowed = PromptLearner(
        tiny_backbone, PromptSet((("normal",), ("tumor",)), n_ctx=4), own_context=False
    )
    assert list(borrowed.state_dict()) == [] and list(borrowed.parameters()) == []
    ctx = torch.zeros(borrowed.context_shape)
    assert borrowed(tiny_backbone, ctx=ctx).shape == (2, tiny_backbone.embed_dim)
