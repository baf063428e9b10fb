#!/usr/bin/env python3
"""Reads a styleforge run directory with TensorBoard's own reader and compares it with the run's
text records (tests/e2e_tensorboard.sh runs it).

Checks, with tensorboard.backend.event_processing.event_accumulator.EventAccumulator:
  * every statistic of stats.jsonl is a scalar under the same name whose values are the lines'
    means (rounded to float32) in line order, at step cur_nimg // 1000 and a wall time that is the
    line's Timing/total_sec (seconds since that segment started, as the reference writes);
  * one trainer event file per run segment (--segments), each starting with file_version
    "brain.Event:2"; together they hold the curves in stats.jsonl order, so a resumed run continues
    them (Progress/kimg keeps growing across the files);
  * every fakes grid of a snapshot is an image whose PNG bytes equal the file's, whose decoded
    size equals the recorded one and whose step is the snapshot's;
  * every metric-*.jsonl result is a `Metrics/<name>` scalar at its snapshot's step, in the
    metrics rank's files under <run>/metrics/ (TensorBoard run "<run>/metrics").
Prints one line per check group; exits 1 with the first mismatch.
"""
import argparse
import glob
import json
import math
import os
import re
import struct
import sys
import zlib

import numpy as np
from tensorboard.backend.event_processing import event_accumulator, event_file_loader
from tensorboard.compat.proto import event_pb2


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def f32(x):
    return float(np.float32(x))


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def decode_png_size(data, where):
    """Width and height of a PNG after inflating its pixel data (checks the data is complete)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail(f"{where}: not a PNG")
    pos, idat = 8, b""
    w = h = depth = ctype = None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
    raw = zlib.decompress(idat)
    if len(raw) != h * (1 + (w * channels * depth + 7) // 8):
        fail(f"{where}: {len(raw)} bytes of pixel data for {w}x{h}")
    return w, h


def snapshot_nimg(name):
    """Images seen at a snapshot from its file name: fakesKKKKKK.png or fakesKKKKKK-NNNNNNNNN.png."""
    m = re.fullmatch(r"fakes(\d{6})(?:-(\d{9}))?\.png", name) or re.search(r"(\d{6})(?:-(\d{9}))?\.h5$", name)
    if not m:
        return None
    return int(m.group(2)) if m.group(2) else int(m.group(1)) * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--segments", type=int, required=True, help="expected number of trainer event files")
    ap.add_argument("--min-last-step", type=int, default=0, help="the last tick's step must reach this")
    args = ap.parse_args()
    run = args.run_dir

    lines = [json.loads(line) for line in open(os.path.join(run, "stats.jsonl"))]
    if not lines:
        fail("stats.jsonl is empty")
    names = sorted({k for line in lines for k, v in line.items() if isinstance(v, dict) and "mean" in v})

    # ---- files: one per trainer segment, each opening with the file version ----
    files = sorted(glob.glob(os.path.join(run, "events.out.tfevents.*")))
    metric_files = sorted(glob.glob(os.path.join(run, "metrics", "events.out.tfevents.*")))
    kimg_per_file = []
    for path in files + metric_files:
        # The raw records, parsed as TensorBoard's Event message (no migration to tensors).
        events = [event_pb2.Event.FromString(r) for r in event_file_loader.RawEventFileLoader(path).Load()]
        if not events or events[0].file_version != "brain.Event:2":
            fail(f"{path}: the first record is not file_version brain.Event:2")
        if path in files:
            kimg_per_file.append([v.simple_value for e in events for v in e.summary.value if v.tag == "Progress/kimg"])
    if len(files) != args.segments or not all(kimg_per_file):
        fail(f"{len(files)} event files with Progress/kimg {[len(k) for k in kimg_per_file]} ticks, "
             f"expected {args.segments} trainer segments")
    for a, b in zip(kimg_per_file, kimg_per_file[1:]):
        if not b[0] > a[-1]:
            fail(f"the next segment starts at kimg {b[0]}, not after {a[-1]}: the curves do not continue")
    print(f"ok: {len(files)} trainer event files (+{len(metric_files)} of the metrics rank), segments with "
          f"{[len(k) for k in kimg_per_file]} ticks, kimg continues across them")

    # ---- scalars: every stats.jsonl mean, same name, value, step and wall time ----
    acc = event_accumulator.EventAccumulator(run, size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    for name in names:
        if name not in tags["scalars"]:
            fail(f"{name}: in stats.jsonl but not in TensorBoard")
        got = acc.Scalars(name)
        want = [line for line in lines if name in line]
        if len(got) != len(want):
            fail(f"{name}: {len(got)} points in TensorBoard, {len(want)} lines in stats.jsonl")
        for i, (e, line) in enumerate(zip(got, want)):
            if not same(e.value, f32(line[name]["mean"])):
                fail(f"{name} point {i}: {e.value} != {line[name]['mean']}")
            step = round(line["Progress/kimg"]["mean"] * 1000) // 1000
            if e.step != step:
                fail(f"{name} point {i}: step {e.step}, expected {step}")
            # The wall time is taken just after Timing/total_sec, in the same clock.
            if not 0 <= e.wall_time - line["Timing/total_sec"]["mean"] < 5:
                fail(f"{name} point {i}: wall time {e.wall_time} vs Timing/total_sec {line['Timing/total_sec']['mean']}")
    steps = [e.step for e in acc.Scalars("Progress/kimg")]
    if steps != sorted(steps) or steps[-1] < args.min_last_step:
        fail(f"Progress/kimg steps {steps}: not increasing up to at least {args.min_last_step}")
    print(f"ok: {len(names)} statistics x {len(lines)} ticks equal stats.jsonl (float32), steps {steps[0]}..{steps[-1]}")

    # ---- images: the snapshot fakes grids ----
    fakes = {os.path.basename(p): open(p, "rb").read()
             for p in glob.glob(os.path.join(run, "fakes*.png")) if snapshot_nimg(os.path.basename(p)) is not None}
    images = acc.Images("Images/fakes") if "Images/fakes" in tags["images"] else []
    if len(images) != len(fakes) or not fakes:
        fail(f"{len(images)} images in TensorBoard, {len(fakes)} snapshot fakes grids in the run directory")
    unmatched = dict(fakes)
    for e in images:
        name = next((n for n, b in unmatched.items() if b == e.encoded_image_string), None)
        if name is None:
            fail(f"the image at step {e.step} equals no (remaining) fakes grid")
        del unmatched[name]
        w, h = decode_png_size(e.encoded_image_string, name)
        if (w, h) != (e.width, e.height):
            fail(f"{name}: decoded {w}x{h}, recorded {e.width}x{e.height}")
        if e.step != snapshot_nimg(name) // 1000:
            fail(f"{name}: step {e.step}, expected {snapshot_nimg(name) // 1000}")
    print(f"ok: {len(images)} fakes grids as images ({images[0].width}x{images[0].height}), bytes and steps match")

    # ---- metrics ----
    n_metrics = 0
    macc, mtags = None, []
    if os.path.isdir(os.path.join(run, "metrics")):
        macc = event_accumulator.EventAccumulator(os.path.join(run, "metrics"), size_guidance={"scalars": 0})
        macc.Reload()
        mtags = macc.Tags()["scalars"]
    for path in sorted(glob.glob(os.path.join(run, "metric-*.jsonl"))):
        results = [json.loads(line) for line in open(path)]
        for key in sorted({k for r in results for k in r["results"]}):
            tag = "Metrics/" + key
            if tag not in mtags:
                fail(f"{tag}: in {os.path.basename(path)} but not in TensorBoard's run {run}/metrics")
            got = macc.Scalars(tag)
            want = [r for r in results if key in r["results"]]
            if len(got) != len(want):
                fail(f"{tag}: {len(got)} points, {len(want)} results")
            for e, r in zip(got, want):
                if not same(e.value, f32(r["results"][key])):
                    fail(f"{tag}: {e.value} != {r['results'][key]}")
                if e.step != snapshot_nimg(r["snapshot_pkl"]) // 1000:
                    fail(f"{tag}: step {e.step} for {r['snapshot_pkl']}")
            n_metrics += len(got)
    print(f"ok: {n_metrics} metric results as Metrics/<name> scalars")


if __name__ == "__main__":
    main()
