"""``python -m execloop.images build [train [--torch cpu]] [--from-registry] [--force]``: build
the images here."""

from __future__ import annotations

import argparse
import sys
import time

from execloop.errors import ExecloopError

from .build import build_images, build_train_image

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m execloop.images")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build the base and python sandbox images")
    build.add_argument(
        "image", nargs="?", choices=["python", "train"], default="python", help="train: on demand"
    )
    build.add_argument("--torch", choices=["cuda", "cpu"], default="cuda", help="train only")
    build.add_argument(
        "--from-registry", action="store_true", help="use python:3.11-slim, not debootstrap"
    )
    build.add_argument("--force", action="store_true", help="rebuild even if the tags exist")
    args = parser.parse_args(argv)

    start = time.monotonic()
    try:
        if args.image == "train":
            tags = build_train_image(
                variant=args.torch, from_registry=args.from_registry, force=args.force, log=print
            )
        else:
            tags = build_images(from_registry=args.from_registry, force=args.force, log=print)
    except ExecloopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"ready in {time.monotonic() - start:.0f} s: {' '.join(tags)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
