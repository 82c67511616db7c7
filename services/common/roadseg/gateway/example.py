"""A synthetic aerial-looking image for the page's "example image" button.

Drawn by code so the project ships no third-party imagery: sandy textured ground, a curved main
road and straight side streets (dark asphalt with a dashed centre line), roofs and trees. Seeded,
so every click shows the same picture.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 768
ROOFS = ((190, 90, 70), (205, 205, 200))
ASPHALT = (52, 52, 56)


def example_png(seed: int = 7) -> bytes:
    """The example image as PNG bytes (768 x 768 RGB)."""
    rng = np.random.default_rng(seed)
    ground = rng.normal(0, 10, (SIZE, SIZE, 1)) + np.array([176, 160, 128])
    img = Image.fromarray(np.clip(ground, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.2))
    draw = ImageDraw.Draw(img)
    xs = np.arange(-20, SIZE + 20, 8)
    main_road = [(float(x), 300 + 90 * np.sin(x / 170)) for x in xs]
    streets = [[(x, -10), (x + 40, SIZE + 10)] for x in (140, 420, 650)] + [[(-10, 640), (SIZE + 10, 600)]]
    for line, width in [(main_road, 26)] + [(s, 16) for s in streets]:
        draw.line(line, fill=ASPHALT, width=width, joint="curve")
    for a, b in zip(main_road[::2], main_road[1::2], strict=False):
        draw.line([a, b], fill=(225, 215, 150), width=2)
    for _ in range(40):
        x, y = rng.integers(0, SIZE, 2)
        w, h = rng.integers(24, 60, 2)
        roof = ROOFS[int(rng.integers(len(ROOFS)))]
        if not _near_road(img, x, y, w, h):
            draw.rectangle([x, y, x + w, y + h], fill=roof)
    for _ in range(120):
        x, y = rng.integers(0, SIZE, 2)
        r = int(rng.integers(5, 12))
        if not _near_road(img, x - r, y - r, 2 * r, 2 * r):
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(60, 95, 50))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _near_road(img: Image.Image, x: int, y: int, w: int, h: int) -> bool:
    """Whether a box overlaps asphalt already drawn (so roofs and trees do not hide the roads)."""
    box = np.asarray(img.crop((x - 4, y - 4, x + w + 4, y + h + 4)))
    return bool((np.abs(box.astype(int) - ASPHALT).sum(axis=-1) < 12).any())
