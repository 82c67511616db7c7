"""Every command that takes a pixel size reads it as the API does, and refuses a bad one before any work."""

from __future__ import annotations

import pytest
from roadseg.cli import main

#: Each command line up to its pixel-size option (other arguments are not needed: argparse reads the
#: option's value, and refuses it, before it checks what is missing).
COMMANDS = {
    "predict": ["predict", "--pixel-size"],
    "missing": ["missing", "image.png", "--pixel-size"],
    "graph": ["graph", "mask.png", "--pixel-size"],
    "apls": ["apls", "a.geojson", "b.geojson", "--pixel-size"],
    "export": ["export", "--checkpoint", "c.keras", "--model-dir", "m", "--predict-at"],
    "validate": ["validate", "run", "--predict-at"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "the pixel size must be above 0 and at most 1000 m, got 0"),
        ("-1", "the pixel size must be above 0 and at most 1000 m, got -1"),
        ("nan", "the pixel size must be above 0 and at most 1000 m, got nan"),
        ("1e4", "the pixel size must be above 0 and at most 1000 m, got 10000"),
    ],
)
def test_bad_pixel_sizes_are_refused_with_one_message(command, value, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*COMMANDS[command], value])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("value", ["abc", "auto"])
def test_words_are_refused_unless_auto_means_something(command, value, capsys):
    """Only `roadseg predict` lets the model choose the scale; elsewhere a word is not a pixel size."""
    if command == "predict" and value == "auto":
        return
    with pytest.raises(SystemExit) as exit_:
        main([*COMMANDS[command], value])
    assert exit_.value.code == 2
    expected = "a number of metres or 'auto'," if command == "predict" else "a number of metres,"
    assert f"the pixel size must be {expected} got {value!r}" in capsys.readouterr().err
