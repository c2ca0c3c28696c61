"""Shared pieces of the embedded-generator tests: a manifest of the conftest image folder and a
tiny training config (a step takes milliseconds)."""

from __future__ import annotations

from pathlib import Path


def folder_manifest(root: Path, out: Path) -> Path:
    """Manifest rows (real, train/test) for an ImageFolder made by conftest.make_imagefolder."""
    from synthmix.core.hashing import sha256_file, short_id
    from synthmix.data.manifest import new_row, write_manifest

    rows = []
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for cls_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            for f in sorted(cls_dir.glob("*.jpg")):
                h = sha256_file(f)
                rows.append(new_row(id=short_id(h), sha256=h, path=str(f), label=cls_dir.name,
                                    split=split_dir.name, source="real", status="ok"))
    write_manifest(out, rows)
    return out


def tiny_train_config(manifest: Path, out_dir: Path, **over):
    from synthmix.generation.embedded.config import ModelConfig, TrainConfig

    fields = dict(manifest=str(manifest), out_dir=str(out_dir), resolution=16,
                  model=ModelConfig(size="tiny"), steps=4, batch_size=8, warmup_steps=2,
                  checkpoint_every=2, sample_every=0, sample_steps=2, seed=0, device="cpu", threads=1)
    fields.update(over)
    return TrainConfig(**fields)
