"""Published rows print only beside runs whose method, dataset and protocol all match."""

import pytest

from anomed.engine.volumes import published_protocol_table
from anomed.published import published_metrics, published_rows, published_value


def test_no_rows_beside_another_dataset():
    assert published_rows("mvfa", 4, "busi", "Dataset_BUSI") == {}  # six organs, no BUSI
    assert published_rows("mvfa", 0, "busi") == {}


def test_no_average_or_other_k_beside_a_run():
    assert published_rows("madclip", 4, "busi") == {}  # a k=16 average never stands in
    assert published_rows("madclip", 4, "average") == {}
    assert published_rows("ppad", 8, "chest", "zhanglab") == {}  # k=64 rows, a k=8 run
    assert published_rows("mvfa", 32, "brain") == {}  # no k=32 in the tables


def test_matching_rows_print_with_their_protocol():
    rows = published_rows("madclip", 4, "liver", "Liver_AD")
    assert list(rows.values()) == [pytest.approx({"image_auroc": 0.8297, "pixel_auroc": 0.9929})]
    assert "few-shot k=4" in next(iter(rows))
    rows = published_rows("ppad", 64, "chest", "zhanglab")  # PPAD names datasets, not organs
    assert next(iter(rows.values()))["image_auroc"] == pytest.approx(0.967)


def test_mlalp_tables_1_and_2():
    assert published_value("mlalp", "retina_resc", 0, "pixel_auroc") == 92.27  # Table 1
    assert published_value("mlalp", "liver", 16, "image_auroc") == 92.75  # Table 2
    assert published_value("mlalp", "histopathology", 2, "image_auroc") == 71.45
    assert published_value("mvfa", "chest", 8, "image_auroc") == 83.89  # quoted there


def test_never_beside_a_phantom():
    assert published_rows("mvfa", 4, "brain", "phantom-bmad") == {}


def test_condprompt_poster_rows():
    assert published_metrics("condprompt", "zero-shot", "chest") == {"image_auroc": 0.5547}
    table = published_protocol_table("condprompt", "/nonexistent/cases")
    assert "| t1ce | 85.97 | 83.52 | 84.74 |" in table and "trained on T1 axial" in table
    assert published_protocol_table("mediclip", "/nonexistent/cases") == ""
