"""core.schedule.lr_schedule against torch's own schedulers."""

from __future__ import annotations

import pytest
import torch

from synthmix.core.schedule import lr_schedule


def _torch_lrs(make, steps: int, base: float = 0.5) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("floor", [0.0, 0.1])
def test_cosine_matches_cosine_annealing(floor):
    total, base = 40, 0.5
    ref = _torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=total, eta_min=base * floor),
                     total + 1, base)
    ours = [lr_schedule(s, total=total, floor=floor, base=base) for s in range(total + 1)]
    assert ours == pytest.approx(ref, abs=1e-9)
    assert lr_schedule(total + 5, total=total, floor=floor, base=base) == pytest.approx(base * floor)


def test_step_matches_step_lr_and_warmup_is_linear():
    ref = _torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.3), 30)
    assert [lr_schedule(s, total=30, kind="step", step_every=7, gamma=0.3, base=0.5) for s in range(30)] == \
        pytest.approx(ref, abs=1e-12)
    warm = [lr_schedule(s, total=100, warmup=4) for s in range(6)]
    assert warm[:4] == [0.25, 0.5, 0.75, 1.0] and warm[4] == 1.0  # cosine starts at the base rate
    assert [lr_schedule(s, total=10, kind="none", base=0.2) for s in (0, 5, 50)] == [0.2, 0.2, 0.2]
