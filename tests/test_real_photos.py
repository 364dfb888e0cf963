"""The real-photo regression check (pose3dfr.eval.real_photos, `pose3dfr photos`)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pose3dfr.cli import main
from pose3dfr.eval.real_photos import VARIANTS, check_pairs, load_version, photo_versions, real_photo_check


def test_pairs_join_people_never_two_versions_of_one_photograph():
    versions = photo_versions()
    assert len(versions) == 5 * len(VARIANTS)
    same, different = check_pairs(versions)
    assert all(versions[i].person == versions[j].person and versions[i].photo != versions[j].photo for i, j in same)
    assert all(versions[i].person != versions[j].person for i, j in different)
    assert (len(same), len(different)) == (3 * len(VARIANTS) ** 2, 252)  # 3 photo pairs of obama; 3 people
    same, different = check_pairs(photo_versions(variants=False))
    assert same == [(0, 1), (0, 2), (1, 2)] and len(different) == 7


def test_variants_are_the_degradations_they_name():
    original, small, grey, mirrored = (load_version(v) for v in photo_versions()[:6]
                                       if v.variant in ("original", "small", "grey", "mirrored"))
    assert max(small.shape[:2]) == 256 < max(original.shape[:2])
    assert np.array_equal(grey[..., 0], grey[..., 2])
    assert np.array_equal(mirrored, original[:, ::-1])


@pytest.fixture(scope="module")
def pretrained_check(default_verifier):
    from pose3dfr.inference.verifier import Verifier

    return real_photo_check(Verifier.from_pretrained("dlib-pretrained", analyzer=default_verifier.analyzer))


def test_pretrained_network_passes_at_dlibs_published_rule(pretrained_check):
    assert pretrained_check["faces_missed"] == []
    assert pretrained_check["auc"] == 1.0 and pretrained_check["separated"]
    assert pretrained_check["same_accepted"] == pretrained_check["same_pairs"]
    assert pretrained_check["different_accepted"] == 0
    assert all("dlib's published rule" in source for source in pretrained_check["threshold_sources"])


def test_photos_command_prints_and_writes_each_checkpoint(tmp_path, capsys):
    out = tmp_path / "photos.json"
    assert main(["photos", "--checkpoint", "dlib-pretrained", "--originals-only", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| `dlib-pretrained` | 1.000 |" in printed
    record = json.loads(out.read_text())["dlib-pretrained"]
    assert record["photos"] == 5 and record["same_pairs"] == 3 and record["different_pairs"] == 7
