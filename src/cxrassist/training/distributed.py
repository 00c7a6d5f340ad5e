"""Multi-process training (torchrun): process group, device choice, sharded and resumable sampling.

Launch: ``torchrun --nproc_per_node=N -m cxrassist.cli train TASK --config ...`` (multi-node: add ``--nnodes``,
``--node_rank`` and ``--rdzv_endpoint`` as usual). The backend is NCCL on GPUs and gloo on CPU.

BatchNorm and DDP: every rank normalizes with its own local batch statistics, so a 2 x B run is not the same
computation as a 1 x 2B run. On multi-process GPU runs ``model.sync_bn: auto`` converts BatchNorm to SyncBatchNorm
(global batch statistics: the same maths as one process). On CPU (gloo) SyncBatchNorm is not used; ranks then
differ from a single process only through those per-rank statistics, or not at all with ``model.freeze_bn: true``
(BatchNorm in eval mode, as the equivalence test does). Gradients are averaged over ranks, and every loss is a mean
of per-sample terms, so equal per-rank batches give exactly the single-process global-batch gradient.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler

from cxrassist.device import pick_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")  # noqa: RUF009 - a torch.device is immutable
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_pref: str = "auto") -> DistInfo:
    """Join the process group when started by torchrun (``WORLD_SIZE`` > 1), else a single-process DistInfo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_pref, local_rank)
    if world <= 1:
        return DistInfo(device=device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    log.info("distributed: rank %d/%d on %s (%s)", rank, world, device, backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=device, backend=backend)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(info: DistInfo, obj: object) -> object:
    """Rank 0's value on every rank (validation metric -> the same early-stopping decision everywhere)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class ResumableSampler(DistributedSampler):
    """:class:`DistributedSampler` (per-epoch permutation from seed + epoch, sharded rank::world) that can skip the
    first ``start`` samples of this rank: resuming in the middle of an epoch replays exactly the remaining batches.

    With one process (``num_replicas=1``) it is an ordinary seeded shuffler and needs no process group.
    """

    def __init__(self, dataset: Dataset, *, info: DistInfo, shuffle: bool = True, seed: int = 0) -> None:
        super().__init__(
            dataset, num_replicas=info.world_size, rank=info.rank, shuffle=shuffle, seed=seed, drop_last=False
        )
        self.start = 0

    def set_start(self, start: int) -> None:
        self.start = int(start)

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start :])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start)
