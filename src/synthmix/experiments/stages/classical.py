"""Stage ``classical``: the augmentation control's images — k classically augmented copies of each
real train image (torchvision v2 TrivialAugmentWide / RandAugment / AugMix), written and recorded
exactly like generated children (source ``classical``, role ``in_dist``, parent id, seed), so the
control setup ``real+aug<k>`` mixes them in exactly as ``per_real k`` mixes synthetic children."""

from __future__ import annotations

from typing import Any

from synthmix.experiments.config import StudyConfig
from synthmix.experiments.controls import CLASSICAL
from synthmix.experiments.executor import StageContext
from synthmix.experiments.stages.common import MANIFEST, dep_path

WORK_SIZE = 96  # side of the stored copies: above the classifier's size, like the generators' output


def config(cfg: StudyConfig, k: int) -> dict[str, Any]:
    return {"policy": cfg.controls.augment_policy, "per_real": k,
            "size": max(WORK_SIZE, cfg.preprocessing.image_size),
            "exclude_classes": [cfg.near_ood_class] if cfg.near_ood_class else [],
            "preprocess": cfg.preprocessing.preprocess.model_dump(mode="json") if cfg.preprocessing.preprocess
            else {}}


def _policy(name: str):
    from torchvision.transforms import v2

    return {"trivial_augment": v2.TrivialAugmentWide, "randaugment": v2.RandAugment,
            "augmix": v2.AugMix}[name]()


def run(ctx: StageContext) -> dict[str, Any]:
    import torch

    from synthmix.core.hashing import config_hash
    from synthmix.data.preprocess import PreprocessConfig, preprocess_row
    from synthmix.generation.jobs import real_train_rows
    from synthmix.generation.writer import ImageWriter

    c = ctx.config
    scan = dep_path(ctx, "scan")
    parents = sorted(real_train_rows(scan, c["exclude_classes"]), key=lambda r: r["id"])
    pre = PreprocessConfig(**{**c["preprocess"], "size": c["size"]})
    writer = ImageWriter(ctx.out_dir / MANIFEST, ctx.out_dir / "images")
    policy = _policy(c["policy"])
    made = 0
    for parent in parents:
        todo = [j for j in range(c["per_real"])
                if not writer.is_done(config_hash([parent["id"], j, c["policy"]], n=16))]
        if not todo:
            continue
        img = torch.from_numpy(preprocess_row(parent, scan, pre)).permute(2, 0, 1).contiguous()
        for j in todo:
            row_id = config_hash([parent["id"], j, c["policy"]], n=16)
            seed = int(row_id[:8], 16)
            torch.manual_seed(seed)  # v2 policies draw from the global generator: one seed per image
            out = policy(img).permute(1, 2, 0).numpy()
            writer.write({"id": row_id, "label": parent["label"], "split": "train", "source": CLASSICAL,
                          "role": "in_dist", "parent_id": parent["id"], "parent_label": parent["label"],
                          "seed": seed, "method": c["policy"], "generator": CLASSICAL}, out)
            made += 1
    ok = sum(r.get("status") == "ok" for r in writer.done.values())
    if ok == 0:
        from synthmix.core.errors import SynthmixError

        raise SynthmixError(f"classical augmentation made no usable image ({len(parents)} parents)")
    return {"manifest": MANIFEST, "ok": ok, "made": made, "parents": len(parents)}
