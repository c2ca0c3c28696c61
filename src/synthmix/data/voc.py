"""Pascal-VOC box annotations: read, write, find the file for an image, union + margin crops.

Boxes are ``[xmin, ymin, xmax, ymax]`` in pixels of the upright image, as floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from synthmix.core.errors import DataError


@dataclass(frozen=True)
class VocObject:
    name: str
    box: tuple[float, float, float, float]


def read_voc(path: str | Path) -> list[VocObject]:
    """The objects of a VOC xml file. Raises DataError naming the file when it is unusable."""
    import xml.etree.ElementTree as ET

    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as err:
        raise DataError(path, f"not a readable VOC annotation: {err}") from None
    out = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        if bb is None:
            continue
        try:
            box = tuple(float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            raise DataError(path, "a <bndbox> lacks a numeric xmin/ymin/xmax/ymax") from None
        out.append(VocObject(name=(obj.findtext("name") or "").strip(), box=box))  # type: ignore[arg-type]
    return out


def clip_box(box: Sequence[float], width: int, height: int) -> list[float] | None:
    """Box clipped to the image; None when nothing of it is left."""
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    x0, y0 = max(0.0, x0), max(0.0, y0)
    x1, y1 = min(float(width), x1), min(float(height), y1)
    if x1 <= x0 or y1 <= y0:
        return None
    return [x0, y0, x1, y1]


def union_box(boxes: Sequence[Sequence[float]]) -> list[float]:
    """The smallest box holding all ``boxes`` (non-empty list)."""
    return [min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes)]


def expand_box(box: Sequence[float], margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Grow ``box`` by ``margin`` x its size on each side, clip to the image; integer pixels."""
    import math

    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    left, t = max(0, math.floor(x0 - mx)), max(0, math.floor(y0 - my))
    r, b = min(width, math.ceil(x1 + mx)), min(height, math.ceil(y1 + my))
    if r <= left or b <= t:
        return 0, 0, width, height
    return left, t, r, b


def find_annotation(image: Path, root: Path, split: str | None) -> Path | None:
    """The VOC xml of ``image``, first found of: ``root/annotations/<split>/<class>/<stem>.xml``,
    ``root/annotations/<split>/<stem>.xml``, ``root/annotations/<stem>.xml``, ``<stem>.xml`` next
    to the image. None when there is none."""
    candidates = []
    if split:
        candidates += [root / "annotations" / split / image.parent.name / f"{image.stem}.xml",
                       root / "annotations" / split / f"{image.stem}.xml"]
    candidates += [root / "annotations" / f"{image.stem}.xml", image.with_suffix(".xml")]
    for c in candidates:
        if c.is_file():
            return c
    return None
