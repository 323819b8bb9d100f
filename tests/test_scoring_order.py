"""Map order switches on hand-made logits: softmax -> upsample vs upsample -> softmax."""

import torch
import torch.nn.functional as F

from anomed.scoring import class_maps, upsample


def test_the_two_orders_on_hand_made_logits():
    # (1, 4, 2): a 2x2 grid of two-class logits
    logits = torch.tensor([[[4.0, 0.0], [0.0, 4.0], [0.0, 0.0], [2.0, -2.0]]])
    grid, size = (2, 2), (5, 5)
    as_grid = logits.transpose(1, 2).reshape(1, 2, 2, 2)
    first = class_maps([logits], grid, size, "softmax_upsample", align_corners=True)[0]
    expected = F.interpolate(as_grid.softmax(1), size=size, mode="bilinear", align_corners=True)
    torch.testing.assert_close(first, expected)
    second = class_maps([logits], grid, size, "upsample_softmax", align_corners=True)[0]
    expected = F.interpolate(as_grid, size=size, mode="bilinear", align_corners=True).softmax(1)
    torch.testing.assert_close(second, expected)
    # the corners keep the patch values with align_corners=True; between patches they differ
    torch.testing.assert_close(first[..., 0, 0], second[..., 0, 0])
    assert (first[:, :, 2, 2] - second[:, :, 2, 2]).abs().max() > 0.05


def test_align_corners_switch_reaches_the_interpolation():
    maps = torch.arange(4.0).reshape(1, 1, 2, 2)
    assert float(upsample(maps, 4, align_corners=True)[0, 0, 0, -1]) == 1.0
    assert float(upsample(maps, 4, align_corners=False)[0, 0, 0, -1]) == 1.0
    assert float(upsample(maps, 4, align_corners=True)[0, 0, 0, 1]) != float(
        upsample(maps, 4, align_corners=False)[0, 0, 0, 1]
    )
