"""Published rows print only beside runs whose method, dataset, protocol and test split match."""

import pytest
from shared_data import shared_dataset

from anomed.data.layouts import load_dataset
from anomed.engine.volumes import published_protocol_table
from anomed.published import (
    SPLITS,
    SetFingerprint,
    fingerprint_of,
    published_metrics,
    published_rows,
    published_value,
)

BUSI = SPLITS["mediclip/busi"]
ON_BUSI = SetFingerprint(BUSI.fingerprint, BUSI.n_test, BUSI.n_abnormal)  # MediCLIP's split


def test_no_rows_beside_another_dataset():
    assert published_rows("mvfa", 4, "busi", "Dataset_BUSI", ON_BUSI) == ({}, "")
    assert published_rows("mvfa", 0, "busi", "", ON_BUSI) == ({}, "")  # six organs, no BUSI


def test_no_average_or_other_k_beside_a_run():
    assert published_rows("madclip", 4, "busi", "", ON_BUSI) == ({}, "")  # no k=16 average
    assert published_rows("madclip", 4, "average", "", None) == ({}, "")
    assert published_rows("ppad", 8, "chest", "zhanglab", None) == ({}, "")  # k=64 rows only
    assert published_rows("mvfa", 32, "brain", "", None) == ({}, "")  # no k=32 in the tables
    assert published_rows("mediclip", 64, "busi", "", ON_BUSI) == ({}, "")


def test_the_row_prints_beside_the_papers_split_with_its_protocol():
    rows, note = published_rows("mediclip", 16, "busi", "busi", ON_BUSI)
    assert note == "" and "few-shot k=16" in next(iter(rows))
    assert next(iter(rows.values())) == pytest.approx({"image_auroc": 0.908, "pixel_auroc": 0.899})


def test_another_split_of_busi_gets_the_message_and_no_row(tmp_path):
    ours = SetFingerprint("0" * 64, 780, 647)  # the user's own split of the same images
    rows, note = published_rows("mediclip", 4, "busi", "busi", ours)
    assert rows == {}
    assert note.startswith("published figures are for MediCLIP's split of BUSI; this test set")
    assert "780 images" in note  # the counts say how
    same_counts = SetFingerprint("1" * 64, BUSI.n_test, BUSI.n_abnormal)
    assert published_rows("mediclip", 4, "busi", "busi", same_counts)[1].endswith("differs")


def test_a_folder_named_busi_that_is_not_the_split(tmp_path):
    from PIL import Image

    root = tmp_path / "busi"
    for split, label in (("train", "normal"), ("test", "normal"), ("test", "abnormal")):
        (root / split / label).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (8, 8), 40 * i).save(root / split / label / f"{label}_{i}.png")
    splits = load_dataset(root)
    test = fingerprint_of(splits.test, splits.root)
    assert (test.n_test, test.n_abnormal) == (6, 3)
    rows, note = published_rows("mediclip", 4, "busi", splits.name, test)
    assert rows == {} and "MediCLIP's split of BUSI; this test set differs" in note


def test_unknown_splits_never_print_a_row_and_say_why():
    # BMAD as MVFA packs it: no file list recorded, so no folder can prove it is that split
    anything = SetFingerprint("2" * 64, 10, 5)
    rows, note = published_rows("madclip", 4, "liver", "Liver_AD", anything)
    assert rows == {} and "MVFA" in note and "no record of that split's file list" in note
    assert published_rows("mvfa", 4, "brain", "phantom-bmad", anything)[0] == {}  # phantoms too
    rows, note = published_rows("ppad", 64, "chest", "zhanglab", SetFingerprint("3" * 64, 624, 390))
    assert rows == {} and "ZhangLab" in note  # counts match, the list is unknown
    assert "624" in published_rows("ppad", 64, "chest", "zhanglab", anything)[1]
    assert "older anomed" in published_rows("mediclip", 4, "busi", "busi", None)[1]


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["busi", "brainmri"])
def test_mediclips_own_split_gets_the_row(name):
    splits = load_dataset(shared_dataset(name))
    test = fingerprint_of(splits.test, splits.root)
    rows, note = published_rows("mediclip", 4, name, splits.name, test)
    assert note == "" and len(rows) == 1


@pytest.mark.shared_data
def test_busi_with_one_test_image_less_is_not_the_split():
    splits = load_dataset(shared_dataset("busi"))
    test = fingerprint_of(splits.test[1:], splits.root)
    assert published_rows("mediclip", 4, "busi", "busi", test)[0] == {}


def test_mlalp_tables_1_and_2():
    assert published_value("mlalp", "retina_resc", 0, "pixel_auroc") == 92.27  # Table 1
    assert published_value("mlalp", "liver", 16, "image_auroc") == 92.75  # Table 2
    assert published_value("mlalp", "histopathology", 2, "image_auroc") == 71.45
    assert published_value("mvfa", "chest", 8, "image_auroc") == 83.89  # quoted there


def test_condprompt_poster_rows():
    assert published_value("condprompt", "chest", 0, "image_auroc") == 55.47
    assert published_metrics("condprompt", "zero-shot", "chest", "", None) is None  # no split
    table = published_protocol_table("condprompt", "/nonexistent/cases")
    assert "| t1ce | 85.97 | 83.52 | 84.74 |" in table and "trained on T1 axial" in table
    assert published_protocol_table("mediclip", "/nonexistent/cases") == ""
