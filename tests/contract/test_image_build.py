"""The offline image builder against the real Docker daemon."""

from __future__ import annotations

import time
from typing import Any

import pytest

from execloop.images import build_images, images_status, python_image_tag
from execloop.sandboxes.reaper import LABEL_BACKEND, LABEL_OWNER, owner_id

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def built(docker_client: Any) -> str:
    """Build (or find) the images once for this module; return the python tag."""
    tags = build_images(docker_client)
    assert tags[-1] == python_image_tag()
    return tags[-1]


def test_python_image_exists_and_is_not_rebuilt(docker_client: Any, built: str) -> None:
    image_id = docker_client.images.get(built).id
    lines: list[str] = []
    start = time.monotonic()
    assert build_images(docker_client, log=lines.append)[-1] == built
    assert time.monotonic() - start < 10
    assert not [line for line in lines if line.startswith("Step ")], lines
    assert docker_client.images.get(built).id == image_id
    assert all(images_status(docker_client).values())


def test_image_runs_as_uid_1000(docker_client: Any, built: str) -> None:
    out = docker_client.containers.run(built, ["id", "-u"], remove=True, network_mode="none")
    assert out.decode().strip() == "1000"


def test_image_has_the_data_packages_and_the_helper(docker_client: Any, built: str) -> None:
    code = (
        "import numpy, pandas, pyarrow, scipy, sklearn, matplotlib, PIL, jsonschema, pytest;"
        "print('ok')"
    )
    out = docker_client.containers.run(
        built,
        ["/opt/execloop/venv/bin/python", "-c", code],
        remove=True,
        network_mode="none",
        read_only=True,
        tmpfs={"/tmp": "", "/workspace": ""},
    )
    assert out.decode().strip() == "ok"
    out = docker_client.containers.run(
        built, ["stat", "-c", "%a %U", "/opt/execloop/helper.py"], remove=True, network_mode="none"
    )
    assert out.decode().strip() == "644 root"


def test_image_labels(docker_client: Any, built: str) -> None:
    labels = docker_client.images.get(built).labels
    assert labels["org.execloop.image"] == "python"
    assert "org.execloop.stage" not in labels


def test_matplotlib_plots_on_a_read_only_root_without_a_display(
    docker_client: Any, built: str
) -> None:
    code = (
        "import warnings; warnings.simplefilter('error')\n"  # no "created a temporary cache"
        "import matplotlib, matplotlib.pyplot as plt\n"
        "plt.plot([1, 2], [2, 1]); plt.savefig('/tmp/plot.png')\n"
        "with open('/tmp/plot.png', 'rb') as png:\n"
        "    print(matplotlib.get_backend().lower(), png.read(4))"
    )
    out = docker_client.containers.run(
        built,
        ["python", "-c", code],
        remove=True,
        network_mode="none",
        read_only=True,
        user="1000:1000",
        environment={"HOME": "/tmp"},
        tmpfs={"/tmp": "", "/workspace": ""},
        stderr=True,
    )
    assert out.decode().strip() == "agg b'\\x89PNG'"


def test_the_image_records_its_packages_and_doctor_lists_them(
    docker_client: Any, built: str
) -> None:
    from execloop.images.packages import image_packages
    from execloop.runtime.doctor import run_doctor

    packages = image_packages(docker_client, built)
    assert packages is not None
    for name in ["numpy", "pandas", "matplotlib", "scipy", "scikit-learn", "pillow", "pyarrow"]:
        assert packages[name][0].isdigit(), name
    mine = {"label": [f"{LABEL_OWNER}={owner_id()}", f"{LABEL_BACKEND}=inspect"]}
    assert docker_client.containers.list(all=True, filters=mine) == []  # it read, it removed
    (finding,) = [f for f in run_doctor() if f.name == "image packages"]
    assert finding.ok, finding
    assert f"matplotlib {packages['matplotlib']}" in finding.detail
