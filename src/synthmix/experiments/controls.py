"""The controls every study with a synthetic setup gets without asking (DESIGN rule 12).

A claim that synthetic data helps is made against:

- ``real`` at the same training compute: the reference real-only setup (added when the study
  has none); the step budget (``budget.mode: steps``) makes it equal;
- **stronger classical augmentation** ``real+aug<k>``: k classically augmented copies of each
  real training image (TrivialAugmentWide / RandAugment / AugMix), mixed in exactly like k
  synthetic children per real image, at the same budget — "is the diffusion model better than
  augmenting harder?";
- **more real data** ``real@25%`` ...: real-only on nested per-class subsets of the real training
  set (the same subsets for a seed at every fraction), which with the full set place every
  synthetic setup on a "worth N real images per class" scale.
"""

from __future__ import annotations

from synthmix.experiments.config import SetupSection, StudyConfig
from synthmix.training.mixes import MixConfig

CLASSICAL = "classical"  # the generator name of the augmentation control's images


def augment_ks(cfg: StudyConfig) -> list[int]:
    """k of the augmentation controls: those of the CE per_real setups (1 when there is none)."""
    ks = sorted({s.mix.k for s in cfg.setups if s.loss == "ce" and s.mix.kind == "per_real" and s.mix.k})
    return ks or [1]


def control_setups(cfg: StudyConfig) -> list[SetupSection]:
    names = {s.name for s in cfg.setups}
    out: list[SetupSection] = []
    if cfg.reference_setup not in names:
        out.append(SetupSection(name=cfg.reference_setup, control="real"))
    if not cfg.controls.enabled or not any(s.uses_synthetic for s in cfg.setups):
        return out
    if cfg.controls.augment:
        out += [SetupSection(name=f"real+aug{k}", generator=CLASSICAL, control="augment",
                             mix=MixConfig(kind="per_real", k=k, synthetic_roles=["in_dist"]))
                for k in augment_ks(cfg)]
    out += [SetupSection(name=f"real@{round(100 * f)}%", control="more_real",
                         mix=MixConfig(kind="real_only", real_subset=f))
            for f in cfg.controls.real_fractions]
    clash = sorted(names & {s.name for s in out if s.control != "real"})
    if clash:
        from synthmix.core.errors import ConfigError

        raise ConfigError(f"setups: {clash} are names of automatic controls; rename those setups")
    return out
