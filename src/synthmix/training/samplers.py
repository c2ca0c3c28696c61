"""Class-balanced batches: every anchor gets at least one positive, families stay together.

SupCon needs positives in the batch; with random batches of a small dataset many anchors have
none and are dropped from the loss. Each batch here holds ``m_per_class`` anchors (rows that
are not negatives) of each of ``classes_per_batch`` classes. With ``family`` ids a real image
and its synthetic children (manifest ``parent_id``) enter a batch together, so a near-OOD
child meets its parent class's anchors (where it is the hard negative).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence


class ClassBalancedBatchSampler:
    """Yields lists of row indices (usable as a ``DataLoader`` ``batch_sampler``).

    labels: [N] class per row (for a negative row pass its parent label: it is batched with
    that class); is_negative: [N] bools (negatives never count as anchors); family: [N]
    hashable group ids or None (rows with the same id are always drawn together; None = each
    row on its own). Each of ``num_batches`` batches picks ``classes_per_batch`` classes (all
    when None) and adds whole families of each until it holds ``m_per_class`` anchors of it.
    Deterministic given ``seed`` and :meth:`set_epoch`.
    """

    def __init__(self, labels: Sequence[int], m_per_class: int = 4, classes_per_batch: int | None = None,
                 num_batches: int | None = None, seed: int = 0,
                 is_negative: Sequence[bool] | None = None, family: Sequence[object] | None = None):
        n = len(labels)
        if m_per_class < 2:
            raise ValueError(f"m_per_class must be >= 2 so each anchor has a positive, got {m_per_class}")
        is_negative = list(is_negative) if is_negative is not None else [False] * n
        family = list(family) if family is not None else [None] * n
        if len(is_negative) != n or len(family) != n:
            raise ValueError("labels, is_negative and family must have the same length")
        # families: group id -> rows; a family's class is the class of its anchors
        groups: dict[object, list[int]] = {}
        for i in range(n):
            key = ("row", i) if family[i] is None else ("fam", family[i])
            groups.setdefault(key, []).append(i)
        self.by_class: dict[int, list[list[int]]] = {}
        self.anchors: dict[int, int] = {}
        for rows in groups.values():
            anchor_labels = {int(labels[i]) for i in rows if not is_negative[i]}
            cls = min(anchor_labels) if anchor_labels else int(labels[rows[0]])
            self.by_class.setdefault(cls, []).append(rows)
            self.anchors[cls] = self.anchors.get(cls, 0) + sum(1 for i in rows if not is_negative[i])
        short = {c: k for c, k in self.anchors.items() if k < 2}
        if short:
            raise ValueError(f"classes {sorted(short)} have fewer than 2 anchor rows: no positive possible")
        self.classes = sorted(self.by_class)
        self.m = m_per_class
        self.k = min(classes_per_batch or len(self.classes), len(self.classes))
        if self.k < 1:
            raise ValueError("no rows to sample")
        self.is_negative = is_negative
        total_anchors = sum(self.anchors.values())
        self.num_batches = num_batches or max(1, total_anchors // (self.m * self.k))
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[list[int]]:
        import numpy as np

        rng = np.random.default_rng([self.seed, self.epoch])
        # per class, a shuffled cycle over families (all are used before any repeats)
        order = {c: list(rng.permutation(len(self.by_class[c]))) for c in self.classes}
        for _ in range(self.num_batches):
            batch: list[int] = []
            for c in rng.choice(self.classes, size=self.k, replace=False):
                c = int(c)
                got, seen = 0, set()
                while got < self.m:
                    if not order[c]:
                        order[c] = list(rng.permutation(len(self.by_class[c])))
                    f = order[c].pop()
                    if f in seen:  # class smaller than m: stop rather than repeat a family
                        if len(seen) == len(self.by_class[c]):
                            break
                        continue
                    seen.add(f)
                    rows = self.by_class[c][f]
                    batch.extend(rows)
                    got += sum(1 for i in rows if not self.is_negative[i])
            yield batch
