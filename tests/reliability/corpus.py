"""The bad-input corpus: every case makes its input in a temporary folder and asserts its outcome.

Each case is a function registered with :func:`case` (id, area, input, outcome). The outcome
is one of: a clear error (a :class:`SynthmixError` naming the file or field and the problem;
through the CLI: exit code 2 and a first line ``error: <file or field>: <problem>``, no
traceback), or a documented recovery (what is fixed or skipped, and where it is reported).
``test_corpus.py`` runs them all; ``python tests/reliability/corpus.py`` prints the table that
docs/reliability.md holds (a test checks the two agree). No binary is stored: every file is
made by the case.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/conftest.py: make_image, make_imagefolder


@dataclass(frozen=True)
class Case:
    id: str
    area: str
    input: str
    outcome: str
    fn: Callable[[Path], None]


CASES: list[Case] = []


def case(id: str, area: str, input: str, outcome: str):
    def deco(fn: Callable[[Path], None]) -> Callable[[Path], None]:
        assert id not in {c.id for c in CASES}, id
        CASES.append(Case(id, area, input, outcome, fn))
        return fn
    return deco


# -- shared helpers ----------------------------------------------------------------------------

def img(colour=(200, 30, 30), size=(24, 20), seed=0):
    from conftest import make_image

    return make_image(colour, size=size, seed=seed)


def cli(*args: str) -> tuple[int, str]:
    """Run ``synthmix ARGS`` in-process through ``main()`` (the real entry point, which turns a
    SynthmixError into exit 2 + ``error: ...``); returns (exit code, stdout + stderr)."""
    from synthmix.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with mock.patch.object(sys, "argv", ["synthmix", *args]), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue() + err.getvalue()


def assert_cli_error(code: int, output: str, first: str, *phrases: str) -> str:
    """Exit 2, no traceback, the error line starts with ``error: <first>`` and holds each phrase."""
    assert code == 2, output
    assert "Traceback" not in output, output
    lines = [ln for ln in output.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, output
    line = lines[0]
    assert line.startswith(f"error: {first}"), line
    for p in phrases:
        assert p in output, (p, output)
    return line


def raises(exc, *phrases: str):
    """pytest.raises whose message must contain every phrase (plain substrings)."""
    class _Check:
        def __enter__(self):
            self.ctx = pytest.raises(exc)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *a):
            handled = self.ctx.__exit__(*a)
            msg = str(self.info.value)
            for p in phrases:
                assert p in msg, (p, msg)
            return handled
    return _Check()


def one_class_folder(tmp: Path, bad_name: str, write_bad: Callable[[Path], None]) -> tuple[Path, Path]:
    """ds/train/apple/{good.jpg, <bad>} + ds/train/banana/good.jpg; returns (root, bad path)."""
    root = tmp / "ds"
    for i, c in enumerate(("apple", "banana")):
        (root / "train" / c).mkdir(parents=True)
        img(seed=i + 1).save(root / "train" / c / "good.jpg")
    bad = root / "train" / "apple" / bad_name
    write_bad(bad)
    return root, bad


def scan_fail_cli(tmp: Path, bad_name: str, write_bad: Callable[[Path], None], *phrases: str) -> None:
    """The user meets a bad file in ``synthmix data scan --on-error fail``: exit 2, the file named,
    nothing written; with the default ``skip`` the file is listed in the report, the rest kept."""
    root, bad = one_class_folder(tmp, bad_name, write_bad)
    code, out = cli("data", "scan", str(root), "--out", str(tmp / "out"), "--on-error", "fail")
    assert_cli_error(code, out, str(bad) + ":", *phrases)
    assert not (tmp / "out" / "manifest.jsonl").exists()
    code, out = cli("data", "scan", str(root), "--out", str(tmp / "out2"))
    assert code == 0, out
    report = json.loads((tmp / "out2" / "scan_report.json").read_text())
    assert [s["path"] for s in report["skipped"]] == [str(bad)]
    assert all(p in report["skipped"][0]["reason"] for p in phrases)
    assert report["n_images"] == 2


def decoded(path: Path, **kw):
    from synthmix.data.images import decode

    return decode(path, **kw)


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height (no pixel data): a decompression bomb's shape."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


def scan(root: Path, out: Path | None = None, **kw):
    from synthmix.data.scan import scan_dataset

    return scan_dataset(root, out, **kw)


def folder(tmp: Path, spec: dict[str, dict[str, int]]) -> Path:
    """ds/<split>/<class>/<i>.jpg with distinct images; spec = {split: {class: n}}."""
    root, seed = tmp / "ds", 100
    for split, classes in spec.items():
        for c, n in classes.items():
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                seed += 1
                img(seed=seed).save(d / f"{i}.jpg")
    return root


def enospc(*_a, **_k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


# -- image files ---------------------------------------------------------------------------------

@case("img-rgba", "image", "RGBA PNG whose transparent pixels store black",
      "recovery: composited on white (`--background`), noted in `fixes`")
def _(tmp):
    from PIL import Image

    a = np.zeros((6, 6, 4), np.uint8)
    a[:, 3:] = (0, 200, 0, 255)
    Image.fromarray(a, "RGBA").save(tmp / "x.png")
    d = decoded(tmp / "x.png")
    out = np.asarray(d.image)
    assert d.had_alpha and (out[:, :3] == 255).all() and (out[:, 3:] == (0, 200, 0)).all()


@case("img-la-alpha0", "image", "LA (grey + alpha) PNG, fully transparent",
      "recovery: composited on the background colour given (here green)")
def _(tmp):
    from PIL import Image

    Image.fromarray(np.zeros((4, 4, 2), np.uint8), "LA").save(tmp / "x.png")
    out = np.asarray(decoded(tmp / "x.png", background=(0, 255, 0)).image)
    assert (out == (0, 255, 0)).all()


@case("img-palette-transparency", "image", "palette PNG with a transparent index",
      "recovery: composited on the background")
def _(tmp):
    from PIL import Image

    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    p.save(tmp / "x.png", transparency=1)
    d = decoded(tmp / "x.png")
    assert d.mode == "P" and d.had_alpha and (np.asarray(d.image) == 255).all()


@case("img-1bit", "image", "1-bit (mode `1`) PNG", "recovery: converted to RGB black/white")
def _(tmp):
    from PIL import Image

    im = Image.new("1", (4, 4), 0)
    im.putpixel((0, 0), 1)
    im.save(tmp / "x.png")
    out = np.asarray(decoded(tmp / "x.png").image)
    assert out[0, 0].tolist() == [255, 255, 255] and out[1, 1].tolist() == [0, 0, 0]


@case("img-cmyk-jpeg", "image", "CMYK JPEG", "recovery: converted to RGB (mode `CMYK` kept in the row)")
def _(tmp):
    from PIL import Image

    Image.new("CMYK", (4, 4), (255, 0, 255, 0)).save(tmp / "x.jpg", quality=100)
    d = decoded(tmp / "x.jpg")
    r, g, b = np.asarray(d.image).reshape(-1, 3).mean(0)
    assert d.mode == "CMYK" and g > 200 and r < 60 and b < 60  # no cyan/magenta... green


@case("img-16bit-png", "image", "16-bit grey PNG (`I;16`), value 32768",
      "recovery: scaled by 255/65535 (-> 128), not clipped to white")
def _(tmp):
    from PIL import Image

    Image.fromarray(np.full((4, 4), 32768, np.uint16)).save(tmp / "x.png")
    d = decoded(tmp / "x.png")
    assert d.mode.startswith("I") and (np.asarray(d.image) == 128).all()


@case("img-32bit-int-wide", "image", "32-bit int TIFF (`I`) with values beyond 16 bits",
      "recovery: scaled by its own min..max range")
def _(tmp):
    from PIL import Image

    a = np.zeros((4, 4), np.int32)
    a[:, 2:] = 1_000_000
    Image.fromarray(a, "I").save(tmp / "x.tif")
    out = np.asarray(decoded(tmp / "x.tif").image)
    assert (out[:, :2] == 0).all() and (out[:, 2:] == 255).all()


@case("img-float-tiff-nan", "image", "float TIFF (`F`) in [0, 1] holding a NaN",
      "recovery: scaled by 255; NaN -> 0")
def _(tmp):
    from PIL import Image

    a = np.full((4, 4), 0.5, np.float32)
    a[0, 0] = np.nan
    Image.fromarray(a, "F").save(tmp / "x.tif")
    out = np.asarray(decoded(tmp / "x.tif").image)
    assert out[0, 0, 0] == 0 and out[1, 1, 0] == 128


@case("img-exif-rotated", "image", "JPEG with EXIF orientation 6 (phone photo)",
      "recovery: rotated upright; width/height are the upright size; noted in `fixes`")
def _(tmp):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    img(size=(30, 20)).save(tmp / "x.jpg", exif=exif.tobytes())
    d = decoded(tmp / "x.jpg")
    assert d.exif_rotated and (d.width, d.height) == (20, 30)


@case("img-exif-bad-orientation", "image", "JPEG with an invalid EXIF orientation (99)",
      "recovery: orientation ignored, image kept as stored")
def _(tmp):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 99
    img(size=(30, 20)).save(tmp / "x.jpg", exif=exif.tobytes())
    d = decoded(tmp / "x.jpg")
    assert not d.exif_rotated and (d.width, d.height) == (30, 20)


@case("img-exif-corrupt", "image", "JPEG whose EXIF block is garbage",
      "recovery: EXIF ignored (Pillow warns), pixels decoded")
def _(tmp):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    img(size=(30, 20)).save(tmp / "ok.jpg", exif=exif.tobytes())
    data = bytearray((tmp / "ok.jpg").read_bytes())
    i = data.find(b"Exif")
    data[i + 10:i + 30] = b"\xff" * 20
    (tmp / "x.jpg").write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="(?i)exif"):
        d = decoded(tmp / "x.jpg")
    assert (d.width, d.height) == (30, 20) and d.image.mode == "RGB"


@case("img-animated-gif", "image", "animated GIF (3 frames)", "recovery: the first frame is used")
def _(tmp):
    from PIL import Image

    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(tmp / "x.gif", save_all=True, append_images=frames[1:])
    out = np.asarray(decoded(tmp / "x.gif").image)
    assert out[..., 0].min() > 200 and out[..., 1].max() < 50


@case("img-png-named-jpg", "image", "PNG data behind a `.jpg` name",
      "recovery: read by content (format PNG); noted in `fixes`")
def _(tmp):
    root, bad = one_class_folder(tmp, "x.jpg", lambda p: img(seed=9).save(p, format="PNG"))
    rep = scan(root)
    row = next(r for r in rep.rows if r["path"] == str(bad))
    assert row["format"] == "PNG"
    assert any(f["path"] == str(bad) and "PNG data behind a .jpg name" in f["fix"] for f in rep.fixes)


@case("img-upper-ext", "image", "image named `X.JPEG` (upper-case extension)", "recovery: counted as an image")
def _(tmp):
    root, bad = one_class_folder(tmp, "X.JPEG", lambda p: img(seed=9).save(p, format="JPEG"))
    assert str(bad) in {r["path"] for r in scan(root).rows}


@case("img-truncated-jpeg", "image", "JPEG cut to half its bytes",
      "error (CLI, `--on-error fail`): `<file>: cannot decode image (truncated or corrupt?)`; "
      "`skip`: listed in `skipped`")
def _(tmp):
    def write(p):
        img(size=(64, 48)).save(p, quality=95)
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    scan_fail_cli(tmp, "cut.jpg", write, "cannot decode image")


@case("img-truncated-png", "image", "PNG cut after its header",
      "error: `<file>: cannot decode image (truncated or corrupt?)`")
def _(tmp):
    def write(p):
        img(size=(64, 48)).save(p, format="PNG")
        p.write_bytes(p.read_bytes()[:60])
    scan_fail_cli(tmp, "cut.png", write, "cannot decode image")


@case("img-zero-bytes", "image", "0-byte `.jpg`", "error: `<file>: empty file (0 bytes)`")
def _(tmp):
    scan_fail_cli(tmp, "empty.jpg", lambda p: p.write_bytes(b""), "empty file (0 bytes)")


@case("img-text-as-png", "image", "a text file named `.png`",
      "error: `<file>: not an image (Pillow cannot identify the format)`")
def _(tmp):
    scan_fail_cli(tmp, "notes.png", lambda p: p.write_text("hello, not an image\n" * 20), "not an image")


@case("img-bomb-over-guard", "image", "PNG header claiming 10000x10000 (between our guard and 2x Pillow's)",
      "error: `<file>: image has 10000x10000 = 100,000,000 pixels, over the limit` (header only, "
      "nothing decoded)")
def _(tmp):
    from PIL import Image

    with pytest.warns(Image.DecompressionBombWarning):  # Pillow's own warning, then our error
        scan_fail_cli(tmp, "bomb.png", lambda p: png_header_only(p, 10_000, 10_000),
                      "10000x10000 = 100,000,000 pixels", "decompression-bomb guard")


@case("img-bomb-huge", "image", "PNG header claiming 60000x60000 (Pillow's own bomb error fires)",
      "error: `<file>: image has 3,600,000,000 pixels, over Pillow's limit`")
def _(tmp):
    scan_fail_cli(tmp, "bomb.png", lambda p: png_header_only(p, 60_000, 60_000),
                  "3,600,000,000 pixels", "decompression-bomb guard")


@case("img-bomb-small-limit", "image", "ordinary 24x20 image with `max_pixels=100`",
      "error: `<file>: image has 24x20 = 480 pixels, over the limit of 100`")
def _(tmp):
    from synthmix.core.errors import DataError

    img().save(tmp / "x.png")
    with raises(DataError, str(tmp / "x.png"), "24x20 = 480 pixels", "limit of 100"):
        decoded(tmp / "x.png", max_pixels=100)


@case("img-symlink-loop", "image", "`a.jpg -> b.jpg -> a.jpg` (symlink loop)",
      "error: `<file>: cannot read file: Too many levels of symbolic links`")
def _(tmp):
    from synthmix.core.errors import DataError

    root, bad = one_class_folder(tmp, "a.jpg", lambda p: (os.symlink("b.jpg", p),
                                                          os.symlink("a.jpg", p.parent / "b.jpg")))
    with raises(DataError, str(bad), "cannot read file: Too many levels of symbolic links"):
        decoded(bad)
    code, out = cli("data", "scan", str(root), "--out", str(tmp / "o"), "--on-error", "fail")
    assert_cli_error(code, out, f"{bad}: cannot read file: Too many levels of symbolic links")
    assert {Path(s["path"]).name for s in scan(root).skipped} == {"a.jpg", "b.jpg"}


@case("img-dangling-symlink", "image", "`x.jpg` symlink to a file that does not exist",
      "error: `<file>: cannot read file: No such file or directory`")
def _(tmp):
    scan_fail_cli(tmp, "x.jpg", lambda p: os.symlink(tmp / "gone.jpg", p), "No such file or directory")


@case("img-unreadable", "image", "file without read permission (simulated: tests run as root, so "
      "`open` is patched to raise PermissionError)",
      "error: `<file>: cannot read file: Permission denied` (decode and scan; `skip` lists it)")
def _(tmp):
    import builtins

    from synthmix.core.errors import DataError

    root, bad = one_class_folder(tmp, "locked.jpg", lambda p: img(seed=7).save(p))
    real_open = builtins.open

    def guarded(f, *a, **k):
        if str(f) == str(bad):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(f))
        return real_open(f, *a, **k)

    with mock.patch("builtins.open", guarded), mock.patch("io.open", guarded):
        with raises(DataError, str(bad), "cannot read file: Permission denied"):
            decoded(bad)
        code, out = cli("data", "scan", str(root), "--out", str(tmp / "o"), "--on-error", "fail")
        assert_cli_error(code, out, f"{bad}: cannot read file: Permission denied")
        rep = scan(root)
    assert rep.skipped == [{"path": str(bad), "reason": "cannot read file: Permission denied"}]


# -- dataset layouts -----------------------------------------------------------------------------

@case("ds-empty-class", "dataset", "`train/pear/` with no images",
      "recovery: not a class; problem `empty_class` naming the folder")
def _(tmp):
    root = folder(tmp, {"train": {"apple": 2, "banana": 2}})
    (root / "train" / "pear").mkdir()
    rep = scan(root)
    assert rep.classes == ["apple", "banana"]
    assert any(p["kind"] == "empty_class" and p["path"].endswith("pear") for p in rep.problems)


@case("ds-one-class", "dataset", "a folder with a single class",
      "scan: 1 class; training: error `<manifest>: need at least 2 classes in the real train split`")
def _(tmp):
    from synthmix.core.errors import DataError
    from synthmix.training.train import TrainRunConfig, train_run

    root = folder(tmp, {"train": {"apple": 4}, "test": {"apple": 1}})
    assert scan(root).classes == ["apple"]
    cfg = TrainRunConfig(folder=root, train={"model": "tiny_cnn", "input_size": 16, "epochs": 1})
    with raises(DataError, "manifest.jsonl", "need at least 2 classes"):
        train_run(cfg, tmp / "run", progress=False)


@case("ds-nested", "dataset", "images in `train/apple/a/b/c/`", "recovery: label = the class folder (`apple`)")
def _(tmp):
    root = folder(tmp, {"train": {"apple": 1, "banana": 1}})
    deep = root / "train" / "apple" / "a" / "b" / "c"
    deep.mkdir(parents=True)
    img(seed=55).save(deep / "deep.jpg")
    rows = scan(root, val_fraction=0).rows
    assert {r["label"] for r in rows if "deep" in r["path"]} == {"apple"} and len(rows) == 3


@case("ds-unicode-spaces", "dataset", "class `pomme rouge é` and file `ñ photo 1.jpg`",
      "recovery: names kept exactly (manifest, CLI table)")
def _(tmp):
    root = folder(tmp, {"train": {"banana": 1}})
    d = root / "train" / "pomme rouge é"
    d.mkdir()
    img(seed=8).save(d / "ñ photo 1.jpg")
    code, out = cli("data", "scan", str(root), "--out", str(tmp / "o"), "--val-fraction", "0")
    assert code == 0, out
    from synthmix.data.manifest import read_manifest

    rows = read_manifest(tmp / "o" / "manifest.jsonl")
    assert {r["label"] for r in rows} == {"banana", "pomme rouge é"}
    assert any(r["path"].endswith("ñ photo 1.jpg") for r in rows) and "pomme rouge é" in out


@case("ds-hidden-folders", "dataset", "`.ipynb_checkpoints/`, `.git/`, `__MACOSX/` among classes",
      "recovery: never classes; listed in `ignored`")
def _(tmp):
    root = folder(tmp, {"train": {"apple": 1, "banana": 1}})
    for h in (".ipynb_checkpoints", ".git", "__MACOSX"):
        (root / "train" / h).mkdir()
        img(seed=3).save(root / "train" / h / "x.jpg")
    rep = scan(root)
    assert rep.classes == ["apple", "banana"]
    assert {Path(i["path"]).name for i in rep.ignored} >= {".ipynb_checkpoints", ".git", "__MACOSX"}


@case("ds-dup-across-splits", "dataset", "the same image in train and test",
      "error (`fail`): LeakageError naming both files; `skip`: the test copy dropped, problem `leakage`")
def _(tmp):
    import shutil

    from synthmix.core.errors import LeakageError

    root = folder(tmp, {"train": {"apple": 2, "banana": 2}, "test": {"apple": 1, "banana": 1}})
    shutil.copy(root / "train" / "apple" / "0.jpg", root / "test" / "apple" / "copy.jpg")
    with raises(LeakageError, "copy.jpg", str(root / "train" / "apple" / "0.jpg")):
        scan(root, on_error="fail")
    rep = scan(root)
    assert any(p["kind"] == "leakage" for p in rep.problems)
    assert not any(r["path"].endswith("copy.jpg") for r in rep.rows)


@case("ds-dup-across-classes", "dataset", "the same image under two classes of one split",
      "recovery: the second copy dropped; problem `duplicate` naming both classes")
def _(tmp):
    import shutil

    root = folder(tmp, {"train": {"apple": 2, "banana": 2}})
    shutil.copy(root / "train" / "apple" / "0.jpg", root / "train" / "banana" / "same.jpg")
    rep = scan(root)
    assert any(p["kind"] == "duplicate" and "'apple' and 'banana'" in p["message"] for p in rep.problems)
    assert len(rep.rows) == 4


@case("ds-dir-symlink-loops", "dataset", "two class folders each holding a symlink to their parent",
      "recovery: a link to a folder containing it is not followed (no endless or exponential walk, no "
      "image pulled in under another class); listed in `ignored`")
def _(tmp):
    root = folder(tmp, {"train": {"apple": 2, "banana": 2}})
    os.symlink("..", root / "train" / "apple" / "up")
    os.symlink("..", root / "train" / "banana" / "up")
    rep = scan(root)
    assert rep.classes == ["apple", "banana"] and len(rep.rows) == 4
    assert any("symlink loop" in i["reason"] for i in rep.ignored)


@case("ds-stray-files", "dataset", "`README.md`, `.DS_Store`, `notes.txt` in class folders",
      "recovery: ignored, listed in `ignored`")
def _(tmp):
    root = folder(tmp, {"train": {"apple": 1, "banana": 1}})
    for n in ("README.md", ".DS_Store", "notes.txt"):
        (root / "train" / "apple" / n).write_text("x")
    rep = scan(root)
    assert len(rep.rows) == 2
    assert {Path(i["path"]).name for i in rep.ignored} >= {"README.md", ".DS_Store", "notes.txt"}


@case("ds-class-only-in-test", "dataset", "class `pear` in test but not in train",
      "recovery: problem `class_not_in_train`")
def _(tmp):
    root = folder(tmp, {"train": {"apple": 2, "banana": 2}, "test": {"apple": 1, "pear": 1}})
    rep = scan(root)
    assert any(p["kind"] == "class_not_in_train" and "'pear'" in p["message"] for p in rep.problems)


@case("ds-two-val-folders", "dataset", "both `val/` and `valid/`",
      "error: `<folder>: two folders name the 'val' split`")
def _(tmp):
    root = folder(tmp, {"train": {"apple": 1, "banana": 1}, "val": {"apple": 1}, "valid": {"banana": 1}})
    code, out = cli("data", "scan", str(root), "--out", str(tmp / "o"))
    assert_cli_error(code, out, str(root / "valid"), "two folders name the 'val' split")


@case("ds-no-images", "dataset", "a folder holding only text files",
      "error: `<folder>: no image files found`")
def _(tmp):
    (tmp / "ds" / "apple").mkdir(parents=True)
    (tmp / "ds" / "apple" / "a.txt").write_text("x")
    code, out = cli("data", "scan", str(tmp / "ds"), "--out", str(tmp / "o"))
    assert_cli_error(code, out, str(tmp / "ds"), "no image files found")


@case("ds-not-a-folder", "dataset", "a path that does not exist",
      "error: `<path>: not a directory (expected an ImageFolder)`")
def _(tmp):
    code, out = cli("data", "scan", str(tmp / "nope"), "--out", str(tmp / "o"))
    assert_cli_error(code, out, str(tmp / "nope"), "not a directory")


@case("ds-file-gone-after-scan", "dataset", "an image deleted after the scan, before training",
      "error: `<file>: cannot read file: No such file or directory` when its tensor is built")
def _(tmp):
    from synthmix.core.errors import DataError
    from synthmix.data.manifest import read_manifest
    from synthmix.data.tensors import load_tensor

    root = folder(tmp, {"train": {"apple": 2, "banana": 2}})
    scan(root, tmp / "o", val_fraction=0)
    rows = read_manifest(tmp / "o" / "manifest.jsonl")
    Path(rows[1]["path"]).unlink()
    with raises(DataError, rows[1]["path"], "No such file"):
        load_tensor(rows, tmp / "o" / "manifest.jsonl", 8)


@case("ds-manifest-damaged-line", "dataset", "a manifest with a broken line in the middle (hand edit)",
      "error: `<manifest>: line 2 is not valid JSON`")
def _(tmp):
    from synthmix.core.errors import DataError
    from synthmix.data.manifest import read_manifest

    m = tmp / "manifest.jsonl"
    m.write_text('{"id": "a", "path": "x"}\n{"id": "b", "pa\n{"id": "c", "path": "z"}\n')
    with raises(DataError, str(m), "line 2 is not valid JSON"):
        read_manifest(m)


@case("ds-manifest-torn-tail", "dataset", "a manifest whose last line was cut by a kill",
      "recovery: the torn line is ignored on read and cut before the next append; audit names it")
def _(tmp):
    from synthmix.audit import audit_run
    from synthmix.data.manifest import append_rows, read_manifest

    m = tmp / "run" / "manifest.jsonl"
    m.parent.mkdir()
    m.write_text('{"id": "a", "path": null, "status": "failed"}\n{"id": "b", "pa')
    assert [r["id"] for r in read_manifest(m)] == ["a"]
    assert any("last line is incomplete" in str(p) for p in audit_run(tmp / "run")[0])
    append_rows(m, [{"id": "c", "path": None, "status": "failed"}])
    assert [r["id"] for r in read_manifest(m)] == ["a", "c"] and audit_run(tmp / "run")[0] == []


# -- configs -------------------------------------------------------------------------------------

def train_yaml(tmp: Path, train: dict, **top) -> Path:
    import yaml

    (tmp / "ds").mkdir(exist_ok=True)
    path = tmp / "train.yaml"
    path.write_text(yaml.safe_dump({"folder": str(tmp / "ds"), "train": train, **top}))
    return path


@case("cfg-train-unknown-field", "config", "`train: {epoch: 3}` (typo of `epochs`)",
      "error (CLI): `<file>: invalid configuration` + `train.epoch: Extra inputs are not permitted`")
def _(tmp):
    code, out = cli("train", str(train_yaml(tmp, {"epoch": 3})), "--out", str(tmp / "r"))
    assert_cli_error(code, out, f"{tmp / 'train.yaml'}: invalid configuration", "train.epoch: Extra inputs")
    assert not (tmp / "r").exists()


@case("cfg-train-wrong-type", "config", "`train: {epochs: ten}`",
      "error: `train.epochs: Input should be a valid integer`")
def _(tmp):
    code, out = cli("train", str(train_yaml(tmp, {"epochs": "ten"})), "--out", str(tmp / "r"))
    assert_cli_error(code, out, str(tmp / "train.yaml"), "train.epochs: Input should be a valid integer")


@case("cfg-train-negative-batch", "config", "`train: {batch_size: -4}`",
      "error: `train.batch_size: Input should be greater than or equal to 1`")
def _(tmp):
    code, out = cli("train", str(train_yaml(tmp, {"batch_size": -4})), "--out", str(tmp / "r"))
    assert_cli_error(code, out, str(tmp / "train.yaml"), "train.batch_size: Input should be greater than or equal to 1")


@case("cfg-train-model-unknown", "config", "`train: {model: resnet999}`",
      "error: names the unknown model and lists the registered ones")
def _(tmp):
    from synthmix.core.errors import SynthmixError
    from synthmix.training.train import TrainRunConfig, train_run

    root = folder(tmp, {"train": {"apple": 3, "banana": 3}})
    cfg = TrainRunConfig(folder=root, train={"model": "resnet999", "input_size": 16, "epochs": 1})
    with raises(SynthmixError, "resnet999", "tiny_cnn"):
        train_run(cfg, tmp / "run", progress=False)


@case("cfg-yaml-syntax", "config", "YAML with a syntax error", "error: `<file>: not valid YAML: ...`")
def _(tmp):
    (tmp / "bad.yaml").write_text("train: {epochs: 3\nfolder: [")
    code, out = cli("train", str(tmp / "bad.yaml"), "--out", str(tmp / "r"))
    assert_cli_error(code, out, f"{tmp / 'bad.yaml'}: not valid YAML")


@case("cfg-file-missing", "config", "a config path that does not exist", "error: `<file>: config file not found`")
def _(tmp):
    code, out = cli("generate", str(tmp / "nope.yaml"))
    assert_cli_error(code, out, f"{tmp / 'nope.yaml'}: config file not found")


def gen_yaml(tmp: Path, generator: dict, manifest: Path | None = None) -> Path:
    import yaml

    path = tmp / "gen.yaml"
    path.write_text(yaml.safe_dump({"manifest": str(manifest or tmp / "m.jsonl"), "out_dir": str(tmp / "g"),
                                    "generator": generator}))
    return path


@case("cfg-gen-strength-above-1", "config", "embedded `near_ood_strengths: [1.5]`",
      "error: `<file>: ... near_ood_strengths: strength 1.5 not in [0, 1]`")
def _(tmp):
    code, out = cli("generate", str(gen_yaml(tmp, {"type": "embedded", "checkpoint": "c.pt",
                                                    "near_ood_strengths": [1.5]})))
    assert_cli_error(code, out, str(tmp / "gen.yaml"), "near_ood_strengths: strength 1.5 not in [0, 1]")


@case("cfg-gen-strength-negative", "config", "dafusion `strengths: [-0.2, 0.5]`",
      "error: `generator.strengths: ... each strength must be in (0, 1]`")
def _(tmp):
    from synthmix.core.errors import ConfigError
    from synthmix.generation.registry import parse_generator_config

    with raises(ConfigError, "strengths", "(0, 1]", "-0.2"):
        parse_generator_config({"type": "dafusion", "model": "a/b", "strengths": [-0.2, 0.5]})


@case("cfg-gen-negative-count", "config", "embedded `per_class: -1`",
      "error: `generator.per_class: Input should be greater than or equal to 0`")
def _(tmp):
    from synthmix.core.errors import ConfigError
    from synthmix.generation.registry import parse_generator_config

    with raises(ConfigError, "per_class", "greater than or equal to 0"):
        parse_generator_config({"type": "embedded", "checkpoint": "c.pt", "per_class": -1})


@case("cfg-gen-unknown-type", "config", "`generator: {type: dalle}`",
      "error: `generator.type: unknown generator 'dalle'; available: ...`")
def _(tmp):
    code, out = cli("generate", str(gen_yaml(tmp, {"type": "dalle"})))
    assert_cli_error(code, out, str(tmp / "gen.yaml"), "unknown generator 'dalle'", "embedded")


@case("cfg-gen-unknown-field", "config", "text2img `images_per_clas: 5` (typo)",
      "error: `images_per_clas: Extra inputs are not permitted`")
def _(tmp):
    code, out = cli("generate", str(gen_yaml(tmp, {"type": "text2img", "model": "a/b", "images_per_clas": 5})))
    assert_cli_error(code, out, str(tmp / "gen.yaml"), "images_per_clas: Extra inputs are not permitted")


@case("cfg-gen-missing-model-path", "config", "text2img `model: /nonexistent/sd-model`",
      "error: `generator.model: '/nonexistent/sd-model' is neither a diffusers model folder nor a hub id`"
      " (before any image)")
def _(tmp):
    root = folder(tmp, {"train": {"apple": 1, "banana": 1}})
    scan(root, tmp / "data", val_fraction=0)
    cfg = gen_yaml(tmp, {"type": "text2img", "model": str(tmp / "nonexistent" / "sd-model")},
                   manifest=tmp / "data" / "manifest.jsonl")
    code, out = cli("generate", str(cfg))
    assert_cli_error(code, out, "generator.model:", "nonexistent/sd-model", "neither a diffusers model folder")
    assert not (tmp / "g" / "manifest.jsonl").exists()


@case("cfg-gen-missing-checkpoint", "config", "embedded `checkpoint: missing.pt`",
      "error: `<checkpoint>: checkpoint not found`")
def _(tmp):
    root = folder(tmp, {"train": {"apple": 1, "banana": 1}})
    scan(root, tmp / "data", val_fraction=0)
    cfg = gen_yaml(tmp, {"type": "embedded", "checkpoint": str(tmp / "missing.pt"), "per_class": 1},
                   manifest=tmp / "data" / "manifest.jsonl")
    code, out = cli("generate", str(cfg))
    assert_cli_error(code, out, f"{tmp / 'missing.pt'}: checkpoint not found")


@case("cfg-gen-missing-manifest", "config", "`manifest:` pointing at no file", "error: `<manifest>: manifest not found`")
def _(tmp):
    code, out = cli("generate", str(gen_yaml(tmp, {"type": "embedded", "checkpoint": "c.pt", "per_class": 1})))
    assert_cli_error(code, out, f"{tmp / 'm.jsonl'}: manifest not found")


def study_yaml(tmp: Path, **over) -> Path:
    import yaml

    root = folder(tmp, {"train": {"apple": 2, "banana": 2}, "test": {"apple": 1, "banana": 1}})
    d = {"name": "t", "dataset": {"path": str(root)}, "models": [{"name": "tiny_cnn"}],
         "setups": [{"name": "real"}], "evaluation": {"far_ood": False}}
    d.update(over)
    path = tmp / "study.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


@case("cfg-study-unknown-field", "config", "study with `seed: 3` (typo of `seeds`)",
      "error: `<file>: invalid configuration` + `seed: Extra inputs are not permitted`")
def _(tmp):
    code, out = cli("run", str(study_yaml(tmp, seed=3)), "--out", str(tmp / "r"))
    assert_cli_error(code, out, f"{tmp / 'study.yaml'}: invalid configuration", "seed: Extra inputs")
    assert not (tmp / "r").exists()


@case("cfg-study-missing-dataset", "config", "study `dataset.path` that does not exist",
      "error: `<file>: dataset.path: not a directory` (before any work)")
def _(tmp):
    path = study_yaml(tmp, dataset={"path": str(tmp / "nowhere")})
    code, out = cli("run", str(path), "--out", str(tmp / "r"))
    assert_cli_error(code, out, f"{path}: dataset.path: not a directory")


@case("cfg-study-ratio-outside", "config", "setup `mix: {kind: ratio, real_fraction: 1.5}`",
      "error: names `real_fraction` and the bound (before any work)")
def _(tmp):
    path = study_yaml(tmp, generators={"e": {"type": "embedded", "train": {"steps": 1}}},
                      setups=[{"name": "real"}, {"name": "mix", "generator": "e",
                                                 "mix": {"kind": "ratio", "real_fraction": 1.5}}])
    code, out = cli("run", str(path), "--out", str(tmp / "r"))
    assert_cli_error(code, out, str(path), "real_fraction", "less than or equal to 1")


@case("cfg-study-nested-negative", "config", "study generator `generate: {images_per_class: -3}`",
      "error: `<file>: generators.sd.generate: invalid configuration` + `images_per_class: ...`")
def _(tmp):
    path = study_yaml(tmp, generators={"sd": {"type": "text2img", "generate": {"model": "a/b",
                                                                               "images_per_class": -3}}},
                      setups=[{"name": "real"}, {"name": "syn", "generator": "sd",
                                                 "mix": {"kind": "ratio", "real_fraction": 0.5}}])
    code, out = cli("run", str(path), "--out", str(tmp / "r"))
    assert_cli_error(code, out, f"{path}: generators.sd.generate: invalid configuration",
                     "images_per_class: Input should be greater than or equal to 1")


# -- runtime -------------------------------------------------------------------------------------

def _gen_run(tmp: Path, n: int):
    sys.path.insert(0, str(HERE))
    from noise_job import NoiseGenerator, planned_rows

    from synthmix.generation.protocol import run_generation
    from synthmix.generation.writer import ImageWriter

    out = tmp / "g"
    planned = planned_rows(n)
    return out, planned, lambda: run_generation(NoiseGenerator(16), planned,
                                                ImageWriter(out / "manifest.jsonl"), batch_size=2)


@case("rt-disk-full-image", "runtime", "disk full while saving a generated image (PNG write raises ENOSPC)",
      "error: OSError `No space left on device`; earlier images and rows intact, no temporary file "
      "left; the re-run finishes the rest")
def _(tmp):
    from PIL import Image

    from synthmix.audit import audit_run, errors
    from synthmix.generation.protocol import run_generation
    from synthmix.generation.writer import ImageWriter

    out, planned, go = _gen_run(tmp, 5)
    go()  # rows 0-4 done
    more = __import__("noise_job").planned_rows(9)  # rows 5-8 to do; row 6 renders NaN (no file)
    before = (out / "manifest.jsonl").read_bytes()
    real_save, calls = Image.Image.save, []

    def save(self, fp, *a, **k):
        calls.append(fp)
        if len(calls) == 2:  # row 5 saved; row 7 hits the full disk
            enospc()
        return real_save(self, fp, *a, **k)

    gen = __import__("noise_job").NoiseGenerator(16)
    with mock.patch.object(Image.Image, "save", save), raises(OSError, "No space left on device"):
        run_generation(gen, more, ImageWriter(out / "manifest.jsonl"), batch_size=2)
    rows = (out / "manifest.jsonl").read_bytes()
    assert rows.startswith(before) and rows.count(b"\n") == 7  # 5 old + row 5 + failed row 6
    assert not list(out.rglob("*.tmp"))
    problems = [p.problem for p in errors(audit_run(out)[0])]
    first_missing = sorted(r["id"] for r in more[7:])[0]
    assert problems == [f"2 planned images have no row (e.g. {first_missing}): re-run to finish them"]
    assert run_generation(gen, more, ImageWriter(out / "manifest.jsonl"), batch_size=2)["ok"] == 2
    assert audit_run(out)[0] == []


@case("rt-disk-full-manifest", "runtime", "disk full while appending the 4th manifest row (the write "
      "stops after 20 bytes with ENOSPC)",
      "error: OSError `No space left on device`; rows 1-3 intact, the torn line is ignored on read "
      "(audit names it), the image without a row is not counted as done; the re-run cuts the torn "
      "line and finishes")
def _(tmp):
    import builtins

    from synthmix.audit import audit_run, errors
    from synthmix.core.io import read_jsonl

    out, planned, go = _gen_run(tmp, 6)
    real_open, appends = builtins.open, []

    class FullDisk:
        def __init__(self, fh):
            self.fh = fh

        def write(self, text):
            self.fh.write(text[:20])
            self.fh.flush()
            enospc()

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return self.fh.__exit__(*a)

    def fake_open(f, mode="r", *a, **k):
        fh = real_open(f, mode, *a, **k)
        if str(f).endswith("manifest.jsonl") and "a" in mode:
            appends.append(f)
            if len(appends) == 4:
                return FullDisk(fh)
        return fh

    with mock.patch("builtins.open", fake_open), raises(OSError, "No space left on device"):
        go()
    assert [r["id"] for r in read_jsonl(out / "manifest.jsonl")] == [r["id"] for r in planned[:3]]
    problems = [str(p) for p in errors(audit_run(out)[0])]
    assert any("last line is incomplete" in p for p in problems)
    assert any("has no manifest row" in p for p in problems)  # image 4 was stored, its row was not
    assert go() == {"planned": 6, "skipped": 3, "ok": 3, "failed": 0}
    assert len(read_jsonl(out / "manifest.jsonl")) == 6 and audit_run(out)[0] == []


@case("rt-disk-full-scan", "runtime", "disk full while `data scan` rewrites an existing manifest",
      "error: OSError `No space left on device`; the previous manifest is intact (atomic write)")
def _(tmp):
    root = folder(tmp, {"train": {"apple": 2, "banana": 2}})
    scan(root, tmp / "o")
    before = (tmp / "o" / "manifest.jsonl").read_bytes()
    img(seed=999).save(root / "train" / "apple" / "new.jpg")
    with mock.patch("synthmix.core.io._fsync_file", enospc), raises(OSError, "No space left on device"):
        scan(root, tmp / "o")
    assert (tmp / "o" / "manifest.jsonl").read_bytes() == before
    assert not list((tmp / "o").glob("*.tmp"))


@case("rt-disk-full-cli", "runtime", "disk full during `synthmix data scan` (the atomic write's fsync raises ENOSPC)",
      "error (CLI, exit 2, no traceback): `error: No space left on device (finished outputs are kept; free "
      "space and re-run ...)`; the previous manifest intact")
def _(tmp):
    root = folder(tmp, {"train": {"apple": 2, "banana": 2}})
    assert cli("data", "scan", str(root), "--out", str(tmp / "o"))[0] == 0
    before = (tmp / "o" / "manifest.jsonl").read_bytes()
    with mock.patch("synthmix.core.io._fsync_file", enospc):
        code, out = cli("data", "scan", str(root), "--out", str(tmp / "o"), "--val-fraction", "0.5")
    assert_cli_error(code, out, "No space left on device", "free space and re-run")
    assert (tmp / "o" / "manifest.jsonl").read_bytes() == before


@case("rt-disk-full-checkpoint", "runtime", "disk full while writing the epoch checkpoint (torch.save raises ENOSPC)",
      "error: OSError; the previous `last.pt` is intact and a re-run resumes from it")
def _(tmp):
    import torch

    from synthmix.models import create_model
    from synthmix.training.checkpoint import load_checkpoint
    from synthmix.training.config import TrainConfig
    from synthmix.training.loop import fit

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (8, 3, 16, 16), dtype=torch.uint8, generator=g)
    y = torch.tensor([0, 1] * 4)
    cfg = TrainConfig(model="tiny_cnn", input_size=16, epochs=3, batch_size=4, device="cpu")
    torch.manual_seed(0)
    model = create_model("tiny_cnn", 2, input_size=16)
    real_save, calls = torch.save, []

    def save(obj, f, *a, **k):
        calls.append(f)
        if len(calls) == 2:
            enospc()
        return real_save(obj, f, *a, **k)

    with mock.patch("torch.save", save), raises(OSError, "No space left on device"):
        fit(model, (x, y), None, cfg, tmp / "run", progress=False)
    assert load_checkpoint(tmp / "run" / "checkpoints" / "last.pt")["next_epoch"] == 1
    assert not list((tmp / "run").rglob("*.tmp"))
    res = fit(create_model("tiny_cnn", 2, input_size=16), (x, y), None, cfg, tmp / "run", progress=False)
    assert res.resumed_from_epoch == 1 and res.epochs_run == 3


@case("rt-nan-loss", "runtime", "training that diverges (weights set to NaN)",
      "error: TrainingError `non-finite training loss (nan) at epoch 1, step 1 ...; lower the learning rate`")
def _(tmp):
    import torch

    from synthmix.core.errors import TrainingError
    from synthmix.models import create_model
    from synthmix.training.config import TrainConfig
    from synthmix.training.loop import fit

    model = create_model("tiny_cnn", 2, input_size=16)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    x = torch.zeros((4, 3, 16, 16), dtype=torch.uint8)
    cfg = TrainConfig(model="tiny_cnn", input_size=16, epochs=1, batch_size=4, device="cpu")
    with raises(TrainingError, "non-finite training loss", "epoch 1, step 1", "lower the learning rate"):
        fit(model, (x, torch.tensor([0, 1, 0, 1])), None, cfg, tmp / "run", progress=False)


@case("rt-oom-halving", "runtime", "out-of-memory at batch 8 and 4 (simulated `torch.OutOfMemoryError`)",
      "recovery: the SD batch is halved and retried (8 -> 4 -> 2); every image made once, same results")
def _(tmp):
    import torch

    from synthmix.generation.sd.batching import OomSplitter

    seen = []

    def render(chunk):
        seen.append(len(chunk))
        if len(chunk) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [c * 10 for c in chunk]

    split = OomSplitter(8)
    assert split(render, list(range(8))) == [c * 10 for c in range(8)]
    assert split.halvings == 2 and split.max_batch == 2 and seen == [8, 4, 2, 2, 2, 2]


@case("rt-oom-at-batch-1", "runtime", "out-of-memory even at batch size 1",
      "error: `out of memory even at batch size 1 (CUDA out of memory ...); lower the resolution, use "
      "speed.dtype float16 ...` (the CLI prints it, exit 2; nothing written for that batch)")
def _(tmp):
    import torch

    from synthmix.core.errors import SynthmixError
    from synthmix.generation.sd.batching import OomSplitter

    def render(chunk):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    split = OomSplitter(4)
    with raises(SynthmixError, "out of memory even at batch size 1", "Tried to allocate 2.00 GiB",
                "lower the resolution"):
        split(render, [1, 2, 3])
    assert split.halvings == 1 and split.max_batch == 1  # 3 -> 1, then the error


@case("rt-corrupt-checkpoint", "runtime", "a training `last.pt` overwritten with garbage",
      "error: `<last.pt>: cannot read checkpoint: ...` (no pickle is executed: weights_only)")
def _(tmp):
    import torch

    from synthmix.core.errors import DataError
    from synthmix.models import create_model
    from synthmix.training.config import TrainConfig
    from synthmix.training.loop import fit

    ck = tmp / "run" / "checkpoints" / "last.pt"
    ck.parent.mkdir(parents=True)
    ck.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    cfg = TrainConfig(model="tiny_cnn", input_size=16, epochs=1, batch_size=4, device="cpu")
    x = torch.zeros((4, 3, 16, 16), dtype=torch.uint8)
    with raises(DataError, str(ck), "cannot read checkpoint"):
        fit(create_model("tiny_cnn", 2, input_size=16), (x, torch.tensor([0, 1, 0, 1])), None, cfg,
            tmp / "run", progress=False)


@case("rt-pickle-checkpoint", "runtime", "a `.pt` file that runs code when unpickled",
      "error: `<file>: cannot read checkpoint: ... Weights only load failed`; the code never runs")
def _(tmp):
    import pickle

    from synthmix.core.errors import DataError
    from synthmix.training.checkpoint import load_checkpoint

    marker = tmp / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    import torch

    torch.save({"model": Evil()}, tmp / "evil.pt", pickle_module=pickle)
    with raises(DataError, str(tmp / "evil.pt"), "cannot read checkpoint"):
        load_checkpoint(tmp / "evil.pt")
    assert not marker.exists()


@case("rt-training-config-changed", "runtime", "re-running a run directory with a different config",
      "error: `<run>/config.yaml: this run directory holds a different config`")
def _(tmp):
    from synthmix.core.errors import ConfigError
    from synthmix.training.train import TrainRunConfig, _config_guard

    root = folder(tmp, {"train": {"apple": 1}})
    run = tmp / "run"
    run.mkdir()
    _config_guard(TrainRunConfig(folder=root, train={"epochs": 2}).resolved(), run)
    with raises(ConfigError, str(run / "config.yaml"), "holds a different config"):
        _config_guard(TrainRunConfig(folder=root, train={"epochs": 3}).resolved(), run)


@case("rt-nan-image", "runtime", "a generator returning a NaN image",
      "recovery: row with `status=failed` and the reason, no file kept, not retried; audit passes")
def _(tmp):
    from synthmix.audit import audit_run
    from synthmix.core.io import read_jsonl

    out, planned, go = _gen_run(tmp, 7)  # the noise job's 7th row renders NaN
    assert go() == {"planned": 7, "skipped": 0, "ok": 6, "failed": 1}
    bad = [r for r in read_jsonl(out / "manifest.jsonl") if r["status"] == "failed"]
    assert len(bad) == 1 and bad[0]["path"] is None and "non-finite" in bad[0]["scores"]["failure"]
    assert go()["skipped"] == 7 and audit_run(out)[0] == []


# -- the table for docs/reliability.md -----------------------------------------------------------

def markdown_table() -> str:
    lines = ["| id | area | input | outcome |", "| --- | --- | --- | --- |"]
    for c in CASES:
        lines.append(f"| `{c.id}` | {c.area} | {c.input} | {c.outcome} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
