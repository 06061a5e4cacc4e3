"""Small datasets for the data-pipeline tests: MC²-format and JSONL files with generated images.

Never COCO: images are stand-ins drawn here (anchorlab.data.standins) or plain PIL pictures.
"""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

# MC²-format items (fields as in ../shared/data/mc2/evaluate_final.json, answers with MC²'s stray spaces)
MC2_ITEMS = [
    {"image_id": "000000046962", "task": "activity_recognition", "question": "What are the sheep doing?",
     "context": "Several sheep are bounding around in a field, playing together.", "answer_vision": "eating",
     "answer_text": " playing in a field "},
    {"image_id": "000000277961", "task": "counting", "question": "How many zebras are there?",
     "context": "Three zebras roam the enclosure.", "answer_vision": "two", "answer_text": "three"},
    {"image_id": "000000372428", "task": "color", "question": "What color is the bus?",
     "context": "A bright blue bus waits at the stop.", "answer_vision": "red", "answer_text": "blue"},
    {"image_id": "000000000139", "task": "counting", "question": "How many people are in the room?",
     "context": "Four people sit in the living room.", "answer_vision": "one", "answer_text": "four"},
    {"image_id": "000000581929", "task": "color", "question": "What color is the horse?",
     "context": "The horse in the pasture is black.", "answer_vision": "brown", "answer_text": "black"},
]

JSONL_ROWS = [
    {"id": "car", "image": "img/car.png", "question": "What color is the car?",
     "context": "The car parked outside is painted a bright blue.", "answer_vision": "red", "answer_text": "blue",
     "task": "color"},
    {"id": "dogs", "image": "img/dogs.png", "question": "How many dogs are there?",
     "context": "Three dogs are sleeping on the porch.", "answer_vision": "two", "answer_text": "three",
     "task": "counting", "options": {"vision": "2 dogs", "text": "3 dogs"}},
    {"id": "sheep", "image": "img/sheep.png", "question": "What are the sheep doing?",
     "context": "The sheep are playing in the field.", "answer_vision": "eating", "answer_text": "playing",
     "task": "activity"},
]


def write_mc2(folder: Path, items=MC2_ITEMS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "evaluate_final.json"
    path.write_text(json.dumps(items, indent=1))
    return path


def picture(seed: int, size=(40, 30)) -> Image.Image:
    return Image.new("RGB", size, (40 * seed % 256, 120, 200 - 30 * seed % 200))


def write_jsonl(folder: Path, rows=JSONL_ROWS, images: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "samples.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if images:
        for i, r in enumerate(rows):
            (folder / r["image"]).parent.mkdir(parents=True, exist_ok=True)
            picture(i).save(folder / r["image"])
    return path
