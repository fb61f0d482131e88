"""TrainConfig: every field is checked when a config is made."""

import pytest

from resnet_lab.config import TrainConfig

# ---------------------------------------------------------------- from the reliability issues


@pytest.mark.parametrize(
    "field, value",
    [
        ("eval_every", 0),
        ("crop_pad", -3),
        ("epochs", 0),
        ("lr", -0.1),
        ("lr", float("nan")),
        ("momentum", 1.5),
        ("batch_size", 2.5),
        ("label_smoothing", 1.0),
        ("warmup", -1),
        ("seed", -1),
        ("device", "gpu"),
        ("nesterov", "yes"),
        ("channels_last", "sometimes"),
        ("lr_scales", {"backbone": -1}),
        ("optimizer", "rmsprop"),
    ],
)
def test_every_config_field_is_validated_by_name(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field} must be"):
        TrainConfig(**{field: value})
