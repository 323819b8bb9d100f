import torch

from anomed.methods import create_method
from anomed.methods.condprompt import weighted_layer_map


def test_layer_weighting_by_hand():
    maps = torch.tensor([[[0.0, 2.0]], [[1.0, 1.0]]])  # (L=2, B=1, N=2): means 1.0 and 1.0
    fused, w = weighted_layer_map(maps)
    torch.testing.assert_close(w, torch.tensor([[0.5], [0.5]]))
    torch.testing.assert_close(fused, torch.tensor([[0.5, 1.5]]))
    maps = torch.tensor([[[0.0, 0.0]], [[1.0, 1.0]]])  # means 0 and 1 -> weights softmax(0, 1)
    fused, w = weighted_layer_map(maps)
    e = torch.exp(torch.tensor(1.0))
    torch.testing.assert_close(w[:, 0], torch.stack([1 / (1 + e), e / (1 + e)]))
    torch.testing.assert_close(fused, (e / (1 + e)).expand(1, 2))


def test_meta_net_and_prompts_get_gradients(tiny_backbone):
    method = create_method("condprompt", tiny_backbone, {"n_ctx": 4})
    mask = torch.zeros(2, 112, 112)
    mask[:, 20:50, 20:50] = 1
    method.training_step({"image": torch.rand(2, 3, 112, 112), "mask": mask})["loss"].backward()
    trained = {n.split(".")[0] for n, p in method.named_parameters() if p.grad is not None}
    assert trained == {"meta_net", "prompts"}
    assert method.meta_net[0].weight.grad.abs().sum() > 0


def test_prompts_depend_on_the_image_only_in_their_dependent_half(tiny_backbone):
    method = create_method("condprompt", tiny_backbone, {"n_ctx": 4})
    bias = torch.randn(2, tiny_backbone.text_width)
    emb = method.prompts.prompt_embeddings(bias)  # (B, P, L, W)
    ctx_rows = emb[:, method.prompts.is_ctx]  # (B, P * 8, W)
    per_prompt = ctx_rows.reshape(2, emb.shape[1], 8, -1)
    assert torch.equal(per_prompt[0, :, :4], per_prompt[1, :, :4])  # independent half
    assert not torch.allclose(per_prompt[0, :, 4:], per_prompt[1, :, 4:])


def test_output_and_topk_score(tiny_backbone):
    method = create_method("condprompt", tiny_backbone, {"n_ctx": 4, "score": "topk"})
    with torch.no_grad():
        out = method(torch.rand(2, 3, 112, 112))
    assert out.anomaly_map.shape == (2, 112, 112)
    assert float(out.anomaly_map.min()) >= 0 and float(out.anomaly_map.max()) <= 1
    assert (out.image_score <= out.anomaly_map.flatten(1).amax(1) + 1e-6).all()
