"""``synthmix data ...``: scan + validate an ImageFolder, preview preprocessing, warm the cache."""

from __future__ import annotations

from pathlib import Path

import typer

from synthmix.cli.app import app

data_app = typer.Typer(help="Scan and validate an ImageFolder, preview preprocessing, build caches.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


def _colour(text: str, option: str) -> tuple[int, int, int]:
    from synthmix.core.errors import ConfigError

    try:
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or not all(0 <= p <= 255 for p in parts):
        raise ConfigError(f"{option}: expected R,G,B with values 0-255 (e.g. 255,255,255), got {text!r}")
    return parts  # type: ignore[return-value]


@data_app.command("scan")
def scan(
    path: Path = typer.Argument(None, help="ImageFolder root: <class>/<img> or {train,val,test}/<class>/<img>."),
    bundled: bool = typer.Option(False, "--bundled", help="Scan the fruits demo data shipped with synthmix."),
    out: Path = typer.Option(None, "--out", help="Output folder [default: synthmix-runs/data/<folder name>]."),
    on_error: str = typer.Option("skip", "--on-error", help="skip: leave bad files out and list them; "
                                 "fail: stop at the first bad file."),
    val_fraction: float = typer.Option(0.15, help="Stratified share of train moved to val (when no val/)."),
    test_fraction: float = typer.Option(0.2, help="Stratified share carved as test (only with no split folders)."),
    seed: int = typer.Option(0, help="Seed of the split carving."),
    background: str = typer.Option("255,255,255", help="R,G,B colour transparent pixels are composited on."),
    max_pixels: int = typer.Option(89_478_485, help="Decompression-bomb guard: refuse larger images."),
    annotations: bool = typer.Option(True, "--annotations/--no-annotations", help="Read VOC boxes."),
) -> None:
    """Scan and validate PATH; write manifest.jsonl and scan_report.json into --out."""
    from synthmix.core.errors import ConfigError
    from synthmix.core.log import console
    from synthmix.data.scan import scan_dataset, summary_lines, summary_table

    if bundled:
        from synthmix.data.bundled import fruits_path

        path = fruits_path()
    elif path is None:
        raise ConfigError("data scan: give a PATH to an image folder, or --bundled for the demo data")
    if on_error not in ("skip", "fail"):
        raise ConfigError(f"--on-error: expected skip or fail, got {on_error!r}")
    out = out or Path("synthmix-runs") / "data" / ("fruits-bundled" if bundled else (path.resolve().name or "data"))
    report = scan_dataset(path, out, on_error=on_error, val_fraction=val_fraction,  # type: ignore[arg-type]
                          test_fraction=test_fraction, seed=seed,
                          annotations="auto" if annotations else "none",
                          background=_colour(background, "--background"), max_pixels=max_pixels)
    con = console()
    con.print(summary_table(report))
    for line in summary_lines(report):
        con.print(line, highlight=False, markup=False)
    con.print(f"manifest: {report.manifest_path}\nreport:   {report.report_path}", highlight=False)


@data_app.command("preview")
def preview(
    source: Path = typer.Argument(..., help="manifest.jsonl, a folder holding one, or an ImageFolder."),
    out: Path = typer.Option(Path("preview.png"), "--out", help="PNG file to write."),
    per_class: int = typer.Option(4, help="Samples per class."),
    size: int = typer.Option(64, help="Preprocessed size in pixels."),
    resize: str = typer.Option("pad", help="pad | stretch | center_crop"),
    fill: str = typer.Option("0,0,0", help="R,G,B padding colour."),
    box_crop: bool = typer.Option(False, "--box-crop/--no-box-crop", help="Crop to the VOC boxes first."),
    split: str = typer.Option("train", help="Split to sample from ('all' for every split)."),
    seed: int = typer.Option(0, help="Seed of the sample choice and the augmentation."),
) -> None:
    """Write a PNG grid of raw vs preprocessed vs augmented samples per class."""
    from synthmix.core.config import parse_config
    from synthmix.core.log import console
    from synthmix.data.preprocess import PreprocessConfig
    from synthmix.data.preview import make_preview, rows_from

    cfg = parse_config(PreprocessConfig, {"size": size, "resize": resize, "fill": _colour(fill, "--fill"),
                                          "box_crop": box_crop}, source="options")
    rows, manifest = rows_from(source)
    path = make_preview(rows, manifest, out, per_class=per_class, preprocess=cfg, seed=seed,
                        splits=None if split == "all" else (split,))
    console().print(f"wrote {path}", highlight=False)


@data_app.command("cache")
def cache(
    manifest: Path = typer.Argument(..., help="manifest.jsonl (or a folder holding one)."),
    cache_dir: Path = typer.Option(Path("synthmix-runs/cache"), "--cache-dir", help="Cache folder."),
    size: int = typer.Option(64, help="Side in pixels."),
    resize: str = typer.Option("pad", help="pad | stretch | center_crop"),
    box_crop: bool = typer.Option(False, "--box-crop/--no-box-crop", help="Crop to the VOC boxes first."),
) -> None:
    """Decode + preprocess every row once into the cache (later stages then skip decoding)."""
    import time

    from synthmix.core.config import parse_config
    from synthmix.core.log import console
    from synthmix.data.cache import cache_folder, load_tensor
    from synthmix.data.preprocess import PreprocessConfig
    from synthmix.data.preview import rows_from

    cfg = parse_config(PreprocessConfig, {"size": size, "resize": resize, "box_crop": box_crop},
                       source="options")
    rows, mpath = rows_from(manifest)
    t0 = time.perf_counter()
    x = load_tensor(rows, mpath, size, preprocess=cfg, cache_dir=cache_dir)
    console().print(f"{x.shape[0]} images cached in {cache_folder(cache_dir, cfg)} "
                    f"({time.perf_counter() - t0:.1f} s)", highlight=False)
