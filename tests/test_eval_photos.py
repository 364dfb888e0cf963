"""`pose3dfr eval-photos`: a tiny labelled folder from the shipped photos through the library and the CLI (pairs,
faces found, decisions equal to Verifier.verify's, yaw errors, peers' rows, JSON), the naming rules and the
refusals."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from PIL import Image, ImageOps

from pose3dfr.cli import main
from pose3dfr.errors import Pose3DFRError
from pose3dfr.eval import peers as peer_systems
from pose3dfr.eval.metrics import tar_at_far
from pose3dfr.eval.photo_folder import (ALL_GROUP, OURS, FolderPhoto, Pairs, PhotoFolderConfig, build_pairs,
                                        choose_enrolments, evaluate_photo_folder, parse_name, read_photo_folder,
                                        system_rows)

SIDE = 480  # longest side of the test's copies: faces of 150+ px, each system several times faster than full size
SKIPPED = {"bob_45_1.jpg": "name refused", "notes.txt": "not a photo", "obama/alice__10__z.jpg": "name refused",
           "obama/50__broken.jpg": "unreadable"}


def _copy(source: Path, target: Path, mirror: bool = False) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as image:
        image = image.convert("RGB")
        image.thumbnail((SIDE, SIDE))
        (ImageOps.mirror(image) if mirror else image).save(target)


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory, photos_dir) -> Path:
    """obama: 0 (enrolment), an unlabelled photo, obama3 labelled 40 and its mirror -40; biden: 0 and a faceless
    grey photo labelled 10; collins: unlabelled (enrolled by the estimate); plus files that must be left out."""
    root = tmp_path_factory.mktemp("labelled")
    _copy(photos_dir / "obama.jpg", root / "obama" / "0__a.jpg")
    _copy(photos_dir / "obama2.jpg", root / "obama" / "obama2.jpg")
    _copy(photos_dir / "obama3.jpg", root / "obama" / "obama__40__c.jpg")
    _copy(photos_dir / "obama3.jpg", root / "obama" / "-40__m.jpg", mirror=True)
    _copy(photos_dir / "biden.jpg", root / "biden__0__a.jpg")
    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(root / "biden__10__grey.png")
    _copy(photos_dir / "astronaut.png", root / "collins" / "astronaut.png")
    (root / "obama" / "50__broken.jpg").write_bytes(b"not a jpeg")
    (root / "obama" / "alice__10__z.jpg").write_bytes(b"refused before it is read")
    _copy(photos_dir / "biden.jpg", root / "bob_45_1.jpg")
    (root / "notes.txt").write_text("labels")
    (root / ".DS_Store").write_bytes(b"\0")
    return root


@pytest.fixture(scope="module")
def installed_peers():
    systems = {}
    for key in peer_systems.PEERS:
        if peer_systems.peer_available(key) is None:
            systems[key] = peer_systems.make_peer(key)
            systems[key].load()
    return systems


@pytest.fixture(scope="module")
def report(labelled_folder, default_verifier, installed_peers):
    return evaluate_photo_folder(read_photo_folder(labelled_folder), default_verifier, installed_peers)


def _row(rows, group):
    return next(r for r in rows if r["group"] == group)


def test_folder_reading_pairs_and_counts(report):
    skipped = {s["file"]: s["reason"] for s in report["skipped"]}
    assert set(skipped) == set(SKIPPED) and all(skipped[f].startswith(why) for f, why in SKIPPED.items())
    assert report["photos"] == 7 and report["identities"] == 3
    assert report["enrolments"] == {"biden": "biden__0__a.jpg", "collins": "collins/astronaut.png",
                                    "obama": "obama/0__a.jpg"}
    assert (report["labelled_probes"], report["estimated_probes"]) == (3, 1)
    rows = report["systems"][OURS]["rows"]
    assert [r["group"] for r in rows] == ["[0,30)", "[30,60)", ALL_GROUP]
    everything = _row(rows, ALL_GROUP)
    assert (everything["probes"], everything["genuine_pairs"], everything["impostor_pairs"]) == (4, 4, 8)
    assert everything["faces_found"] == 3  # the grey photo has no face
    frontal = _row(rows, "[0,30)")  # obama2 (by its estimate, about -13) and the grey one (labelled 10)
    assert (frontal["probes"], frontal["faces_found"], frontal["genuine_pairs"], frontal["impostor_pairs"]) == (2, 1, 2, 4)
    assert frontal["empirical"]["tar"] is None and frontal["empirical"]["impostor_pairs"] == 4  # fewer than 1 / FAR
    grey = next(p for p in report["per_photo"] if p["file"] == "biden__10__grey.png")
    assert grey["faces_found"] == {OURS: False, **{k: False for k in report["systems"] if k != OURS}}


def test_decisions_are_the_verifiers_and_yaw_errors_are_estimate_minus_label(report, labelled_folder,
                                                                                default_verifier):
    photos = {p["file"]: p for p in report["per_photo"]}
    enrolments = sorted(report["enrolments"].values())
    probes = [f for f, p in photos.items() if p["role"] == "probe" and p["faces_found"][OURS]]
    pairs = [(e, p) for p in probes for e in enrolments]
    results = default_verifier.verify_many([(labelled_folder / e, labelled_folder / p) for e, p in pairs])
    rows = report["systems"][OURS]["rows"]
    for group in ("[0,30)", "[30,60)", ALL_GROUP):
        mine = [(r, e, p) for r, (e, p) in zip(results, pairs) if group in (ALL_GROUP, photos[p]["group"])]
        same = [r.match for r, e, p in mine if photos[e]["identity"] == photos[p]["identity"]]
        other = [r.match for r, e, p in mine if photos[e]["identity"] != photos[p]["identity"]]
        row = _row(rows, group)  # the faceless probe's pairs are rejects: they add to the counts, never to accepts
        assert (row["genuine_accepted"], row["impostors_accepted"]) == (sum(same), sum(other)), group
        assert row["genuine_accept_rate"] == pytest.approx(sum(same) / row["genuine_pairs"])
        assert row["impostor_accept_rate"] == pytest.approx(sum(other) / row["impostor_pairs"])
        assert sum(row["threshold_evidence"].values()) == len(mine)
    for result, (_, probe) in zip(results, pairs):
        assert photos[probe]["yaw_estimate"] == pytest.approx(result.probe.yaw, abs=1e-6)
    errors = [photos[f]["yaw_estimate"] - photos[f]["yaw_label"] for f in ("obama/obama__40__c.jpg", "obama/-40__m.jpg")]
    turned = _row(rows, "[30,60)")["yaw_error"]
    assert turned["photos"] == 2 and turned["flips"] == sum(abs(e) > 90 for e in errors)
    assert turned["median_abs"] == pytest.approx(np.median(np.abs(errors)))
    assert turned["mean_abs"] == pytest.approx(np.mean(np.abs(errors)))
    magnitudes = [abs(photos[f]["yaw_estimate"]) - 40.0 for f in ("obama/obama__40__c.jpg", "obama/-40__m.jpg")]
    assert turned["median_abs_magnitude"] == pytest.approx(np.median(np.abs(magnitudes)))
    assert _row(rows, "[0,30)")["yaw_error"] is None  # obama2 has no label, the grey photo no estimate


def test_peer_rows_follow_each_peers_own_rule(report, labelled_folder, installed_peers):
    if not installed_peers:
        pytest.skip(peer_systems.peer_available("sface"))
    from pose3dfr.face.image_io import load_image

    photos = {p["file"]: p for p in report["per_photo"]}
    for key, system in installed_peers.items():
        rows = report["systems"][key]["rows"]
        assert [r["group"] for r in rows] == [r["group"] for r in report["systems"][OURS]["rows"]]
        embeddings = {f: system.detect_align_embed(load_image(labelled_folder / f)) for f in photos}
        accepted = {"genuine": 0, "impostor": 0}
        for probe in (f for f, p in photos.items() if p["role"] == "probe"):
            for enrolment in report["enrolments"].values():
                a, b = embeddings[enrolment], embeddings[probe]
                kind = "genuine" if photos[enrolment]["identity"] == photos[probe]["identity"] else "impostor"
                accepted[kind] += a is not None and b is not None and bool(
                    system.accepts(system.similarity(a[None], b[None]))[0, 0])
        everything = _row(rows, ALL_GROUP)
        assert (everything["genuine_accepted"], everything["impostors_accepted"]) == (accepted["genuine"],
                                                                                     accepted["impostor"]), key
        assert everything["faces_found"] == sum(embeddings[f] is not None for f, p in photos.items()
                                                if p["role"] == "probe")


def test_cli_writes_the_table_and_json_and_warns_of_one_identity(tmp_path, photos_dir, capsys):
    folder = tmp_path / "one"
    _copy(photos_dir / "obama.jpg", folder / "obama__0__a.jpg")
    _copy(photos_dir / "obama2.jpg", folder / "obama__-15__b.jpg")
    out = tmp_path / "report.json"
    assert main(["eval-photos", str(folder), "--json", str(out), "--peers", "sface"]) == 0
    captured = capsys.readouterr()
    assert "one identity only" in captured.err
    assert "## pose3dfr (default)" in captured.out and "| [0,30) | 1 | 1 |" in captured.out
    written = json.loads(out.read_text())
    row = _row(written["systems"][OURS]["rows"], ALL_GROUP)
    assert (row["genuine_pairs"], row["impostor_pairs"], row["impostor_accept_rate"], row["auc"]) == (1, 0, None, None)
    assert row["yaw_error"]["photos"] == 1
    photo = next(p for p in written["per_photo"] if p["role"] == "probe")
    assert row["yaw_error"]["median_abs"] == pytest.approx(abs(photo["yaw_estimate"] - -15.0))
    if peer_systems.peer_available("sface") is None:
        assert "## OpenCV SFace + YuNet" in captured.out and "sface" in written["systems"]
    from pose3dfr.eval.photo_report import markdown_report

    assert markdown_report(written).strip() in captured.out  # the printed table is the JSON's report


@pytest.mark.parametrize("files, args, message", [
    ({}, [], "no photos to evaluate"),
    ({"notes.txt": b"x", "bob_45.jpg": b"x"}, [], "2 files skipped"),
    ({"alice__45__1.jpg": b"x", "bob__60__1.jpg": b"x"}, [], "no identity has a frontal photo"),
    ({"alice__0__1.jpg": b"x", "bob__0__1.jpg": b"x"}, ["--groups", "30,0"], "ascending |yaw| edges"),
    ({"alice__0__1.jpg": b"x", "bob__0__1.jpg": b"x"}, ["--empirical-far", "0"], "far must be in (0, 1)"),
    ({"alice__0__1.jpg": b"x", "bob__0__1.jpg": b"x"}, ["--peers", "arcface"], "unknown peer"),
], ids=["empty", "nothing-usable", "no-frontal", "groups", "far", "peer"])
def test_refusals_before_any_model_loads(tmp_path, capsys, files, args, message):
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    assert main(["eval-photos", str(tmp_path), *args]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("name, expected", [
    ("alice__-45__1.jpg", ("alice", -45.0)), ("alice__+67.5__x.png", ("alice", 67.5)),
    ("alice/photo_045_01.jpg", ("alice", None)), ("alice/90__3.jpg", ("alice", 90.0)),
    ("alice/alice__-30__2.jpg", ("alice", -30.0)), ("alice/profile/0__f.jpg", ("alice", 0.0)),
])
def test_names_that_carry_labels(name, expected):
    assert parse_name(PurePosixPath(name)) == expected


@pytest.mark.parametrize("name, why", [
    ("alice_45_1.jpg", "IDENTITY__YAW__k"), ("alice__45.jpg", "IDENTITY__YAW__k"),
    ("alice__left__1.jpg", "not signed degrees"), ("alice__1e3__1.jpg", "not signed degrees"),
    ("alice__nan__1.jpg", "not signed degrees"), ("alice__200__1.jpg", "not signed degrees"),
    ("alice/bob__10__1.jpg", "identity 'bob'"), ("alice/a__b__c__d.jpg", "YAW__k or IDENTITY__YAW__k"),
])
def test_ambiguous_names_are_refused(name, why):
    with pytest.raises(Pose3DFRError, match=why):
        parse_name(PurePosixPath(name))


def test_enrolment_is_the_most_frontal_labelled_photo_else_estimate():
    photos = [FolderPhoto(Path(f"{i}.jpg"), f"{i}.jpg", who, yaw) for i, (who, yaw) in enumerate(
        [("a", 30.0), ("a", -5.0), ("a", None), ("b", 45.0), ("b", 60.0), ("c", None), ("c", None)])]
    estimates = [31.0, -4.0, 1.0, 44.0, 58.0, 12.0, -3.0]  # a's unlabelled photo is nearer frontal: labels decide
    enrolments, warnings = choose_enrolments(photos, estimates, PhotoFolderConfig())
    assert enrolments == {"a": 1, "c": 6}
    assert len(warnings) == 1 and warnings[0].startswith("b: no frontal photo")
    pairs = build_pairs([p.identity for p in photos], enrolments)
    assert pairs.probes.tolist() == [0, 2, 3, 4, 5]
    assert int(pairs.genuine.sum()) == 3 and int((~pairs.genuine).sum()) == 7  # b's probes: impostors only


def test_tar_at_the_empirical_far_needs_one_over_far_impostor_pairs():
    rng = np.random.default_rng(0)
    genuine, impostor = rng.normal(1.0, 0.5, 40), rng.normal(0.0, 0.5, 160)
    scores = np.concatenate([genuine, impostor])
    probes = np.arange(200, dtype=np.int32)
    pairs = Pairs(np.zeros(200, np.int32), probes, np.arange(200) < 40, probes)
    groups = np.array(["[0,30)"] * 200, dtype=object)
    found = np.ones(200, bool)
    rows = system_rows(scores, scores > 0.5, found, pairs, groups, PhotoFolderConfig(empirical_far=0.01))
    assert rows[0]["empirical"]["tar"] == pytest.approx(tar_at_far(genuine, impostor, 0.01))
    assert rows[0]["empirical"]["impostor_pairs"] == 160
    few = system_rows(scores, scores > 0.5, found, pairs, groups, PhotoFolderConfig(empirical_far=0.005))
    assert few[0]["empirical"]["tar"] is None  # 160 < 200


def test_a_benchmark_root_is_read_as_a_labelled_folder_with_true_yaws(tiny_benchmark, monkeypatch):
    """eval-photos on a synthetic benchmark root measures renders as it measures photos: every view of the split's
    identities, labelled with its true yaw (issue 31: the same rows on renders and on real photos)."""
    from pose3dfr.data.facescape import FaceScapeMultiView
    from pose3dfr.eval.photo_folder import is_benchmark_root, read_benchmark_split

    assert is_benchmark_root(tiny_benchmark)
    folder = read_benchmark_split(tiny_benchmark, None, max_identities=2)
    dataset = FaceScapeMultiView(tiny_benchmark, num_points=0)
    wanted = [r for r in dataset.records if r.identity_name in dataset.identity_names[:2]]
    assert len(folder.photos) == len(wanted) and {p.identity for p in folder.photos} == set(dataset.identity_names[:2])
    assert all(p.path.is_file() and not Path(p.name).is_absolute() for p in folder.photos)
    assert sorted(p.yaw_label for p in folder.photos) == sorted(r.yaw for r in wanted)
    monkeypatch.chdir(tiny_benchmark.parent)  # a root given relative to the working directory, as on the CLI
    relative = read_benchmark_split(Path(tiny_benchmark.name), None, max_identities=2)
    assert [p.name for p in relative.photos] == [p.name for p in folder.photos]
    assert all(p.path.is_file() for p in relative.photos)
