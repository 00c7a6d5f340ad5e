"""labels.py: the fixed finding order and the NIH ChestX-ray14 map."""

from __future__ import annotations

import math

import pytest

from cxrassist.labels import (
    CHESTXRAY14_LABELS,
    DATASET_LABEL_MAP,
    FINDING_CODES,
    NUM_FINDINGS,
    chestxray14_to_findings,
    finding,
    index_of,
    map_labels,
)


def nih_row(**positives: int) -> dict[str, int]:
    row = dict.fromkeys(CHESTXRAY14_LABELS, 0)
    row.update(positives)
    return row


def test_fixed_order_and_lookup():
    assert NUM_FINDINGS == 13
    assert FINDING_CODES == ("AT", "CA", "CO", "ED", "PE", "PN", "PX", "EC", "LL", "AO", "PO", "FR", "SD")
    assert finding("px").name == "Pneumothorax" and finding("pleural effusion").code == "PE"
    assert index_of("Support Devices") == 12
    with pytest.raises(KeyError):
        finding("Hernia")


def test_nih_map_positives():
    out = chestxray14_to_findings(nih_row(Effusion=1, Nodule=1, Pleural_Thickening=1))
    assert out[index_of("Pleural Effusion")] == 1.0
    assert out[index_of("Lung Lesion")] == 1.0  # Nodule alone, Mass negative
    assert out[index_of("Pleural Other")] == 1.0
    assert out[index_of("Atelectasis")] == 0.0
    out = chestxray14_to_findings(nih_row(Mass=1))
    assert out[index_of("Lung Lesion")] == 1.0


def test_nih_map_negatives_and_unknowns():
    out = chestxray14_to_findings(nih_row(Emphysema=1, Hernia=1))  # no CheXpert counterpart
    for name in ("Pleural Effusion", "Lung Lesion", "Pleural Other", "Lung Opacity"):
        assert out[index_of(name)] == 0.0
    for name in ("Enlarged Cardiomediastinum", "Fracture", "Support Devices"):  # NIH says nothing
        assert math.isnan(out[index_of(name)])


def test_missing_and_nan_sources_stay_unknown():
    out = chestxray14_to_findings({"Effusion": float("nan"), "Cardiomegaly": None})
    assert all(math.isnan(v) for v in out)


def test_dataset_map():
    out = map_labels({"tb": 1}, DATASET_LABEL_MAP)
    assert out[index_of("Lung Opacity")] == 1.0 and math.isnan(out[index_of("Pneumonia")])
