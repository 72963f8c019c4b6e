"""The teacher: a larger ranker that attends over the user's recent actions (TransAct-style).

Per event it encodes the user's last ``L`` actions (item vector, action weight, recency
position) with a transformer layer, lets every candidate attend over that encoded sequence
(target attention), and feeds the result, the candidate's vector, their product and the
compact feature row through an MLP. It is too slow to run on every event at serving time;
its job is to produce soft targets for the student.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TeacherConfig:
    """Sizes of the teacher."""

    hidden: int = 64
    heads: int = 4
    mlp: int = 256
    dropout: float = 0.1


class Teacher(nn.Module):
    """Scores ``[G, C]`` candidates from features, item vectors and the user's sequence."""

    #: Variable dimensions for ONNX export: groups everywhere, candidates where they appear.
    ONNX_AXES = {
        "features": (0, 1),
        "items": (0, 1),
        "seq": (0,),
        "seq_weight": (0,),
        "score": (0, 1),
    }

    def __init__(self, n_features: int, dim: int, seq_len: int, config: TeacherConfig) -> None:
        super().__init__()
        h = config.hidden
        self.seq_len = seq_len
        self.item_proj = nn.Linear(dim, h)
        self.action_proj = nn.Linear(1, h)
        self.position = nn.Parameter(torch.zeros(seq_len, h))
        self.encoder = nn.TransformerEncoderLayer(
            d_model=h,
            nhead=config.heads,
            dim_feedforward=2 * h,
            dropout=config.dropout,
            batch_first=True,
        )
        self.target_attention = nn.MultiheadAttention(
            h, config.heads, dropout=config.dropout, batch_first=True
        )
        self.feature_norm = nn.LayerNorm(n_features)
        self.mlp = nn.Sequential(
            nn.Linear(n_features + 4 * h, config.mlp),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.mlp, config.mlp // 2),
            nn.ReLU(),
            nn.Linear(config.mlp // 2, 1),
        )

    def forward(
        self,
        features: torch.Tensor,  # [G, C, F]
        items: torch.Tensor,  # [G, C, d]
        seq: torch.Tensor,  # [G, L, d]
        seq_weight: torch.Tensor,  # [G, L], 0 = padding
    ) -> torch.Tensor:
        """Scores ``[G, C]`` (logits: higher is better)."""
        pad = seq_weight <= 0
        # A user with no history still needs one key to attend to: the newest slot stays
        # unmasked (its inputs are zeros), so attention never sees an all-masked row.
        pad = torch.cat([pad[:, :-1], torch.zeros_like(pad[:, -1:])], dim=1)
        tokens = self.item_proj(seq) + self.action_proj(seq_weight.unsqueeze(-1)) + self.position
        encoded = self.encoder(tokens, src_key_padding_mask=pad)
        valid = (~pad).unsqueeze(-1).to(encoded.dtype)
        summary = (encoded * valid).sum(1) / valid.sum(1).clamp(min=1.0)  # [G, h]
        cand = self.item_proj(items)  # [G, C, h]
        attended, _ = self.target_attention(
            cand, encoded, encoded, key_padding_mask=pad, need_weights=False
        )
        user = summary.unsqueeze(1).expand_as(cand)
        x = torch.cat(
            [self.feature_norm(features), cand, attended, cand * attended, user * cand], dim=-1
        )
        return self.mlp(x).squeeze(-1)
