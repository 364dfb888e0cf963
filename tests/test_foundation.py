"""The project's foundation: assets with provenance, the CLI, the app serving its page."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import urllib.request

import pytest

import pose3dfr
from pose3dfr.cli import build_parser, main

# One worker runs every test of the session's shared app (xdist --dist loadgroup): it starts once.
pytestmark = pytest.mark.xdist_group("app")


def test_every_shipped_asset_has_notice_entry_with_matching_sha256(assets_dir):
    notice = (assets_dir / "NOTICE.md").read_text()
    files = [p for p in assets_dir.rglob("*") if p.is_file() and p.name != "NOTICE.md"]
    assert len(files) >= 10
    for path in files:
        rel = path.relative_to(assets_dir).as_posix()
        row = next((line for line in notice.splitlines() if f"`{rel}`" in line), None)
        assert row is not None, f"{rel} has no row in assets/NOTICE.md"
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest in row, f"{rel}: sha256 in NOTICE.md does not match the file"


def test_cli_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    names = set(build_parser()._subparsers._group_actions[0].choices)
    assert "info" in names
    for name in names:
        assert name in out


def test_cli_info_prints_version(capsys):
    assert main(["info"]) == 0
    assert f"pose3dfr {pose3dfr.__version__}" in capsys.readouterr().out


def test_console_script_module_runs():
    out = subprocess.run([sys.executable, "-m", "pose3dfr", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"pose3dfr {pose3dfr.__version__}"


def test_app_host_and_port_rules(monkeypatch):
    import app

    monkeypatch.delenv("SPACE_ID", raising=False)
    assert app.server_host() == "127.0.0.1"
    monkeypatch.setenv("SPACE_ID", "user/pose3dfr")
    assert app.server_host() == "0.0.0.0"
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    assert app.server_port(None) == 7999
    assert app.server_port(8001) == 8001
    monkeypatch.delenv("GRADIO_SERVER_PORT")
    assert app.server_port(None) == 7860


def test_app_serves_page_with_version(shared_app):
    with urllib.request.urlopen(shared_app.url, timeout=30) as resp:
        assert resp.status == 200
        body = resp.read().decode()
    assert re.search(rf"pose3dfr {re.escape(pose3dfr.__version__)}", body)


def test_setup_skips_pip_only_when_every_pin_is_installed(project_root, tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("installed", project_root / "scripts" / "installed.py")
    installed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(installed)
    (tmp_path / "base.txt").write_text(f"# comment\nnumpy=={installed.installed_version('numpy')}\n")
    (tmp_path / "dev.txt").write_text("-r base.txt\ngradio[mcp]==" + installed.installed_version("gradio") + "\n")
    assert installed.pins(tmp_path / "dev.txt")[0][0] == "numpy" and installed.requirements_met(tmp_path / "dev.txt")
    (tmp_path / "old.txt").write_text("-r base.txt\nnumpy==0.0.1\n")
    assert not installed.requirements_met(tmp_path / "old.txt")
    (tmp_path / "range.txt").write_text("numpy>=1\n")
    assert installed.pins(tmp_path / "range.txt") is None and not installed.requirements_met(tmp_path / "range.txt")
    assert installed.requirements_met(project_root / "requirements-dev.txt")  # the suite runs after setup
    assert installed.requirements_met(project_root / "requirements-bench.txt")  # setup.sh dev, with --no-deps
    assert not installed.editable_here(tmp_path)
