"""Background training runs (`pose3dfr train` as a subprocess) for the app: start, stop, state in words,
validation against the starting model, and publishing a finished run into checkpoints/ only when it is
not worse than where it started (or when the user publishes it knowingly)."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pose3dfr.eval.metrics import far_key
from pose3dfr.errors import Pose3DFRError
from pose3dfr.paths import PROJECT_ROOT

# The operating point a run is judged by: overall validation TAR at FAR 1% (the Verify tab's default FAR).
JUDGE_FAR = 0.01
# Longest "failed: ..." reason taken from a run's log.
MAX_REASON_CHARS = 200
# Seconds a stopped run gets to exit before it is killed.
STOP_GRACE_SECONDS = 10


class TrainJobError(Pose3DFRError):
    """A training run cannot be started, stopped or published as asked."""


@dataclass
class TrainJob:
    """A training subprocess and where it writes."""

    name: str
    process: subprocess.Popen
    run_dir: Path
    log_file: Path
    started: float
    published: bool = False
    stopped_by_user: bool = False
    held_back: str | None = None  # why a finished run was not published (worse than its start, unmeasured)


def train_command(preset: str, dataset: Path, run_dir: Path, config: Path | None = None,
                  steps: int | None = None) -> list[str]:
    """The `python -m pose3dfr.cli train ...` command line of a run."""
    command = [sys.executable, "-m", "pose3dfr.cli", "train", "--preset", preset, "--data", str(dataset),
               "--out", str(run_dir)]
    if config is not None:
        command += ["--config", str(config)]
    if steps is not None:
        command += ["--steps", str(int(steps))]
    return command


def read_metrics(run_dir: Path) -> list[dict]:
    """Records of the run's JSONL metrics log (lines still being written are skipped)."""
    records = []
    for path in sorted(run_dir.glob("*.jsonl")):
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
    return records


def validations(records: list[dict]) -> dict[int, dict[str, float]]:
    """{step: {"<bin or overall>/tar_at_far_<far>": TAR}} of every validation row (step 0 = the starting model)."""
    found: dict[int, dict[str, float]] = {}
    for record in records:
        values = {k[len("val/"):]: v for k, v in record.items() if k.startswith("val/") and isinstance(v, (int, float))}
        if values and isinstance(record.get("step"), int):
            found.setdefault(record["step"], {}).update(values)
    return found


@dataclass
class Comparison:
    """The run's latest validation against its starting model's, and whether it may be published."""

    start: dict[str, float] | None
    latest: dict[str, float] | None
    latest_step: int | None
    labels: list[str] = field(default_factory=list)  # bins, then "overall"

    @property
    def judged(self) -> tuple[float | None, float | None]:
        key = f"overall/tar_at_far_{far_key(JUDGE_FAR)}"
        return ((self.start or {}).get(key), (self.latest or {}).get(key))

    def publish_refusal(self) -> str | None:
        """Why this run is not published by itself (None: it may be)."""
        start, latest = self.judged
        if latest is None:
            return "no validation of the run was recorded, so it cannot be compared with its starting model"
        if latest <= 0.0:
            return f"it accepts no genuine validation pair at FAR {100 * JUDGE_FAR:g}% (TAR 0)"
        if start is None:
            return "no validation of the starting model (step 0) was recorded, so it cannot be compared"
        if latest < start:
            return (f"it is worse than its starting model (overall TAR at FAR {100 * JUDGE_FAR:g}% "
                    f"{latest:.1%} against {start:.1%})")
        return None


def compare_with_start(records: list[dict]) -> Comparison:
    """The step-0 validation (the starting model) and the latest one after it."""
    table = validations(records)
    later = [step for step in table if step > 0]
    latest_step = max(later) if later else None
    keys = {k.split("/")[0] for row in table.values() for k in row}
    labels = sorted(keys - {"overall"}, key=_bin_order) + (["overall"] if "overall" in keys else [])
    return Comparison(table.get(0), table.get(latest_step) if latest_step is not None else None, latest_step, labels)


def _bin_order(label: str) -> float:
    with contextlib.suppress(ValueError):
        return float(label.strip("[(").split(",")[0])
    return float("inf")


def total_steps(run_dir: Path) -> int | None:
    """The run's configured step count (from its train_config.json), once written."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return int(json.loads((run_dir / "train_config.json").read_text())["steps"])
    return None


def last_error_line(log_file: Path) -> str:
    """The last line of a run's log that names an error (else its last non-empty line), cut short."""
    lines = [line.strip() for line in log_file.read_text(errors="replace").splitlines() if line.strip()] \
        if log_file.exists() else []
    errors = [line for line in lines if "error" in line.lower()]
    line = (errors or lines or ["no output"])[-1]
    return line if len(line) <= MAX_REASON_CHARS else line[:MAX_REASON_CHARS - 1] + "\u2026"


# Lines the trainer prints when a validation could not give a TAR (pose3dfr.engine.train._validation_set,
# _validate): why a run has no validation to be judged by.
VALIDATION_NOTES = ("no per-pose validation:", "validation skipped at step", "so no impostor pairs")


def validation_note(log_file: Path) -> str | None:
    """The run log's last line saying why a validation gave no TAR (e.g. a split of one identity), cut short."""
    lines = [line.strip() for line in log_file.read_text(errors="replace").splitlines()] if log_file.exists() else []
    notes = [line for line in lines if any(note in line for note in VALIDATION_NOTES)]
    if not notes:
        return None
    line = notes[-1]
    return line if len(line) <= MAX_REASON_CHARS else line[:MAX_REASON_CHARS - 1] + "\u2026"


def job_state(job: TrainJob) -> str:
    """The job's state in words: running, finished, stopped by you, or failed: <its last error line>."""
    code = job.process.poll()
    if code is None:
        return "running"
    if job.stopped_by_user:
        return "stopped by you"
    if code == 0:
        return "finished"
    return f"failed: {last_error_line(job.log_file)}"


class TrainManager:
    """At most one background training subprocess (never blocks the caller); finished runs are published
    to `checkpoints_dir` as `<name>.safetensors` + `.json` unless they are worse than their start."""

    def __init__(self, checkpoints_dir: Path, runs_dir: Path) -> None:
        self.checkpoints_dir = Path(checkpoints_dir)
        self.runs_dir = Path(runs_dir)
        self._lock = threading.Lock()
        self.job: TrainJob | None = None

    def running(self) -> bool:
        return self.job is not None and self.job.process.poll() is None

    def start(self, name: str, command_of: Any) -> TrainJob:
        """Start `command_of(run_dir)` (see train_command) as run `name` in runs_dir/<name>."""
        with self._lock:
            if self.running():
                raise TrainJobError(f"training run {self.job.name!r} is still running; stop it first")
            run_dir = self.runs_dir / name
            run_dir.mkdir(parents=True)
            log_file = run_dir / "stdout.log"
            with open(log_file, "wb") as sink:
                process = subprocess.Popen(command_of(run_dir), cwd=PROJECT_ROOT, stdout=sink,
                                           stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            self.job = TrainJob(name, process, run_dir, log_file, time.time())
        self.watch(self.job)
        return self.job

    def watch(self, job: TrainJob) -> threading.Thread:
        """Reap the job's process as soon as it ends (no zombie, whether or not a page polls) and publish
        it if it finished and is not worse than its start."""
        def reap() -> None:
            job.process.wait()
            with contextlib.suppress(Exception):
                self.publish()
        thread = threading.Thread(target=reap, name=f"reap-{job.name}", daemon=True)
        thread.start()
        return thread

    def publish(self, force: bool = False) -> Path | None:
        """Copy a finished run's final model into checkpoints_dir/<name>.* (once). Without `force`, a run
        worse than its starting model (or not comparable) is held back and the reason kept in job.held_back."""
        with self._lock:
            job = self.job
            if job is None or job.process.poll() != 0 or job.published or job.stopped_by_user:
                return None
            source = job.run_dir / "model"
            if not Path(f"{source}.safetensors").is_file():
                return None
            refusal = compare_with_start(read_metrics(job.run_dir)).publish_refusal()
            if refusal and not force:
                job.held_back = refusal
                return None
            for suffix in (".safetensors", ".json"):  # weights first: a .json marks a complete checkpoint
                with open(f"{source}{suffix}", "rb") as src, \
                        open(self.checkpoints_dir / f"{job.name}{suffix}", "xb") as dst:
                    shutil.copyfileobj(src, dst)  # "x": never replaces a file that appeared meanwhile
            job.published, job.held_back = True, None
            return self.checkpoints_dir / f"{job.name}.safetensors"

    def stop(self) -> bool:
        """Stop the running job (terminate, then kill after STOP_GRACE_SECONDS); False when none runs."""
        with self._lock:
            if not self.running():
                return False
            self.job.stopped_by_user = True
            self.job.process.terminate()
            try:
                self.job.process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self.job.process.kill()
            return True
