"""A decoder comparison's curves CSV: a row per epoch, a column per model and measure."""

import pytest

from clipprobe.decoders.curves import per_epoch


def test_one_row_per_epoch_and_one_column_per_model_and_measure():
    table = per_epoch({
        "clip": [{"epoch": 1, "val_loss": 0.5}, {"epoch": 2, "val_loss": 0.4}],
        "unet": [{"epoch": 1, "val_loss": 0.9}, {"epoch": 2, "val_loss": 0.3}],
    })  # fmt: skip
    assert table.columns == ["epoch", "clip.val_loss", "unet.val_loss"]
    assert table.rows == [
        {"epoch": 1, "clip.val_loss": 0.5, "unet.val_loss": 0.9},
        {"epoch": 2, "clip.val_loss": 0.4, "unet.val_loss": 0.3},
    ]


def test_models_that_trained_unequal_epochs_are_refused():
    with pytest.raises(ValueError, match="every model trains the same epochs"):
        per_epoch({"clip": [{"epoch": 1, "val_loss": 0.5}], "unet": []})
