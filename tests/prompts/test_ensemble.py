import pytest

from anomed.prompts.ensemble import ABNORMAL_STATES, NORMAL_STATES, TEMPLATES, ensemble_texts


def test_states_times_templates():
    assert (len(NORMAL_STATES), len(ABNORMAL_STATES), len(TEMPLATES)) == (7, 5, 35)
    assert len(set(TEMPLATES)) == 35
    normal, abnormal = ensemble_texts("brain")
    assert (len(normal), len(abnormal)) == (7 * 35, 5 * 35)
    assert len(set(normal + abnormal)) == len(normal) + len(abnormal)


@pytest.mark.parametrize("organ", ["brain", "retinal OCT", "Chest X-ray film"])
def test_every_sentence_names_the_organ_and_is_filled(organ):
    normal, abnormal = ensemble_texts(organ)
    assert all(organ in t and "{" not in t and "}" not in t for t in normal + abnormal)


def test_known_sentences_in_state_major_order():
    normal, abnormal = ensemble_texts("liver")
    assert normal[0] == "a bad photo of a liver."
    assert normal[35] == "a bad photo of a flawless liver."
    assert abnormal[-1] == "this is one liver with damage in the scene."
    assert "a photo of a damaged liver." in abnormal
    assert "a photo of a liver without defect." in normal
    assert "there is a broken liver in the scene." in abnormal


def test_organ_word_with_braces_is_taken_literally():
    normal, _ = ensemble_texts("{x}")
    assert normal[0] == "a bad photo of a {x}."


def test_empty_organ_word_is_refused():
    with pytest.raises(ValueError, match="organ"):
        ensemble_texts(" ")


def test_ensemble_features_are_class_means(tiny_backbone):
    from anomed.prompts import encode_fixed_prompts

    feats = encode_fixed_prompts(tiny_backbone, list(ensemble_texts("liver")))
    assert feats.shape == (2, tiny_backbone.embed_dim)
