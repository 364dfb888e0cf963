"""3D branch: PointNet++ SSG over a face point cloud, then a reshaping block to a C x H_F x W_F map.

Points are B x P x F in the canonical face frame (cm; x to image right, y up, z out of the face),
F = 3 (xyz), 6 (+normals) or 9 (+normals +rgb). Two set-abstraction levels (farthest point
sampling, ball-query grouping, shared MLP, max pool) are followed by feature propagation back to
every input point. The default reshaping block ("grid") pools those per-point features into the
cell that the point appears in on the view's aligned 2D chip (cells registered per view by
pose3dfr.data.view_registration; without them, the point's frontal position), so cell (i, j) of the
3D map and of the 2D map see the same part of the face; a learned embedding fills cells no point falls in. "global" (ablation) maps the global PointNet++ feature linearly to the map.

Everything is order free: FPS starts at the point farthest from the centroid, groups are the k
nearest points within the radius (not the first k in index order), and pooling is a max.
"""

from __future__ import annotations

import torch
from torch import nn

from pose3dfr.data.view_registration import INVISIBLE, canonical_to_chip_matrix
from pose3dfr.errors import InvalidScanError

POSITION_SCALE = 10.0  # cm; absolute xyz / 10 keeps per-point MLP inputs O(1) for a ~18 cm face


def gather_points(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values B x P x C, index B x ... (long) -> B x ... x C."""
    batch = torch.arange(values.size(0), device=values.device).view(-1, *([1] * (index.dim() - 1)))
    return values[batch, index]


@torch.no_grad()
def farthest_point_sample(xyz: torch.Tensor, count: int) -> torch.Tensor:
    """B x P x 3 -> B x count indices; starts at the point farthest from the centroid (order free)."""
    b, p, _ = xyz.shape
    count = min(count, p)
    batch = torch.arange(b, device=xyz.device)
    farthest = ((xyz - xyz.mean(1, keepdim=True)) ** 2).sum(-1).argmax(1)  # B
    nearest_sq = torch.full((b, p), float("inf"), device=xyz.device, dtype=xyz.dtype)
    chosen = torch.empty(b, count, dtype=torch.long, device=xyz.device)
    for i in range(count):
        chosen[:, i] = farthest
        centre = xyz[batch, farthest].unsqueeze(1)  # B x 1 x 3
        nearest_sq = torch.minimum(nearest_sq, ((xyz - centre) ** 2).sum(-1))
        farthest = nearest_sq.argmax(1)
    return chosen


def _pairwise_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """B x S x 3, B x P x 3 -> B x S x P Euclidean distances, computed per pair (exact, order free)."""
    return torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")


@torch.no_grad()
def ball_query(xyz: torch.Tensor, centres: torch.Tensor, radius: float, k: int) -> torch.Tensor:
    """B x S x k indices of the k nearest points within `radius` of each centre; misses repeat the nearest."""
    dist, index = _pairwise_distance(centres, xyz).topk(min(k, xyz.size(1)), dim=-1, largest=False)
    return torch.where(dist > radius, index[..., :1], index)


def _mlp2d(channels: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for cin, cout in zip(channels[:-1], channels[1:]):
        layers += [nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _mlp1d(channels: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for cin, cout in zip(channels[:-1], channels[1:]):
        layers += [nn.Conv1d(cin, cout, 1, bias=False), nn.BatchNorm1d(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class SetAbstraction(nn.Module):
    """Sample centres (FPS), group neighbours (ball query), shared MLP on relative xyz + features, max pool."""

    def __init__(self, centres: int, radius: float, group_size: int, in_channels: int, mlp: list[int]) -> None:
        super().__init__()
        self.centres, self.radius, self.group_size = centres, radius, group_size
        self.mlp = _mlp2d([in_channels + 3, *mlp])
        self.out_channels = mlp[-1]

    def forward(self, xyz: torch.Tensor, feats: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """xyz B x P x 3, feats B x P x C (or None) -> centres B x S x 3, features B x S x C'."""
        centres = gather_points(xyz, farthest_point_sample(xyz, self.centres))
        group = ball_query(xyz, centres, self.radius, self.group_size)  # B x S x k
        grouped = (gather_points(xyz, group) - centres.unsqueeze(2)) / self.radius  # B x S x k x 3
        if feats is not None:
            grouped = torch.cat([grouped, gather_points(feats, group)], dim=-1)
        out = self.mlp(grouped.permute(0, 3, 1, 2))  # B x C' x S x k
        return centres, out.amax(dim=-1).transpose(1, 2)


class FeaturePropagation(nn.Module):
    """Inverse-distance interpolation (3 nearest) of coarse features onto finer points, concat skip, MLP."""

    def __init__(self, in_channels: int, mlp: list[int]) -> None:
        super().__init__()
        self.mlp = _mlp1d([in_channels, *mlp])

    def forward(self, xyz_fine: torch.Tensor, xyz_coarse: torch.Tensor, feats_coarse: torch.Tensor,
                skip: torch.Tensor | None) -> torch.Tensor:
        """-> B x P_fine x C' features."""
        dist, index = _pairwise_distance(xyz_fine, xyz_coarse).topk(min(3, xyz_coarse.size(1)), dim=-1,
                                                                    largest=False)
        weight = 1.0 / (dist ** 2 + 1e-8)
        weight = weight / weight.sum(-1, keepdim=True)  # B x P x 3
        interp = (gather_points(feats_coarse, index) * weight.unsqueeze(-1)).sum(2)  # B x P x C
        if skip is not None:
            interp = torch.cat([interp, skip], dim=-1)
        return self.mlp(interp.transpose(1, 2)).transpose(1, 2)


class PointEncoder(nn.Module):
    """PointNet++ SSG + reshaping block: B x P x F points -> (B x C x H_F x W_F map, B x P cell index)."""

    def __init__(self, out_channels: int, feature_size: int, template: str = "arcface", input_size: int = 112,
                 point_features: int = 3, reshape: str = "grid", sa1_centres: int = 512, sa1_radius: float = 2.0,
                 sa2_centres: int = 128, sa2_radius: float = 4.0, group_size: int = 32,
                 point_channels: int = 128) -> None:
        super().__init__()
        if point_features not in (3, 6, 9):
            raise ValueError(f"point_features must be 3, 6 or 9, got {point_features}")
        if reshape not in ("grid", "global"):
            raise ValueError(f"reshape must be 'grid' or 'global', got {reshape!r}")
        self.point_features, self.reshape = point_features, reshape
        self.out_channels, self.feature_size, self.input_size = out_channels, feature_size, input_size
        extra = point_features - 3
        self.sa1 = SetAbstraction(sa1_centres, sa1_radius, group_size, extra, [64, 64, 128])
        self.sa2 = SetAbstraction(sa2_centres, sa2_radius, 2 * group_size, 128, [128, 128, 256])
        cells = feature_size * feature_size
        if reshape == "grid":
            self.fp2 = FeaturePropagation(256 + 128, [256])
            self.fp1 = FeaturePropagation(256 + point_features, [point_channels])
            self.empty_cell = nn.Parameter(torch.zeros(cells, point_channels))  # one code per empty cell
            nn.init.normal_(self.empty_cell, std=0.02)
            self.project = nn.Sequential(nn.Conv2d(point_channels, out_channels, 1, bias=False),
                                         nn.BatchNorm2d(out_channels))
        else:
            self.global_mlp = _mlp1d([256 + 3, 256, 512])
            self.to_map = nn.Linear(512, cells * out_channels)
        matrix = torch.tensor(canonical_to_chip_matrix(template, input_size), dtype=torch.float32)
        self.register_buffer("chip_matrix", matrix, persistent=False)

    def cells(self, xyz: torch.Tensor) -> torch.Tensor:
        """B x P x 3 canonical points -> B x P flat cell index row * W_F + col of the frontal 2D chip grid."""
        xy = torch.stack([xyz[..., 0], -xyz[..., 1]], dim=-1)
        chip = xy @ self.chip_matrix[:, :2].T + self.chip_matrix[:, 2]  # B x P x 2 pixels
        grid = torch.floor(chip / self.input_size * self.feature_size).long().clamp(0, self.feature_size - 1)
        return grid[..., 1] * self.feature_size + grid[..., 0]

    def check(self, points: torch.Tensor) -> None:
        """Raise InvalidScanError unless points is B x P x F with this encoder's F and finite values."""
        if points.dim() != 3 or points.size(-1) != self.point_features:
            raise InvalidScanError(f"points: expected B x P x {self.point_features}, got {tuple(points.shape)}")
        if points.size(1) < 4:
            raise InvalidScanError(f"points: need at least 4 points per cloud, got {points.size(1)}")
        if not torch.isfinite(points).all():
            raise InvalidScanError("points: contain NaN or inf")

    def forward(self, points: torch.Tensor, cells: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """B x P x F -> (B x C x H_F x W_F feature map, B x P cell index of each input point).

        cells (B x P, from pose3dfr.data.view_registration) pools each point where the view's 2D chip shows it
        (INVISIBLE: not pooled); without them a point goes to its frontal cell."""
        self.check(points)
        cell = self.cells(points[..., :3]) if cells is None else self._checked_cells(cells, points)
        if self.reshape == "global":
            return self._global_map(points), cell
        return self.map_from_point_features(self.point_features_of(points), cell), cell

    def point_features_of(self, points: torch.Tensor) -> torch.Tensor:
        """B x P x F points -> B x P x Cp per-point PointNet++ features (the expensive part; "grid" only)."""
        xyz = points[..., :3].contiguous()
        extra = points[..., 3:] if self.point_features > 3 else None
        xyz1, f1 = self.sa1(xyz, extra)  # B x S1 x 3, B x S1 x 128
        xyz2, f2 = self.sa2(xyz1, f1)  # B x S2 x 3, B x S2 x 256
        f1_up = self.fp2(xyz1, xyz2, f2, f1)  # B x S1 x 256
        skip = torch.cat([xyz / POSITION_SCALE, points[..., 3:]], dim=-1)
        return self.fp1(xyz, xyz1, f1_up, skip)  # B x P x Cp

    def map_from_point_features(self, per_point: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """B x P x Cp features and B x P cells -> the B x C x H_F x W_F 3D map (cheap: a cached z_3D path)."""
        return self.project(self.pool_cells(per_point, cell))

    def _global_map(self, points: torch.Tensor) -> torch.Tensor:
        xyz = points[..., :3].contiguous()
        xyz1, f1 = self.sa1(xyz, points[..., 3:] if self.point_features > 3 else None)
        xyz2, f2 = self.sa2(xyz1, f1)
        g = self.global_mlp(torch.cat([xyz2 / POSITION_SCALE, f2], -1).transpose(1, 2)).amax(-1)  # B x 512
        return self.to_map(g).view(-1, self.out_channels, self.feature_size, self.feature_size)

    def _checked_cells(self, cells: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        n = self.feature_size * self.feature_size
        if cells.shape != points.shape[:2] or cells.dtype != torch.long:
            raise InvalidScanError(f"cells: expected B x P int64 matching points {tuple(points.shape[:2])}, "
                                   f"got {cells.dtype} {tuple(cells.shape)}")
        if bool(((cells < INVISIBLE) | (cells >= n)).any()):
            raise InvalidScanError(f"cells: values must lie in [{INVISIBLE}, {n - 1}]")
        return cells

    def pool_cells(self, per_point: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
        """Max-pool B x P x Cp features into B x Cp x H_F x W_F by cell; empty cells get the learned code.
        INVISIBLE points go to a spill slot that is dropped."""
        b, _, cp = per_point.shape
        n = self.feature_size * self.feature_size
        slot = torch.where(cell == INVISIBLE, torch.full_like(cell, n), cell)  # B x P in [0, n]
        index = slot.unsqueeze(-1).expand(-1, -1, cp)
        pooled = per_point.new_zeros(b, n + 1, cp).scatter_reduce(1, index, per_point, reduce="amax",
                                                                  include_self=False)[:, :n]
        count = per_point.new_zeros(b, n + 1).scatter_add(1, slot, per_point.new_ones(cell.shape))[:, :n]
        pooled = torch.where((count == 0).unsqueeze(-1), self.empty_cell.unsqueeze(0), pooled)
        return pooled.transpose(1, 2).reshape(b, cp, self.feature_size, self.feature_size)
