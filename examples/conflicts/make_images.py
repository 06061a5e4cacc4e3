"""Regenerate the example images: a coloured square on grey, one per sample (run from anywhere)."""
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
SQUARES = {  # image file -> RGB of the square (what the image shows: answer_vision)
    "red_square.png": (215, 35, 35),
    "green_square.png": (40, 165, 60),
    "blue_square.png": (35, 70, 215),
    "yellow_square.png": (240, 220, 40),
    "purple_square.png": (135, 45, 175),
    "orange_square.png": (245, 135, 25),
}


def main() -> None:
    (HERE / "images").mkdir(exist_ok=True)
    for i, (name, rgb) in enumerate(SQUARES.items()):
        grey = 90 + 20 * i
        image = Image.new("RGB", (32, 32), (grey, grey, grey))
        image.paste(rgb, (6 + i % 3, 7, 24 + i % 3, 25))
        image.save(HERE / "images" / name)


if __name__ == "__main__":
    main()
