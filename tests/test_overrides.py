"""Command-line values: KEY=VALUE parsed as the monai.bundle command line does, and the bool switches."""

from __future__ import annotations

import pytest

from hermes_monai.overrides import as_bool, parse_override


def test_parse_override_values_like_the_bundle_command_line() -> None:
    assert parse_override("max_epochs=30") == ("max_epochs", 30)
    assert parse_override("seg_lr=1e-3") == ("seg_lr", 0.001)  # YAML 1.1 would give the string '1e-3'
    assert isinstance(parse_override("seg_lr=1e-3")[1], float)
    assert parse_override("pixel_contrast_loss#min_pixels=4") == ("pixel_contrast_loss#min_pixels", 4)
    assert parse_override("decoder_channels=[8, 4]") == ("decoder_channels", [8, 4])
    assert parse_override("resume_from=null") == ("resume_from", None)
    assert parse_override("resume_from=None") == ("resume_from", None)
    assert parse_override("use_attention=false") == ("use_attention", False)
    assert parse_override("use_attention=False") == ("use_attention", False)
    assert parse_override("encoder=resnet34") == ("encoder", "resnet34")
    assert parse_override("device=$torch.device('cpu')") == ("device", "$torch.device('cpu')")
    assert parse_override("ckpt=@a#b") == ("ckpt", "@a#b")  # not cut at '#'
    with pytest.raises(ValueError):
        parse_override("no_equals_sign")


def test_as_bool_accepts_spellings_and_refuses_the_rest() -> None:
    assert as_bool(True) is True and as_bool(0) is False
    assert as_bool("false") is False and as_bool("TRUE") is True and as_bool("no") is False
    with pytest.raises(TypeError, match="use_attention must be true or false, got 'maybe'"):
        as_bool("maybe", "use_attention")
    with pytest.raises(TypeError):
        as_bool(None, "use_saliency")
