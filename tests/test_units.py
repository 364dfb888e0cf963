"""Direct tests of small modules that the end-to-end tests only reach indirectly: the CLI wiring of every
command handler, the scan parsers' building blocks, the synthetic face texture, epoch batches and the app's
3D figure."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from pose3dfr.errors import InvalidScanError


@pytest.mark.parametrize("module, function", [
    ("pose3dfr.commands.verify", "run"), ("pose3dfr.commands.verify_pairs", "verify_pairs"),
    ("pose3dfr.commands.convert_dlib", "run"), ("pose3dfr.commands.convert_sface", "run"),
    ("pose3dfr.commands.train", "run"),
    ("pose3dfr.commands.evaluate", "evaluate"), ("pose3dfr.commands.evaluate", "calibrate"),
    ("pose3dfr.commands.ablate", "run"), ("pose3dfr.commands.synth", "run"), ("pose3dfr.commands.publish", "run"),
    ("pose3dfr.commands.gallery", "build"), ("pose3dfr.commands.export", "export"),
    ("pose3dfr.commands.headpose", "train")])
def test_every_command_handler_is_wired_into_the_cli(module, function):
    from pose3dfr.cli import build_parser

    target = f"{module}:{function}"
    parser = build_parser()
    handlers = set()
    for action in parser._subparsers._group_actions:  # the subcommands and, for `gallery`, its actions
        for sub in action.choices.values():
            handlers.add(sub.get_default("handler"))
            for inner in getattr(sub, "_subparsers", None)._group_actions if sub._subparsers else []:
                handlers |= {p.get_default("handler") for p in inner.choices.values()}
    assert target in handlers
    assert callable(getattr(importlib.import_module(module), function))


def test_scan_parser_building_blocks(tmp_path):
    from pose3dfr.data.scan_formats import ScanLimits, fan_triangulate, header_count
    from pose3dfr.data.scan_ply import read_ply

    limits = ScanLimits("t.ply", max_points=100)
    assert header_count(b"12", "vertices", limits, "PLY") == 12
    for bad in (b"+1", b"-3", b"0x10"):
        with pytest.raises(InvalidScanError, match="plain decimal"):
            header_count(bad, "vertices", limits, "PLY")
    with pytest.raises(InvalidScanError, match="over the limit"):
        limits.points(101)
    assert fan_triangulate([np.array([0, 1, 2, 3])]).tolist() == [[0, 1, 2], [0, 2, 3]]
    path = tmp_path / "t.ply"
    path.write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                     b"property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
                     b"0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n")
    scan = read_ply(path, limits)
    assert scan.xyz.shape == (3, 3) and scan.faces.tolist() == [[0, 1, 2]]


def test_synthetic_face_texture_is_an_albedo_image():
    from pose3dfr.data.synthetic import sample_identity
    from pose3dfr.data.synthetic.texture import face_texture

    texture = face_texture(sample_identity(0, 1).texture, size=64)
    assert texture.shape == (64, 64, 3) and texture.dtype == np.float32
    assert 0.0 <= texture.min() and texture.max() <= 1.0 and texture.std() > 0.01


def test_epoch_batches_skip_the_batches_a_resumed_run_has_seen():
    from torch.utils.data import DistributedSampler

    from pose3dfr.engine.batches import EpochBatches

    sampler = DistributedSampler(list(range(20)), num_replicas=1, rank=0, shuffle=True, seed=3, drop_last=True)
    full = list(EpochBatches(sampler, 4, epoch=2))
    resumed = list(EpochBatches(sampler, 4, epoch=2, skip=2))
    assert len(full) == 5 and resumed == full[2:] and all(key[0] == 2 for batch in full for key in batch)


def test_attention_figure_says_when_a_checkpoint_has_no_3d_attention():
    from pose3dfr.ui.figures import attention_figure

    points = np.random.default_rng(0).normal(size=(50, 3))
    with_attention = attention_figure(points, np.linspace(0, 1, 50))
    without = attention_figure(points, None)
    assert attention_figure(None, None) is None
    assert len(with_attention.data[0].x) == 50 and len(without.data[0].x) == 50
    assert "no 3D" in without.layout.title.text or "no 3D" in str(without.layout.annotations)
