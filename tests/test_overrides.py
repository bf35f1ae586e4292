"""Command-line bundle overrides: KEY=VALUE read as YAML."""

from __future__ import annotations

import pytest

from hermes_monai.overrides import parse_override


def test_parse_override_reads_yaml_values() -> None:
    assert parse_override("max_epochs=30") == ("max_epochs", 30)
    assert parse_override("pixel_contrast_loss#min_pixels=4") == ("pixel_contrast_loss#min_pixels", 4)
    assert parse_override("decoder_channels=[8, 4]") == ("decoder_channels", [8, 4])
    assert parse_override("resume_from=null") == ("resume_from", None)
    assert parse_override("use_attention=false") == ("use_attention", False)
    assert parse_override("device=$torch.device('cpu')") == ("device", "$torch.device('cpu')")
    with pytest.raises(ValueError):
        parse_override("no_equals_sign")
