import pytest
import torch

from pointcanon.core.segmentation import category_parts, miou, restrict_to_category, shape_ious

PARTS = category_parts([0, 2, 5], 6)  # category 0: parts 0-1, category 1: parts 2-4, category 2: part 5


def test_perfect_prediction_scores_one():
    labels = torch.tensor([[0, 1, 1, 0], [2, 3, 4, 4]])
    cat = torch.tensor([0, 1])
    assert shape_ious(labels, labels, cat, PARTS).tolist() == [1.0, 1.0]


def test_part_absent_from_prediction_and_truth_counts_as_one():
    labels = torch.tensor([[2, 2, 3, 3]])  # part 4 absent in both
    pred = torch.tensor([[2, 2, 3, 2]])  # part 2: 2/3, part 3: 1/2, part 4: 1
    assert shape_ious(pred, labels, torch.tensor([1]), PARTS).item() == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)


def test_swapped_parts_score_zero():
    labels = torch.tensor([[0, 0, 1, 1]])
    assert shape_ious(1 - labels, labels, torch.tensor([0]), PARTS).item() == 0.0


def test_instance_and_class_miou_average_differently():
    ious = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    cat = torch.tensor([0, 0, 0, 1])
    m = miou(ious, cat)
    assert m["instance_miou"] == 0.75 and m["class_miou"] == 0.5


def test_prediction_is_restricted_to_the_category_parts():
    logits = torch.zeros(1, 3, 6)
    logits[0, :, 5] = 10  # part 5 is best overall but belongs to category 2
    logits[0, :, 3] = 1
    assert restrict_to_category(logits, torch.tensor([1]), PARTS).tolist() == [[3, 3, 3]]


def test_bad_labels_and_shapes_are_named():
    with pytest.raises(ValueError, match="outside its parts"):
        shape_ious(torch.zeros(1, 3, dtype=torch.long), torch.tensor([[0, 1, 4]]), torch.tensor([0]), PARTS)
    with pytest.raises(ValueError, match="category ids"):
        shape_ious(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long), torch.tensor([3]), PARTS)
    with pytest.raises(ValueError, match="differ in shape"):
        shape_ious(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long), torch.tensor([0]), PARTS)
    with pytest.raises(ValueError, match="offsets"):
        category_parts([0, 3, 3], 6)
