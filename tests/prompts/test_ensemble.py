from anomed.prompts.ensemble import ABNORMAL_STATES, NORMAL_STATES, TEMPLATES, ensemble_texts


def test_states_times_templates():
    normal, abnormal = ensemble_texts("brain")
    assert len(TEMPLATES) == 35
    assert len(normal) == len(NORMAL_STATES) * 35 and len(abnormal) == len(ABNORMAL_STATES) * 35
    assert all("brain" in t and "{}" not in t for t in normal + abnormal)
    assert "a photo of a damaged brain." in abnormal
    assert "a photo of a brain without defect." in normal


def test_ensemble_features_are_class_means(tiny_backbone):
    from anomed.prompts import encode_fixed_prompts

    feats = encode_fixed_prompts(tiny_backbone, list(ensemble_texts("liver")))
    assert feats.shape == (2, tiny_backbone.embed_dim)
