"""What decoding an upload costs the serving process: latency of the bounded decoder (a worker process) against an
in-process decode, the CPU of hostile files with and without the structure checks, and the resident memory a
large legal image adds to the process that handles it (also for a 2560 px photo without a face, through
detection's framed retry).

    python -m benchmarks.bench_decode [--repeats 5] [--unbounded]

Every case runs in a fresh child process (`python -c` run in the measured checkout's root, so it imports that
checkout) so each memory figure starts from the same state. Memory: VmRSS before, the peak (VmHWM) and VmRSS
after the call, and VmRSS after glibc's malloc_trim(0). Run it with PYTHONPATH pointing at another checkout (e.g.
`git archive <commit> | tar -x -C /tmp/old`) to measure that code: what the older code lacks (isolated decoding,
malloc_trim) is reported as "n/a". Images are synthetic (made here from the shipped obama.jpg, or blank), not user photos.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

# the checkout measured (the child runs in it: `-c` puts its folder first on sys.path)
ROOT = Path(os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] or Path(__file__).resolve().parents[1])
PHOTO = Path(__file__).resolve().parents[1] / "assets" / "photos" / "obama.jpg"

CHILD = r"""
import json, re, statistics, sys, time
from pose3dfr.face import image_io

def status():
    text = open("/proc/self/status").read()
    return {{k: int(re.search(k + r":\s+(\d+)", text).group(1)) // 1024 for k in ("VmRSS", "VmHWM")}}

def trim():
    try:
        from pose3dfr.resources import trim_memory
    except ImportError:
        return None
    trim_memory()
    return status()["VmRSS"]

case, path, repeats, isolated = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
if isolated:
    if not hasattr(image_io, "set_isolated_decoding"):
        print(json.dumps({{"n/a": "no isolated decoding in this checkout"}})); sys.exit()
    image_io.set_isolated_decoding(True)
out = {{}}
if case == "latency":
    data = open(path, "rb").read()
    t = time.perf_counter(); image_io.load_image(data); out["first_s"] = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter(); image_io.load_image(data); times.append(time.perf_counter() - t)
    out["median_s"] = statistics.median(times)
elif case == "hostile":
    data = open(path, "rb").read()
    bypass = sys.argv[5] == "1"  # decode without the structure checks (what the decoder alone would cost)
    t, c = time.perf_counter(), time.process_time()
    try:
        if bypass and isolated:
            from pose3dfr.face.bounded_decode import decode_isolated
            decode_isolated(data, "hostile", 40_000_000)
        elif bypass:
            from pose3dfr.face.image_decode import decode_bytes
            decode_bytes(data, name="hostile", max_pixels=40_000_000)
        else:
            image_io.load_image(data)
        out["result"] = "decoded"
    except Exception as exc:
        out["result"] = type(exc).__name__ + ": " + str(exc)[:90]
    out["wall_s"], out["cpu_s"] = time.perf_counter() - t, time.process_time() - c
elif case in ("memory", "analyze"):
    import numpy as np
    analyzer = None
    if case == "analyze":
        from pose3dfr.inference.detect import FaceAnalyzer
        analyzer = FaceAnalyzer()
        try:
            analyzer.analyze(np.full((480, 640, 3), 90, np.uint8))
        except Exception:
            pass
        rgb = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(path).convert("RGB"))
    before = status()
    if case == "analyze":
        try:
            analyzer.analyze(rgb, "no-face")
        except Exception as exc:
            out["result"] = type(exc).__name__
    else:
        image_io.load_image(path)
    after = status()
    out.update(rss_before=before["VmRSS"], peak_added=after["VmHWM"] - before["VmRSS"],
               rss_added=after["VmRSS"] - before["VmRSS"])
    trimmed = trim()
    out["rss_added_after_trim"] = None if trimmed is None else trimmed - before["VmRSS"]
print(json.dumps(out))
"""


def run(case: str, path: Path, repeats: int = 1, isolated: bool = False, bypass: bool = False) -> dict:
    code = CHILD.format()  # its doubled braces undone
    out = subprocess.run([sys.executable, "-c", code, case, str(path), str(repeats), "1" if isolated else "0",
                          "1" if bypass else "0"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    if out.returncode:
        return {"error": out.stderr[-300:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_files(folder: Path) -> dict[str, Path]:
    """The test images: camera-like JPEGs, large legal images of the formats decoded in full, hostile files."""
    base = Image.open(PHOTO).convert("RGB")
    rng = np.random.default_rng(0)
    files: dict[str, Path] = {}

    def photo(size: tuple[int, int]) -> np.ndarray:  # the shipped photo scaled up with sensor-like noise
        pixels = np.asarray(base.resize(size, Image.Resampling.BILINEAR), np.int16)
        return np.clip(pixels + rng.normal(0, 8, pixels.shape), 0, 255).astype(np.uint8)

    def save(name: str, image: Image.Image, fmt: str, **kw) -> None:
        files[name] = folder / name
        image.save(files[name], fmt, **kw)

    for name in ("obama.jpg", "biden.jpg", "astronaut.png"):
        files[name] = PHOTO.parent / name
    save("12mp-baseline.jpg", Image.fromarray(photo((4000, 3000))), "JPEG", quality=90)
    save("39.9mp-progressive.jpg", Image.fromarray(photo((7300, 5470))), "JPEG", quality=90, progressive=True)
    gray16 = (photo((4600, 3450))[..., 1].astype(np.uint16) * 257)  # 15.9 MP, 16-bit gray
    save("15.9mp-16bit.png", Image.fromarray(gray16), "PNG")
    save("15.9mp-16bit.tif", Image.fromarray(gray16), "TIFF")
    save("2560px-no-face.jpg", Image.fromarray(np.full((1920, 2560, 3), (90, 110, 70), np.uint8)), "JPEG")
    buf = io.BytesIO()
    Image.new("L", (5000, 5000)).save(buf, "JPEG", progressive=True)
    for scans in (10_000, 100_000):
        files[f"scan-bomb-{scans}.jpg"] = folder / f"scan-bomb-{scans}.jpg"
        files[f"scan-bomb-{scans}.jpg"].write_bytes(buf.getvalue()[:-2] + b"\xff\xda\x00\x08\x01\x01\x00\x00\x00\x10"
                                                    * scans + b"\xff\xd9")
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--unbounded", action="store_true",
                        help="also decode the 10,000-scan bomb in-process without the checks (about 25-80 CPU s)")
    args = parser.parse_args()
    print(f"code under test: {ROOT}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        files = make_files(Path(tmp))
        print("\nLatency of load_image (median of", args.repeats, "after a first call), ms:")
        print("| image | in-process | isolated (warm worker) | isolated first call |\n|---|---:|---:|---:|")
        for name in ("obama.jpg", "biden.jpg", "astronaut.png", "12mp-baseline.jpg", "39.9mp-progressive.jpg"):
            here, there = run("latency", files[name], args.repeats), run("latency", files[name], args.repeats, True)
            cell = (lambda r, k: "n/a" if k not in r else f"{1000 * r[k]:.0f}")
            print(f"| {name} | {cell(here, 'median_s')} | {cell(there, 'median_s')} | {cell(there, 'first_s')} |")
        print("\nHostile files:")
        print("| file | how | result | wall s | CPU s of the caller |\n|---|---|---|---:|---:|")
        cases = [("scan-bomb-100000.jpg", "load_image (checks)", False, False),
                 ("scan-bomb-100000.jpg", "isolated, checks bypassed", True, True),
                 ("scan-bomb-10000.jpg", "isolated, checks bypassed", True, True)]
        if args.unbounded:
            cases.append(("scan-bomb-10000.jpg", "in-process, checks bypassed", False, True))
        for name, how, isolated, bypass in cases:
            r = run("hostile", files[name], 1, isolated, bypass)
            if "result" in r:
                print(f"| {name} | {how} | {r['result']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} |")
            else:
                print(f"| {name} | {how} | {r} | | |")
        print("\nMemory of the calling process, MiB (RSS before; peak and RSS added by the call; RSS added after"
              " malloc_trim):")
        print("| image | decoding | RSS before | peak added | RSS added | after trim |\n|---|---|---:|---:|---:|---:|")
        for name in ("15.9mp-16bit.png", "15.9mp-16bit.tif", "39.9mp-progressive.jpg"):
            for isolated in (False, True):
                r = run("memory", files[name], 1, isolated)
                if "rss_before" in r:
                    print(f"| {name} | {'isolated' if isolated else 'in-process'} | {r['rss_before']} | "
                          f"{r['peak_added']} | {r['rss_added']} | {r['rss_added_after_trim']} |")
                else:
                    print(f"| {name} | {'isolated' if isolated else 'in-process'} | {r} | | | |")
        r = run("analyze", files["2560px-no-face.jpg"])
        print(f"| 2560px-no-face.jpg through FaceAnalyzer.analyze ({r.get('result')}) | - | {r.get('rss_before')} | "
              f"{r.get('peak_added')} | {r.get('rss_added')} | {r.get('rss_added_after_trim')} |")


if __name__ == "__main__":
    main()
