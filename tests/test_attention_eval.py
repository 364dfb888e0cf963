"""Heatmaps that follow the face (pose3dfr.eval.attention): different faces give different maps, a frontal face
is hottest on the face whatever the attention does, the deletion test beats random cells on the shipped default,
and `pose3dfr attention` writes its figures and statistics."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from pose3dfr.eval import attention as ea
from pose3dfr.eval.attention_data import photo_faces
from pose3dfr.inference.verifier import Verifier
from pose3dfr.models.attribution import CellGrid
from pose3dfr.paths import PROJECT_ROOT

FRONTAL_PHOTOS = ("obama.jpg", "biden.jpg", "astronaut.png")
# The retired dlib-based default (a trained joint attention with a sink), where scripts/reproduce_results.sh puts it.
RETIRED_ATTENTION_MODEL = PROJECT_ROOT / "runs" / "retired" / "dlib-guided.safetensors"


def _heat(model, chip: np.ndarray):
    with torch.inference_mode():
        return model.embed_network(torch.from_numpy(chip[None]).permute(0, 3, 1, 2).float() / 255.0)


def _frontal_faces(verifier, photos_dir, synth_views) -> list[ea.FaceChip]:
    faces = list(photo_faces(verifier, [photos_dir / name for name in FRONTAL_PHOTOS]))
    image, landmarks = synth_views[0]
    prepared = verifier.prepare(image)
    faces.append(ea.FaceChip(prepared.crop, ea.face_hull(landmarks, prepared.matrix), 0.0, "render 0",
                             matrix=prepared.matrix))
    assert len(faces) == len(FRONTAL_PHOTOS) + 1 and all(f.hull is not None for f in faces)
    return faces


def _inside(face: ea.FaceChip, grid: CellGrid, cell: int) -> bool:
    x, y = grid.centres[cell % grid.cells], grid.centres[cell // grid.cells]
    return cv2.pointPolygonTest(face.hull.reshape(-1, 1, 2).astype(np.float32), (float(x), float(y)), False) >= 0


def _assert_hottest_on_face(model, faces: list[ea.FaceChip]) -> None:
    grid = model.cell_grid
    for face in faces:
        heat = _heat(model, face.chip).heatmaps[0].flatten().numpy()
        top = np.argsort(heat)[::-1][:3]
        row, col = divmod(int(top[0]), grid.cells)
        assert 0 < row < grid.cells - 1 and 0 < col < grid.cells - 1, (face.name, row, col)  # not the border
        assert _inside(face, grid, int(top[0])) and sum(_inside(face, grid, int(t)) for t in top) >= 2, face.name
        assert ea.map_statistics(torch.from_numpy(heat), grid, face.hull)["com_in_face"] == 1.0, face.name


@pytest.fixture(scope="module")
def frontal_faces(default_verifier, photos_dir, synth_views):
    return _frontal_faces(default_verifier, photos_dir, synth_views)


def test_two_faces_give_different_maps(default_verifier, frontal_faces):
    maps = [_heat(default_verifier.model, f.chip).heatmaps[0].numpy() for f in frontal_faces]
    for i in range(len(maps)):
        for j in range(i + 1, len(maps)):
            p, q = (np.clip(m, 0, None) / np.clip(m, 0, None).sum() for m in (maps[i], maps[j]))
            assert np.abs(p - q).sum() > 0.1  # L1 distance of the maps' positive mass


def test_default_frontal_faces_are_hottest_on_the_face(default_verifier, frontal_faces):
    _assert_hottest_on_face(default_verifier.model, frontal_faces)


def test_a_model_with_an_attention_sink_is_still_hottest_on_the_face(sink_attention_model, frontal_faces):
    """The raw attention piles onto one cell (what the app drew before); the heatmap stays on the face."""
    grid = sink_attention_model.cell_grid
    for face in frontal_faces:
        out = _heat(sink_attention_model, face.chip)
        received = out.attention[0].mean(0)
        sink = int(received.argmax())
        assert float(received[sink]) > 0.3 and int(out.heatmaps[0].flatten().argmax()) != sink
    _assert_hottest_on_face(sink_attention_model, frontal_faces)
    assert grid.cells == 7


@pytest.mark.skipif(not RETIRED_ATTENTION_MODEL.is_file(), reason="the retired dlib-based default is not rebuilt here")
def test_the_dlib_based_attention_model_is_hottest_on_the_face(default_verifier, photos_dir, synth_views):
    old = Verifier.from_pretrained(RETIRED_ATTENTION_MODEL, analyzer=default_verifier.analyzer)
    assert old.model.attention is not None
    _assert_hottest_on_face(old.model, _frontal_faces(old, photos_dir, synth_views))


def test_deletion_beats_random_cells_on_the_default(default_verifier, frontal_faces, synth_views):
    image, landmarks = synth_views[45]
    prepared = default_verifier.prepare(image)
    faces = frontal_faces[:2] + [ea.FaceChip(prepared.crop, ea.face_hull(landmarks, prepared.matrix), 45.0, "45")]
    for face in faces:
        report = ea.chip_report(default_verifier.model, face)
        assert report.auc["heatmap"] > report.auc["random"] + 0.05, (face.name, report.auc)
        assert report.curves["heatmap"][-1] == report.curves["random"][-1]  # all cells grey: one shared end
    summary = ea.summarise([report])
    assert summary["[30,60)"]["chips"] == 1 and summary["all"]["beats_random"] == 1.0


def test_deletion_helpers():
    assert ea.deletion_steps(49) == [1, 2, 5, 10, 15, 24, 37, 49] and ea.deletion_steps(4, every_k=True) == [1, 2, 3, 4]
    assert ea.curve_auc([1, 2], [1.0, 1.0], 2) == pytest.approx(0.75)  # from (0, 0) to (0.5, 1) to (1, 1)
    grid = CellGrid(8, 2, 4.0, 1.5)
    image = torch.zeros(3, 8, 8)
    out = ea.occluded(image, torch.tensor([[3, 0, 1, 2]]), [1, 4], grid)
    assert out.shape == (2, 3, 8, 8)
    assert bool((out[0, :, 4:, 4:] == ea.OCCLUSION_FILL).all()) and float(out[0, :, :4].abs().sum()) == 0.0
    assert bool((out[1] == ea.OCCLUSION_FILL).all())
    one_hot = torch.zeros(4)
    one_hot[1] = 0.2  # cell (0, 1), centred on pixel (5.5, 1.5)
    hull = np.array([[4, 0], [8, 0], [8, 4], [4, 4]], np.float32)
    stats = ea.map_statistics(one_hot, grid, hull)
    assert stats["entropy"] == pytest.approx(0.0) and stats["com_x"] == pytest.approx(5.5 / 8)
    assert stats["com_in_face"] == 1.0 and stats["face_mass"] == 1.0
    seen = np.array([[0, 0, 1], [10, 0, 1], [0, 10, 1], [50, 50, 0]], np.float64)  # the last one is hidden
    assert ea.face_hull(seen, np.array([[1.0, 0, 0], [0, 1.0, 0]])).max() == 10.0


def test_attention_command_writes_a_grid_per_identity_and_statistics(one_identity_benchmark, small_3d_checkpoint,
                                                                     tmp_path, capsys):
    from pose3dfr.cli import main

    checkpoint = str(small_3d_checkpoint) + ".safetensors"
    assert main(["attention", "--checkpoint", checkpoint, "--data", str(one_identity_benchmark), "--identity", "1",
                 "--out", str(tmp_path)]) == 0
    figure = cv2.imread(str(tmp_path / "1.png"))
    report = json.loads((tmp_path / "attention.json").read_text())
    views = len(report["views"])  # the views where the pipeline finds the face (at least the frontal and one more)
    assert report["identities"] == ["1"] and views >= 2
    assert figure is not None and figure.shape[1] >= views * 160 and figure.shape[0] > 2 * 160  # + the 3D row
    assert {"all", "[0,30)"} <= set(report["per_bin"])
    frontal = report["per_bin"]["[0,30)"]
    assert {"heatmap", "random"} <= set(frontal["auc"]) and "sink_share" in frontal["attention"]
    assert "| tiny |" in capsys.readouterr().out


def test_sweep_grid_pads_columns_to_one_height_under_a_title():
    """attention_views.sweep_grid: columns of different heights (views with and without a 3D panel) side by side,
    padded white, each followed by the gap, below a title band."""
    from pose3dfr.eval.attention_views import sweep_grid

    columns = [np.zeros((100, 30, 3), np.uint8), np.zeros((60, 20, 3), np.uint8)]
    grid = sweep_grid(columns, "identity 1", gap=4)
    title = grid.shape[0] - 100
    assert grid.shape[1] == 30 + 4 + 20 + 4 and title > 0 and grid.dtype == np.uint8
    assert (grid[title + 60:, 34:54] == 255).all() and (grid[title:title + 60, 34:54] == 0).all()


def test_summary_table_has_a_row_per_checkpoint_and_bin_with_extra_rankings():
    """attention_report.summary_table: one row per (checkpoint, bin); the previous map is whatever ranking is not
    the heatmap, random or an extra one; missing statistics print as '-'."""
    from pose3dfr.eval.attention_report import summary_table

    stats = {"chips": 4, "auc": {"heatmap": 0.7, "random": 0.4, "feature norm": 0.6, "occlusion": 0.8},
             "beats_random": 1.0, "maps": {"heatmap": {"entropy": 0.9, "com_in_face": 1.0, "face_mass": 0.6}}}
    table = summary_table({"tiny": {"all": stats, "[0,30)": stats}}, ["occlusion"]).splitlines()
    assert len(table) == 4 and "AUC occlusion" in table[0]
    assert table[2] == "| tiny | all | 4 | 0.700 | 0.600 | 0.400 | 0.800 | 100% | 0.90 | 100% | 60% | - |"
