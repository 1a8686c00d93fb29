"""What a compute node can run, as it advertises it in its heartbeat: CPUs, memory, GPUs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Capacity:
    cpus: float
    memory: int  # bytes
    gpus: int = 0
    gpu_models: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Capacity:
        return cls(cpus=float(data["cpus"]), memory=int(data["memory"]), gpus=int(data["gpus"]),
                   gpu_models=tuple(data.get("gpu_models", ())))
