"""Load benchmark of the web app: 40 concurrent /verify requests (p50/p95 latency, throughput), then 200
sequential ones with the server's resident memory sampled every 20; prints a table and writes the numbers
section of docs/reliability.md. `--sessions N` instead opens N sessions (one /verify each, every one with a
new session hash, so each leaves its own session state) and reports the server's memory and the files left
in its upload folder; that writes the sessions section.

    nice -n 10 python -m benchmarks.bench_load [--concurrent 40] [--sequential 200] [--no-write]
    nice -n 10 python -m benchmarks.bench_load --sessions 400

Starts `python app.py` on a free loopback port (like tests/test_app.py) with its own cache folder.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PHOTOS = PROJECT_ROOT / "assets" / "photos"
DOC = PROJECT_ROOT / "docs" / "reliability.md"
MARK_BEGIN, MARK_END = "<!-- bench_load:begin -->", "<!-- bench_load:end -->"
SESSIONS_BEGIN, SESSIONS_END = "<!-- bench_load:sessions:begin -->", "<!-- bench_load:sessions:end -->"
# RSS samples taken during the sessions run.
SESSION_SAMPLES = 8
# Resident memory the server may gain over the second half of the sequential run (steady state, after the
# allocator and caches have warmed up) before we call it growth; the whole run's change is reported too.
RSS_GROWTH_BOUND_MIB = 50.0
PAIRS = [("obama.jpg", "obama2.jpg"), ("obama.jpg", "biden.jpg")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident memory of a process (psutil when installed, else /proc/<pid>/status VmRSS)."""
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no RSS for pid {pid}")


def start_app(cache: Path, timeout: float = 600) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "POSE3DFR_CACHE_DIR": str(cache),
           "GRADIO_TEMP_DIR": str(cache / "gradio")}
    env.pop("SPACE_ID", None)
    log = open(cache / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            raise RuntimeError((cache / "server.log").read_text()[-3000:])
    proc.kill()
    raise RuntimeError("the app did not start")


def verify(client, pair: tuple[str, str]) -> tuple[float, float]:
    """(seconds, score) of one /verify call."""
    from gradio_client import handle_file

    start = time.perf_counter()
    out = client.predict(handle_file(str(PHOTOS / pair[0])), handle_file(str(PHOTOS / pair[1])), None, 0.01,
                         "default", api_name="/verify")
    return time.perf_counter() - start, out["score"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def run(concurrent: int, sequential: int) -> dict:
    from gradio_client import Client

    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        proc, url = start_app(Path(tmp))
        try:
            client = Client(url, verbose=False, download_files=False, httpx_kwargs={"timeout": 600})
            verify(client, PAIRS[0])  # warm-up: loads the model and the detectors
            rss_warm = rss_mib(proc.pid)
            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=concurrent) as pool:
                timed = list(pool.map(lambda i: verify(client, PAIRS[i % 2]), range(concurrent)))
            wall = time.perf_counter() - start
            latencies = [t for t, _ in timed]
            same = [s for i, (_, s) in enumerate(timed) if i % 2 == 0]
            different = [s for i, (_, s) in enumerate(timed) if i % 2 == 1]
            rss = [(0, rss_mib(proc.pid))]
            seq_latencies = []
            for i in range(1, sequential + 1):
                seq_latencies.append(verify(client, PAIRS[i % 2])[0])
                if i % 20 == 0:
                    rss.append((i, rss_mib(proc.pid)))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {"load": load, "cpus": os.cpu_count(), "machine": platform.platform(), "concurrent": concurrent,
            "p50": percentile(latencies, 50), "p95": percentile(latencies, 95), "max": max(latencies),
            "wall": wall, "throughput": concurrent / wall, "correct": min(same) > max(different),
            "seq_p50": percentile(seq_latencies, 50), "seq_p95": percentile(seq_latencies, 95),
            "rss_warm": rss_warm, "rss": rss, "growth_all": rss[-1][1] - rss[0][1],
            "growth": rss[-1][1] - rss[len(rss) // 2][1], "half": rss[len(rss) // 2][0]}


def run_sessions(sessions: int) -> dict:
    """Server RSS over `sessions` sessions of one /verify each, and the upload folder's files at the end."""
    from gradio_client import Client

    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-sessions-") as tmp:
        proc, url = start_app(Path(tmp))
        try:
            client = Client(url, verbose=False, download_files=False, httpx_kwargs={"timeout": 600})
            examples = {p for p in (Path(tmp) / "gradio").rglob("*") if p.is_file()}
            verify(client, PAIRS[0])  # warm-up
            rss = [(0, rss_mib(proc.pid))]
            every = max(1, sessions // SESSION_SAMPLES)
            latencies = []
            for i in range(1, sessions + 1):
                client.reset_session()  # a new session hash: a new browser tab as far as the server knows
                latencies.append(verify(client, PAIRS[i % 2])[0])
                if i % every == 0 or i == sessions:
                    rss.append((i, rss_mib(proc.pid)))
            time.sleep(60)  # the production cache sweep (every 10 s, files older than 45 s)
            left = [p for p in (Path(tmp) / "gradio").rglob("*") if p.is_file() and p not in examples]
            rss_after_wait = rss_mib(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    half = rss[len(rss) // 2]
    return {"load": load, "cpus": os.cpu_count(), "machine": platform.platform(), "sessions": sessions,
            "rss": rss, "rss_after_wait": rss_after_wait, "left": len(left), "p50": percentile(latencies, 50),
            "per_session_kib": (rss[-1][1] - half[1]) * 1024 / max(1, rss[-1][0] - half[0]),
            "per_session_all_kib": (rss[-1][1] - rss[0][1]) * 1024 / sessions, "half": half[0]}


def sessions_markdown(r: dict) -> str:
    rows = "\n".join(f"| {n} | {m:.0f} |" for n, m in r["rss"])
    return f"""{SESSIONS_BEGIN}
Command: `nice -n 10 python -m benchmarks.bench_load --sessions {r['sessions']}` on {r['machine']}, {r['cpus']} CPUs,
load average at start {r['load'][0]:.2f} / {r['load'][1]:.2f} / {r['load'][2]:.2f}. Each session is one /verify
(obama/obama2 or obama/biden) under a new session hash; the session's state (the slim view) stays until its
time to live (`STATE_TTL_SECONDS`, 600 s) runs out. Sequential p50 latency {r['p50']:.2f} s.

| sessions done | server RSS MiB |
|---:|---:|
{rows}

Growth per session: {r['per_session_all_kib']:.0f} KiB over the whole run, {r['per_session_kib']:.0f} KiB from session
{r['half']} to the end. RSS 60 s after the last response: {r['rss_after_wait']:.0f} MiB. Files left in the upload
folder 60 s after the last response (besides the examples' copies): {r['left']}.
{SESSIONS_END}"""


def markdown(r: dict) -> str:
    rows = "\n".join(f"| {n} | {m:.0f} |" for n, m in r["rss"])
    bound_ok = "within" if r["growth"] <= RSS_GROWTH_BOUND_MIB else "OVER"
    return f"""{MARK_BEGIN}
Command: `nice -n 10 python -m benchmarks.bench_load` on {r['machine']}, {r['cpus']} CPUs, load average at
start {r['load'][0]:.2f} / {r['load'][1]:.2f} / {r['load'][2]:.2f} (1/5/15 min; other jobs shared the CPU). The app
serves at most 2 model requests at once (`CONCURRENCY_LIMIT`); the rest wait in Gradio's queue, so
latency under a burst is mostly queueing.

| {r['concurrent']} concurrent /verify (obama/obama2 and obama/biden alternating) | value |
|---|---:|
| p50 latency (s) | {r['p50']:.2f} |
| p95 latency (s) | {r['p95']:.2f} |
| max latency (s) | {r['max']:.2f} |
| wall time for all (s) | {r['wall']:.1f} |
| throughput (requests/s) | {r['throughput']:.2f} |
| every same-person score above every different-person score | {'yes' if r['correct'] else 'NO'} |
| sequential p50 / p95 latency (s) | {r['seq_p50']:.2f} / {r['seq_p95']:.2f} |

Server resident memory (MiB; after the warm-up request: {r['rss_warm']:.0f}), by sequential requests done:

| requests | RSS MiB |
|---:|---:|
{rows}

Change over the whole sequential run: {r['growth_all']:+.0f} MiB. Steady state, request {r['half']} to the end:
{r['growth']:+.0f} MiB ({bound_ok} the stated bound of {RSS_GROWTH_BOUND_MIB:.0f} MiB).
{MARK_END}"""


def write_doc(text: str, begin: str = MARK_BEGIN, end_mark: str = MARK_END) -> None:
    doc = DOC.read_text()
    start, end = doc.find(begin), doc.find(end_mark)
    if start < 0 or end < 0:
        raise SystemExit(f"{DOC}: markers {begin} ... {end_mark} not found")
    DOC.write_text(doc[:start] + text + doc[end + len(end_mark):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrent", type=int, default=40)
    parser.add_argument("--sequential", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=0, help="run the sessions benchmark instead (e.g. 400)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/reliability.md alone")
    args = parser.parse_args()
    if args.sessions:
        text = sessions_markdown(run_sessions(args.sessions))
        print(text)
        if not args.no_write:
            write_doc(text, SESSIONS_BEGIN, SESSIONS_END)
        return
    text = markdown(run(args.concurrent, args.sequential))
    print(text)
    if not args.no_write:
        write_doc(text)


if __name__ == "__main__":
    main()
