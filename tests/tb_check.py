#!/usr/bin/env python3
"""Reads a styleforge run directory with TensorBoard's own reader and compares it with the run's
text records (tests/e2e_tensorboard.sh runs it).

Checks, with tensorboard.backend.event_processing.event_accumulator.EventAccumulator:
  * every statistic of stats.jsonl is a scalar under the same name whose values are the lines'
    means (rounded to float32) in line order, at step cur_nimg // 1000 and a wall time that is the
    line's Timing/total_sec (seconds since that segment started, as the reference writes);
  * one trainer event file per run segment (--segments), each starting with file_version
    "brain.Event:2" and a SessionLog START (step 0 for the first; a resumed segment's at its
    checkpoint's step + 1, log.txt naming the checkpoint); together they hold the curves in
    stats.jsonl order, TensorBoard showing the earlier points below each resume's START step
    followed by the new segment's;
  * every fakes grid of a snapshot is an image whose PNG bytes equal the file's, whose decoded
    size equals the recorded one and whose step is the snapshot's; the images shown are those no
    later START dropped;
  * the accumulator TensorBoard's server uses (plugin_event_accumulator, values migrated to
    tensors) shows the same ticks and images;
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
from tensorboard.backend.event_processing import event_accumulator, event_file_loader, plugin_event_accumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.util import tensor_util


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
    per_file = []  # the raw records, parsed as TensorBoard's Event message (no migration to tensors)
    for path in files + metric_files:
        events = [event_pb2.Event.FromString(r) for r in event_file_loader.RawEventFileLoader(path).Load()]
        if not events or events[0].file_version != "brain.Event:2":
            fail(f"{path}: the first record is not file_version brain.Event:2")
        if path in files:
            per_file.append(events)
    kimg_per_file = [[v.simple_value for e in ev for v in e.summary.value if v.tag == "Progress/kimg"] for ev in per_file]
    if len(files) != args.segments or not all(kimg_per_file):
        fail(f"{len(files)} event files with {[len(k) for k in kimg_per_file]} ticks of Progress/kimg, "
             f"expected {args.segments} trainer segments")
    if sum(len(k) for k in kimg_per_file) != len(lines):
        fail(f"{[len(k) for k in kimg_per_file]} ticks in the event files, {len(lines)} lines in stats.jsonl")
    segments, pos = [], 0
    for k in kimg_per_file:
        segments.append(lines[pos:pos + len(k)])
        pos += len(k)
        if [f32(line["Progress/kimg"]["mean"]) for line in segments[-1]] != k:
            fail(f"segment {len(segments)}: Progress/kimg {k} differs from its stats.jsonl lines")

    # Each resumed segment starts with SessionLog START at its checkpoint's step + 1 (log.txt names
    # the checkpoints): TensorBoard drops earlier points from that step on, the segment continues.
    resumes = re.findall(r'^Resuming from "(.*)"$', open(os.path.join(run, "log.txt")).read(), re.M)
    if len(resumes) != args.segments - 1:
        fail(f"log.txt names {len(resumes)} resumes, expected {args.segments - 1}")
    purge = [0] + [snapshot_nimg(os.path.basename(p)) // 1000 + 1 for p in resumes]
    for i in range(len(per_file)):  # the first START marks the beginning (TensorBoard's server needs it)
        starts = [e for e in per_file[i] if e.HasField("session_log")]
        if len(starts) != 1 or starts[0].session_log.status != event_pb2.SessionLog.START or starts[0].step != purge[i]:
            fail(f"{files[i]}: expected one SessionLog START at step {purge[i]}, found {starts}")
        if i and not round(kimg_per_file[i][0] * 1000) > snapshot_nimg(os.path.basename(resumes[i - 1])):
            fail(f"segment {i + 1} starts at kimg {kimg_per_file[i][0]}, not after its checkpoint {resumes[i - 1]}")

    def step_of(line):
        return round(line["Progress/kimg"]["mean"] * 1000) // 1000

    visible = []  # the ticks TensorBoard shows: earlier segments cut at each resume's START step
    for i, seg in enumerate(segments):
        if i:
            visible = [line for line in visible if step_of(line) < purge[i]]
        visible += seg
    print(f"ok: {len(files)} trainer event files (+{len(metric_files)} of the metrics rank), segments with "
          f"{[len(k) for k in kimg_per_file]} ticks, START steps {purge}, {len(visible)} ticks shown")

    # ---- scalars: every stats.jsonl mean, same name, value, step and wall time ----
    acc = event_accumulator.EventAccumulator(run, size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = acc.Tags()
    for name in names:
        if name not in tags["scalars"]:
            fail(f"{name}: in stats.jsonl but not in TensorBoard")
        got = acc.Scalars(name)
        want = [line for line in visible if name in line]
        if len(got) != len(want):
            fail(f"{name}: {len(got)} points in TensorBoard, {len(want)} lines of stats.jsonl expected")
        for i, (e, line) in enumerate(zip(got, want)):
            if not same(e.value, f32(line[name]["mean"])):
                fail(f"{name} point {i}: {e.value} != {line[name]['mean']}")
            if e.step != step_of(line):
                fail(f"{name} point {i}: step {e.step}, expected {step_of(line)}")
            # The wall time is taken just after Timing/total_sec, in the same clock.
            if not 0 <= e.wall_time - line["Timing/total_sec"]["mean"] < 5:
                fail(f"{name} point {i}: wall time {e.wall_time} vs Timing/total_sec {line['Timing/total_sec']['mean']}")
    steps = [e.step for e in acc.Scalars("Progress/kimg")]
    if steps != sorted(steps) or steps[-1] < args.min_last_step:
        fail(f"Progress/kimg steps {steps}: not increasing up to at least {args.min_last_step}")
    print(f"ok: {len(names)} statistics x {len(visible)} ticks equal stats.jsonl (float32), steps {steps}")

    # ---- images: the snapshot fakes grids ----
    fakes = {os.path.basename(p): open(p, "rb").read()
             for p in glob.glob(os.path.join(run, "fakes*.png")) if snapshot_nimg(os.path.basename(p)) is not None}
    written = [[(e.step, v.image) for e in ev for v in e.summary.value if v.tag == "Images/fakes"] for ev in per_file]
    if sum(len(w) for w in written) != len(fakes) or not fakes:
        fail(f"{sum(len(w) for w in written)} images in the event files, {len(fakes)} snapshot fakes grids on disk")
    unmatched = dict(fakes)
    for step, img in (x for w in written for x in w):
        name = next((n for n, b in unmatched.items() if b == img.encoded_image_string), None)
        if name is None:
            fail(f"the image at step {step} equals no (remaining) fakes grid")
        del unmatched[name]
        w, h = decode_png_size(img.encoded_image_string, name)
        if (w, h) != (img.width, img.height):
            fail(f"{name}: decoded {w}x{h}, recorded {img.width}x{img.height}")
        if step != snapshot_nimg(name) // 1000:
            fail(f"{name}: step {step}, expected {snapshot_nimg(name) // 1000}")
    shown = []
    for i, w in enumerate(written):
        if i:
            shown = [x for x in shown if x[0] < purge[i]]
        shown += w
    images = acc.Images("Images/fakes") if "Images/fakes" in tags["images"] else []
    if [(e.step, e.encoded_image_string) for e in images] != [(st, img.encoded_image_string) for st, img in shown]:
        fail(f"TensorBoard shows images at steps {[e.step for e in images]}, expected {[st for st, _ in shown]}")
    print(f"ok: {len(fakes)} fakes grids as images ({images[0].width}x{images[0].height}), bytes, sizes and steps "
          f"match; {len(images)} shown")

    # ---- the same through the accumulator TensorBoard's server uses (values migrated to tensors) ----
    pacc = plugin_event_accumulator.EventAccumulator(run, size_guidance={"tensors": 0})
    pacc.Reload()
    kimg = [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in pacc.Tensors("Progress/kimg")]
    if kimg != [(step_of(line), f32(line["Progress/kimg"]["mean"])) for line in visible]:
        fail(f"the server's Progress/kimg {kimg} differs from the ticks expected")
    img_steps = [e.step for e in pacc.Tensors("Images/fakes")]
    if img_steps != [st for st, _ in shown]:
        fail(f"the server's Images/fakes steps {img_steps}, expected {[st for st, _ in shown]}")
    print(f"ok: TensorBoard's server accumulator shows the same {len(kimg)} ticks and {len(img_steps)} images")

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
