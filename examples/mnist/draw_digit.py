"""Draws a digit the way MNIST shows them (white on black, 28x28) with Pillow's own font.

``python draw_digit.py 0`` writes 0.png; make_weights.py trains on the same drawings.
"""

import sys

from PIL import Image, ImageDraw, ImageFont


def draw_digit(digit: int, shift: tuple[int, int] = (0, 0)) -> Image.Image:
    """``digit`` centred in a 28x28 greyscale image, moved by ``shift`` pixels."""
    image = Image.new("L", (28, 28), 0)
    font = ImageFont.load_default(size=22)
    ImageDraw.Draw(image).text((14 + shift[0], 14 + shift[1]), str(digit), fill=255, font=font, anchor="mm")
    return image


if __name__ == "__main__":
    digit = int(sys.argv[1])
    draw_digit(digit).save(f"{digit}.png")
    print(f"wrote {digit}.png")
