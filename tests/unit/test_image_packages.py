"""Reading what the python image records about its packages (pure parts; the image itself is
read in tests/contract/test_image_build.py)."""

from __future__ import annotations

from execloop.images import load_inputs
from execloop.images.packages import normalize_name, parse_freeze, requirement_names


def test_freeze_lines_become_normalized_names_and_versions() -> None:
    text = "Pygments==2.21.0\nscikit_learn==1.9.1\n\n# comment\nnumpy==2.4.6\nweird line\n"
    assert parse_freeze(text) == {"pygments": "2.21.0", "scikit-learn": "1.9.1", "numpy": "2.4.6"}


def test_requirement_names_ignore_comments_markers_and_versions() -> None:
    text = b"# header\nnumpy>=1.26,<3\nScikit_Learn >= 1.4\n  pandas  # inline\n\n"
    assert requirement_names(text) == ["numpy", "scikit-learn", "pandas"]
    assert normalize_name("Zope.Interface") == "zope-interface"


def test_the_image_asks_for_the_data_science_stack() -> None:
    wanted = set(requirement_names(load_inputs().requirements))
    expected = {"numpy", "pandas", "matplotlib", "scipy", "scikit-learn", "pillow", "pyarrow"}
    assert expected <= wanted
