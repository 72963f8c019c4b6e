"""The student: a small MLP over the compact feature row, cheap enough for every event.

Input normalisation (mean/std learned from the training rows) is folded into the module so
the exported ONNX graph takes the engine's raw feature rows as they are built at serving.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class StudentConfig:
    """Hidden layer widths of the student."""

    hidden: tuple[int, ...] = (64, 32)


class Student(nn.Module):
    """``[n, F]`` raw feature rows to ``[n]`` scores."""

    mean: torch.Tensor
    inv_std: torch.Tensor

    def __init__(self, n_features: int, config: StudentConfig) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("inv_std", torch.ones(n_features))
        layers: list[nn.Module] = []
        width = n_features
        for h in config.hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*layers)

    def set_normalisation(self, rows: np.ndarray) -> None:
        """Standardise inputs with the statistics of ``rows`` ([n, F] training features)."""
        mean = rows.mean(axis=0)
        std = rows.std(axis=0)
        self.mean.copy_(torch.from_numpy(mean.astype(np.float32)))
        self.inv_std.copy_(torch.from_numpy((1.0 / np.maximum(std, 1e-6)).astype(np.float32)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Scores for each row; works on ``[n, F]`` and on grouped ``[G, C, F]`` input."""
        x = (features - self.mean) * self.inv_std
        return self.mlp(x).squeeze(-1)
