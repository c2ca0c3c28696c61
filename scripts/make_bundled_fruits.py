"""Make the compact fruits copy shipped in ``src/synthmix/assets/fruits`` (reproducible).

    .venv/bin/python scripts/make_bundled_fruits.py [SOURCE] [--long-side 128] [--quality 90]

SOURCE defaults to ../shared/datasets/fruits. Every image (all 300, ``mixed`` included)
is decoded with synthmix's own decoder (RGBA and transparent palette files composited on
white, EXIF orientation applied), resized so the long side is at most ``--long-side``
pixels, and saved as a real JPEG under its original file name. The VOC boxes are scaled
to the new size and written to ``annotations/{split}/<stem>.xml``. The output folder is
rebuilt from scratch.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "src" / "synthmix" / "assets" / "fruits"

README = """# fruits (bundled, resized copy)

A compact copy of the **Fruit Images for Object Detection** data set, published on
Kaggle by **mbkinaci** (https://www.kaggle.com/datasets/mbkinaci/fruit-images-for-object-detection);
this copy was made from the public GitHub mirror
**hamzaabdous/fruit-images-for-object-detection**. All rights to the photos stay with
their authors and the original publishers; it ships here only so that `synthmix demo`
and the tests can run offline. Check the original licence before any other use.

Changes from the original, made by `scripts/make_bundled_fruits.py` (reproducible):

- every image resized so its long side is at most {long_side} px (Lanczos), saved as
  JPEG quality {quality}; file names are unchanged (all `.jpg`);
- the {n_alpha} RGBA/LA and {n_pal} palette ("P") files of the original (PNG data behind
  a `.jpg` name) were converted to RGB, transparent pixels composited on white, as
  synthmix's decoder does for any transparent image;
- the Pascal-VOC boxes in `annotations/{{train,test}}/` were scaled to the new sizes
  (and clipped to the image); `<size>` now holds the real width and height.

Layout (torchvision ImageFolder):

    train/{{apple,banana,orange,mixed}}/*.jpg   {n_train} images ({train_counts})
    test/{{apple,banana,orange,mixed}}/*.jpg    {n_test} images ({test_counts})
    annotations/{{train,test}}/*.xml            one VOC file per image

`mixed` photos show several kinds of fruit at once: a natural near-out-of-distribution
set rather than a class.
"""


def main() -> None:
    from PIL import Image

    from synthmix.data.images import decode
    from synthmix.data.voc import VocObject, clip_box, read_voc, write_voc

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", nargs="?", type=Path, default=REPO.parent / "shared" / "datasets" / "fruits")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--long-side", type=int, default=128)
    ap.add_argument("--quality", type=int, default=90)
    args = ap.parse_args()
    src: Path = args.source
    if not (src / "train").is_dir():
        raise SystemExit(f"{src}: no train/ folder (is this the fruits data set?)")
    if args.out.exists():
        shutil.rmtree(args.out)
    counts: dict[str, dict[str, int]] = {}
    n_alpha = n_pal = 0
    for split in ("train", "test"):
        for cls_dir in sorted(p for p in (src / split).iterdir() if p.is_dir()):
            for f in sorted(cls_dir.glob("*.jpg")):
                d = decode(f)
                n_alpha += d.mode in ("RGBA", "LA", "PA")
                n_pal += d.mode == "P"
                scale = min(1.0, args.long_side / max(d.width, d.height))
                nw, nh = max(1, round(d.width * scale)), max(1, round(d.height * scale))
                img = d.image.resize((nw, nh), Image.LANCZOS) if scale < 1 else d.image
                dst = args.out / split / cls_dir.name / f.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                img.save(dst, format="JPEG", quality=args.quality, optimize=True)
                xml = src / "annotations" / split / f"{f.stem}.xml"
                if xml.is_file():
                    sx, sy = nw / d.width, nh / d.height
                    objs = []
                    for o in read_voc(xml):
                        b = clip_box((o.box[0] * sx, o.box[1] * sy, o.box[2] * sx, o.box[3] * sy), nw, nh)
                        if b is not None:
                            objs.append(VocObject(o.name, tuple(round(v, 1) for v in b)))
                    write_voc(args.out / "annotations" / split / xml.name, f.name, (nw, nh), objs, folder=split)
                counts.setdefault(split, {}).setdefault(cls_dir.name, 0)
                counts[split][cls_dir.name] += 1

    def fmt(c: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in c.items())

    (args.out / "README.md").write_text(README.format(
        long_side=args.long_side, quality=args.quality, n_alpha=n_alpha, n_pal=n_pal,
        n_train=sum(counts["train"].values()), n_test=sum(counts["test"].values()),
        train_counts=fmt(counts["train"]), test_counts=fmt(counts["test"])), encoding="utf-8")
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out} ({sum(sum(c.values()) for c in counts.values())} images, {total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
