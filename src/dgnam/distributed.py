"""Scale-out: visualizing thousands of units over processes and GPUs with ``torchrun``.

Under ``torchrun`` (``WORLD_SIZE`` > 1) ``dgnam visualize`` runs one process per rank:

1. every rank makes the same job list (:func:`dgnam.run.make_jobs`) and takes a contiguous, balanced
   slice of its *batches* (:func:`shard_jobs`): whole batches, so each image is computed in exactly
   the batch it would have in a one-process run (pixel methods' transforms depend on the batch);
2. it writes its images and a ``results.json`` into ``OUT/parts/rankNNN`` (:func:`part_dir`), after
   rank 0 has removed the parts an earlier run left there (:func:`clear_stale_parts`);
3. after a barrier, rank 0 merges the parts into ``OUT`` (:func:`dgnam.io.merge.merge_parts`): all PNGs, one
   ``results.json`` in job order, one contact sheet, the same images and items as a one-process run
   (``timing`` says how many processes ran side by side; wall times differ).

This module holds the process-group side (:class:`World`, joining and leaving, barriers, shards, where each
part goes); reading and merging the parts' run folders is :mod:`dgnam.io.merge`.

gloo on CPUs, nccl on GPUs; ``--device cuda`` means ``cuda:LOCAL_RANK``. Across machines, ``OUT``
must be on a file system that every node sees. A run whose merge did not happen (a rank died)
keeps its parts (a rank that fails still writes the ``results.json`` of what it finished);
``dgnam merge OUT`` merges what finished.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, TypeVar

import torch

T = TypeVar("T")

PARTS = "parts"


@dataclass(frozen=True)
class World:
    """This process's place in a (possibly one-process) run.

    Attributes:
        rank: Global rank (0 in a one-process run).
        size: Number of processes.
        local_rank: Rank on this machine (picks the GPU).
        device: The device this process computes on.
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_process_group(device: str) -> tuple[int, int]:
    """(rank, world size): joins torchrun's process group (NCCL on CUDA, else gloo); (0, 1) outside torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), dist.get_world_size()


def init_world(device: str = "cpu") -> World:
    """Join the ``torchrun`` process group when ``WORLD_SIZE`` > 1 (gloo on CPU, nccl on CUDA).

    Args:
        device: ``cpu``, ``cuda`` (becomes ``cuda:LOCAL_RANK`` under torchrun) or an explicit
            ``cuda:N``.

    Returns:
        A :class:`World`; one process and ``device`` as given when not under torchrun.

    Raises:
        ValueError: an explicit ``cuda:N`` under torchrun (every process would share GPU N).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return World(device=torch.device(device))
    if str(device).startswith("cuda:"):
        raise ValueError(f"--device {device} under torchrun: use --device cuda: each process takes cuda:LOCAL_RANK")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        device = f"cuda:{local_rank}"
    rank, size = init_process_group(device)
    return World(rank, size, local_rank, torch.device(device))


def barrier(world: World) -> None:
    """Wait for every rank (a no-op in a one-process run)."""
    if not world.distributed:
        return
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[world.device.index or 0])
    else:
        dist.barrier()


def close_world(world: World) -> None:
    """Leave the process group that :func:`init_world` joined."""
    if world.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def shard_jobs(jobs: Sequence[T], rank: int, world_size: int, batch_size: int) -> list[T]:
    """Rank ``rank``'s share of ``jobs``: a contiguous run of whole batches of ``batch_size``.

    Batches are split as evenly as possible (rank shares differ by at most one batch) and in order,
    so concatenating the shares of ranks 0, 1, ... gives ``jobs`` back, batch boundaries included.

    Example:
        >>> shard_jobs(list(range(10)), rank=1, world_size=2, batch_size=3)
        [6, 7, 8, 9]
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a world of {world_size}")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    batches = [list(jobs[i : i + batch_size]) for i in range(0, len(jobs), batch_size)]
    lo, hi = rank * len(batches) // world_size, (rank + 1) * len(batches) // world_size
    return [job for batch in batches[lo:hi] for job in batch]


def part_dir(out: str | Path, rank: int) -> Path:
    """Where rank ``rank`` writes its part of run ``out``."""
    return Path(out) / PARTS / f"rank{rank:03d}"


def clear_stale_parts(out: str | Path, world: World) -> None:
    """Before any rank writes: rank 0 removes ``out/parts`` left by an earlier run (another world
    size, other units), then every rank waits, so a merge sees only this run's parts."""
    parts = Path(out) / PARTS
    if world.rank == 0 and parts.exists():
        shutil.rmtree(parts)
    barrier(world)


def part_settings(settings: dict, world: World, items_total: int) -> dict:
    """A part's settings: the run's, plus (under ``"part"``) which part of how many it is."""
    part = {"rank": world.rank, "world_size": world.size, "items_total": items_total, "run_keys": list(settings)}
    return {**settings, "part": part}


__all__ = ["PARTS", "World", "init_world", "barrier", "close_world", "shard_jobs", "part_dir", "clear_stale_parts", "part_settings"]
