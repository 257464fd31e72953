"""Short names for execloop's own images: ``execloop/train`` means this install's hashed tag.

A spec names an image by reference; without a tag, ``execloop/python``, ``execloop/train``
and ``execloop/train-cpu`` resolve to the tag computed from the shipped inputs (the image
``execloop images build [train]`` makes), whose helper matches this install's. Any other
reference, a hashed execloop tag included, is run as given.
"""

from __future__ import annotations

from .tags import PYTHON_REPO, python_image_tag
from .train_image import TRAIN_REPOS, train_image_tag

__all__ = ["SHORT_NAMES", "own_image_tag", "same_packages"]

SHORT_NAMES: tuple[str, ...] = (PYTHON_REPO, *TRAIN_REPOS.values())


def own_image_tag(image: str | None) -> str | None:
    """The tag of execloop's own image that ``image`` names (None names the python image), or
    None when ``image`` is another reference."""
    if image is None or image == PYTHON_REPO:
        return python_image_tag()
    for variant, repo in TRAIN_REPOS.items():
        if image == repo:
            return train_image_tag(variant)
    return None


def same_packages(image: str, other: str) -> bool:
    """Whether ``image`` has the packages ``other`` has: the same reference, or both a train
    image (the variants differ only in their torch build, CUDA or CPU). A skill that needs
    ``execloop/train`` then runs on ``execloop/train-cpu`` where only that one is built."""
    if image == other:
        return True
    repos = set(TRAIN_REPOS.values())
    return image.partition(":")[0] in repos and other.partition(":")[0] in repos
