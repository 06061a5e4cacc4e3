"""Stand-in images for a dataset whose real images are not at hand (MC²'s are COCO photos).

They only let the pipeline run end to end (tests, a first try without COCO): a deterministic
picture per image id, written under the file names the source looks for. Results on stand-ins
mean nothing about a model.
"""
from __future__ import annotations

import hashlib
import random
from pathlib import Path

from PIL import Image, ImageDraw

from ..errors import UserError

LAYOUTS = ("coco_val", "coco_train", "plain")


def standin(key: str, size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A few coloured shapes on a coloured ground, a pure function of `key`."""
    rng = random.Random(hashlib.sha256(key.encode()).hexdigest())
    image = Image.new("RGB", size, tuple(rng.randint(0, 255) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x0, y0 = rng.randint(0, size[0] - 8), rng.randint(0, size[1] - 8)
        box = (x0, y0, rng.randint(x0 + 4, size[0]), rng.randint(y0 + 4, size[1]))
        fill = tuple(rng.randint(0, 255) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
    return image


def mc2_name(image_id: str, layout: str) -> str:
    padded = image_id.zfill(12)
    return {"coco_val": f"COCO_val2014_{padded}.jpg", "coco_train": f"COCO_train2014_{padded}.jpg",
            "plain": f"{padded}.jpg"}[layout]


def write_standins(records, out_dir: str | Path, layout: str = "coco_val", size=(64, 48)) -> list[Path]:
    """One JPEG per distinct MC² image id of `records`, named as in `layout`, under `out_dir`."""
    if layout not in LAYOUTS:
        raise UserError(f"--layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for r in records:
        image_id = r.extra.get("image_id")
        if image_id is None:
            raise UserError(f"{r.where}: stand-in images are for MC² (COCO image ids); this sample has none")
        if image_id not in written:
            written[image_id] = out_dir / mc2_name(image_id, layout)
            standin(image_id, size).save(written[image_id], quality=90)
    return list(written.values())
