#!/usr/bin/env python3
"""Clicks through a Visual Turing Test page (styleforge vtt) in headless Chromium, then checks
`styleforge vtt-score` against numbers computed here from the key and the clicks.

1. The page file: no http(s) URL; a data block of {id, src} only, whose ids are exactly the key's;
   PNGs with no metadata chunks (only IHDR, IDAT, IEND) of the pack's size and colour type; no
   source name of the key anywhere; the page outside its data block is byte-identical to the page
   of another kit (--other), so nothing outside the data block depends on the key.
2. Two readers, each in a fresh browser profile with the network off (offline emulation, DNS
   mapped to nothing, and every request the browser makes must be file:, data: or blob:):
   reader A answers by one rule (alternating), reloads half-way (the answers must survive in
   localStorage and the page offers to continue), goes back once and changes an answer; reader B
   (a name with a comma and quotes) answers by another rule. Each exports the CSV with the page's
   own download link (a Blob); the downloaded file must hold exactly the clicks.
3. vtt-score --key KEY A.csv B.csv (text and --json): per reader TP/FN/TN/FP, accuracy,
   sensitivity, specificity, mean confidence, binomial p; Fleiss' and Cohen's kappa; all equal to
   what this script computes itself.

Usage: vtt_click.py --page kit/vtt.html --key kit/vtt-key.csv --other kit2/vtt.html --bin styleforge
       --work DIR --resolution 16 --channels 1 [--check-only: step 1 only]
Exit 0 and "PASS" when every check holds; "FAIL: ..." and exit 1 otherwise.
"""
import argparse
import base64
import csv
import io
import json
import math
import os
import re
import struct
import subprocess
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

DATA_OPEN = '<script id="vtt-data" type="application/json">'


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def split_page(html):
    a = html.find(DATA_OPEN)
    if a < 0:
        fail("no data block in the page")
    a += len(DATA_OPEN)
    b = html.find("</script>", a)
    return html[:a], html[a:b], html[b:]


def png_chunks(data):
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        fail("an embedded image is not a PNG")
    pos, chunks = 8, []
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunks.append((kind.decode("latin1"), data[pos + 8:pos + 8 + n]))
        pos += 12 + n
    return chunks


def check_page(args, key_rows):
    html = open(args.page, encoding="utf-8").read()
    if re.search(r"https?:", html, re.I):
        fail("the page holds an http(s) URL: " + re.search(r".{0,40}https?:.{0,40}", html, re.I).group(0))
    head, block, tail = split_page(html)
    data = json.loads(block)
    ids = [im["id"] for im in data["images"]]
    if sorted(ids) != sorted(r["id"] for r in key_rows):
        fail("the page's ids differ from the key's")
    for im in data["images"]:
        if sorted(im) != ["id", "src"]:
            fail("an image record holds more than id and src: %s" % sorted(im))
        if not re.fullmatch(r"[0-9a-f]{8}", im["id"]):
            fail("image id %r is not 8 hex digits" % im["id"])
        prefix = "data:image/png;base64,"
        if not im["src"].startswith(prefix):
            fail("image %s is not a PNG data URI" % im["id"])
        chunks = png_chunks(base64.b64decode(im["src"][len(prefix):]))
        kinds = {k for k, _ in chunks}
        if not kinds <= {"IHDR", "IDAT", "IEND"}:
            fail("image %s carries PNG chunks %s (metadata could reveal the source)" % (im["id"], sorted(kinds)))
        w, h, depth, color = struct.unpack(">IIBB", chunks[0][1][:10])
        want_color = 0 if args.channels == 1 else 2
        if (w, h, depth, color) != (args.resolution, args.resolution, 8, want_color):
            fail("image %s is %dx%d depth %d colour type %d" % (im["id"], w, h, depth, color))
    for r in key_rows:
        if r["source_name"] and r["source_name"] in html:
            fail("the page names the source %r" % r["source_name"])
        if (head + tail).find(r["id"]) >= 0:
            fail("id %s appears outside the data block" % r["id"])
    ohead, _, otail = split_page(open(args.other, encoding="utf-8").read())
    if (ohead, otail) != (head, tail):
        fail("the page outside its data block differs between two kits")
    if "image-rendering: pixelated" not in html:
        fail("no nearest-neighbour upscaling (image-rendering: pixelated)")
    print("ok: page %.1f kB, %d images, ids and pixels only, no URL, same template as another kit"
          % (len(html) / 1e3, len(ids)))
    return data["images"]


def new_driver(download_dir, profile_dir):
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--host-resolver-rules=MAP * ~NOTFOUND", "--no-first-run", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--user-data-dir=" + profile_dir):
        opts.add_argument(a)
    opts.add_experimental_option("prefs", {"download.default_directory": download_dir,
                                           "download.prompt_for_download": False})
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions",
                           {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": download_dir})
    return driver


def requested_urls(driver):
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append((msg["params"].get("documentURL", ""), msg["params"]["request"]["url"]))
    return urls


def text(driver, id_):
    return driver.find_element(By.ID, id_).text


def chosen(driver, id_):
    return "chosen" in driver.find_element(By.ID, id_).get_attribute("class").split()


def click(driver, id_):
    driver.find_element(By.ID, id_).click()


def expect_at(driver, images, i, answered):
    n = len(images)
    want = "Image %d of %d \u00b7 %d answered" % (i + 1, n, answered)
    got = text(driver, "progress")
    if got != want:
        fail("progress shows %r, expected %r" % (got, want))
    if driver.find_element(By.ID, "img").get_attribute("src") != images[i]["src"]:
        fail("image %d on screen is not the page's image %d" % (i + 1, i + 1))


def answer(driver, images, clicks, i, ans, conf):
    click(driver, "btn-" + ans)
    click(driver, "conf-%d" % conf)
    if not (chosen(driver, "btn-" + ans) and chosen(driver, "conf-%d" % conf)):
        fail("the chosen answer is not marked on image %d" % (i + 1))
    clicks[images[i]["id"]] = (ans, conf, i + 1)


def run_reader(args, images, name, rule, reload_at=None, back_at=None):
    """Answers every image by rule(i) -> (answer, confidence); returns (clicks, csv text)."""
    tag = re.sub(r"[^A-Za-z0-9]", "_", name)
    download_dir = os.path.join(args.work, "dl-" + tag)
    os.makedirs(download_dir, exist_ok=True)
    driver = new_driver(download_dir, os.path.join(args.work, "profile-" + tag))
    n = len(images)
    clicks = {}
    try:
        driver.get("file://" + os.path.abspath(args.page))
        if not driver.find_element(By.ID, "start").get_attribute("disabled"):
            fail("Start is enabled before a reader name is given")
        driver.find_element(By.ID, "reader").send_keys(name)
        click(driver, "start")
        i = 0
        while i < n:
            expect_at(driver, images, i, i)
            if driver.find_element(By.ID, "next").get_attribute("disabled") is None:
                fail("Next is enabled on an unanswered image")
            if reload_at is not None and i == reload_at:
                reload_at = None
                driver.refresh()
                if not driver.find_element(By.ID, "resume-row").is_displayed():
                    fail("after a reload the page does not offer the saved answers")
                want = "Saved answers of %s: %d of %d images." % (name, i, n)
                if text(driver, "resume-text") != want:
                    fail("after a reload: %r, expected %r" % (text(driver, "resume-text"), want))
                click(driver, "resume")
                expect_at(driver, images, i, i)
                print("ok: %s reloaded the page at image %d; %d answers kept, continued there" % (name, i + 1, i))
            ans, conf = rule(i)
            answer(driver, images, clicks, i, ans, conf)
            click(driver, "next")
            i += 1
            if back_at is not None and i == back_at + 1 and i < n:
                back_at = None
                click(driver, "back")
                j = i - 1
                expect_at(driver, images, j, i)
                old_ans, old_conf, _ = clicks[images[j]["id"]]
                if not (chosen(driver, "btn-" + old_ans) and chosen(driver, "conf-%d" % old_conf)):
                    fail("going back does not show the earlier answer of image %d" % (j + 1))
                flipped = "real" if old_ans == "synthetic" else "synthetic"
                answer(driver, images, clicks, j, flipped, 5 if old_conf != 5 else 4)
                click(driver, "next")
                print("ok: %s went back to image %d and changed %s/%d to %s/%d" %
                      (name, j + 1, old_ans, old_conf, flipped, clicks[images[j]["id"]][1]))
        done = text(driver, "done-text")
        if not done.startswith("%s: %d of %d images answered." % (name, n, n)):
            fail("the last screen says %r" % done)
        link = driver.find_element(By.ID, "download")
        if not link.get_attribute("href").startswith("blob:"):
            fail("the download link is not a Blob URL: %r" % link.get_attribute("href"))
        link.click()
        deadline = time.time() + 20
        path = None
        while time.time() < deadline:
            done_files = [f for f in os.listdir(download_dir) if f.endswith(".csv")]
            if done_files:
                path = os.path.join(download_dir, done_files[0])
                break
            time.sleep(0.2)
        if path is None:
            fail("no CSV was downloaded to %s" % download_dir)
        time.sleep(0.3)
        data = open(path, encoding="utf-8", newline="").read()
        if data != driver.execute_script("return window.vttAnswersCsv();"):
            fail("the downloaded CSV differs from the page's answers")
        # Every request of the page itself is local, and nothing in the browser went to the network
        # (its own start page loads chrome:// resources).
        bad = [u for d, u in requested_urls(driver)
               if (d.startswith("file:") and not re.match(r"(file|data|blob):", u)) or re.match(r"(https?|wss?|ftp):", u)]
        if bad:
            fail("the page made network requests: %s" % bad[:3])
    finally:
        driver.quit()
    rows = list(csv.DictReader(io.StringIO(data)))
    if len(rows) != n:
        fail("%s: %d rows in the CSV, expected %d" % (path, len(rows), n))
    for pos, r in enumerate(rows, 1):
        ans, conf, p = clicks[r["image_id"]]
        if (r["reader"], r["answer"], int(r["confidence"]), int(r["position"])) != (name, ans, conf, p) or p != pos:
            fail("%s: row %d is %s, the clicks were %s" % (path, pos, r, (name, ans, conf, p)))
    out = os.path.join(args.work, "answers-%s.csv" % tag)
    with open(out, "w", encoding="utf-8", newline="") as f:
        f.write(data)
    print("ok: %s answered %d images; the downloaded CSV (%s) holds exactly the clicks" %
          (name, n, os.path.basename(path)))
    return clicks, out


def expected_scores(key_rows, readers):
    truth = {r["id"]: r["truth"] == "synthetic" for r in key_rows}
    ids = [r["id"] for r in key_rows]
    res = []
    for name, clicks in readers:
        tp = sum(1 for i in ids if truth[i] and clicks[i][0] == "synthetic")
        fn = sum(1 for i in ids if truth[i] and clicks[i][0] == "real")
        tn = sum(1 for i in ids if not truth[i] and clicks[i][0] == "real")
        fp = sum(1 for i in ids if not truth[i] and clicks[i][0] == "synthetic")
        n = len(ids)
        k = tp + tn
        p = sum(math.comb(n, j) for j in range(k, n + 1)) / 2 ** n
        res.append(dict(reader=name, tp=tp, fn=fn, tn=tn, fp=fp, accuracy=k / n,
                        sensitivity=tp / (tp + fn), specificity=tn / (tn + fp),
                        mean_confidence=sum(clicks[i][1] for i in ids) / n, p_guess=p))
    calls = [[1 if clicks[i][0] == "synthetic" else 0 for i in ids] for _, clicks in readers]
    # Cohen: observed agreement against the product of the two readers' marginals.
    a, b = calls
    n = len(ids)
    po = sum(x == y for x, y in zip(a, b)) / n
    pa, pb = sum(a) / n, sum(b) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    cohen = (po - pe) / (1 - pe)
    # Fleiss: per image the number of synthetic calls s among m readers.
    m = len(calls)
    s = [sum(c[j] for c in calls) for j in range(n)]
    pbar = sum((x * x + (m - x) * (m - x) - m) / (m * (m - 1)) for x in s) / n
    p1 = sum(s) / (n * m)
    pe_f = p1 * p1 + (1 - p1) * (1 - p1)
    fleiss = (pbar - pe_f) / (1 - pe_f)
    agree = sum(x == y for x, y in zip(a, b))
    return res, cohen, fleiss, agree


def check_scores(args, key_rows, readers, files):
    res, cohen, fleiss, agree = expected_scores(key_rows, readers)
    n = len(key_rows)
    out = subprocess.run([args.bin, "vtt-score", "--key", args.key] + files, capture_output=True, text=True)
    if out.returncode != 0:
        fail("vtt-score exited %d: %s" % (out.returncode, out.stderr.strip()))
    lines = out.stdout.splitlines()
    print(out.stdout, end="")
    for r in res:
        row = [l for l in lines if l.startswith(r["reader"] + " ")]
        if len(row) != 1:
            fail("vtt-score printed no row for %r" % r["reader"])
        fields = row[0][len(r["reader"]):].split()
        want = ["%d/%d" % (n, n), "%.4f" % r["accuracy"], "%.4f" % r["sensitivity"], "%.4f" % r["specificity"],
                str(r["tp"]), str(r["fn"]), str(r["tn"]), str(r["fp"]), "%.2f" % r["mean_confidence"],
                "%.4f" % r["p_guess"]]
        if fields != want:
            fail("vtt-score row of %s: %s, computed here: %s" % (r["reader"], fields, want))
    want_f = "Fleiss' kappa (2 readers, %d images): %.4f" % (n, fleiss)
    want_c = "Cohen's kappa %s / %s: %.4f (agree on %d of %d images)" % (readers[0][0], readers[1][0], cohen, agree, n)
    for w in (want_f, want_c):
        if w not in lines:
            fail("vtt-score did not print %r" % w)
    js = subprocess.run([args.bin, "vtt-score", "--json", "--key", args.key] + files, capture_output=True, text=True)
    if js.returncode != 0:
        fail("vtt-score --json exited %d" % js.returncode)
    j = json.loads(js.stdout)
    for got, r in zip(j["readers"], res):
        for k in ("tp", "fn", "tn", "fp"):
            if got[k] != r[k]:
                fail("--json %s of %s: %s, computed here %s" % (k, r["reader"], got[k], r[k]))
        for k in ("accuracy", "sensitivity", "specificity", "mean_confidence", "p_guess"):
            if abs(got[k] - r[k]) > 1e-12:
                fail("--json %s of %s: %r, computed here %r" % (k, r["reader"], got[k], r[k]))
    if abs(j["fleiss_kappa"] - fleiss) > 1e-12 or abs(j["cohen_kappa"][0]["kappa"] - cohen) > 1e-12:
        fail("--json kappas %r / %r, computed here %r / %r" % (j["fleiss_kappa"], j["cohen_kappa"][0]["kappa"], fleiss, cohen))
    if j["positive_class"] != "synthetic":
        fail("positive class %r" % j["positive_class"])
    print("ok: vtt-score (text and --json) equals the numbers computed from the key and the clicks "
          "(Fleiss %.4f, Cohen %.4f)" % (fleiss, cohen))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--page", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--other", required=True, help="the page of another kit (template comparison)")
    ap.add_argument("--bin", required=True, help="the styleforge binary")
    ap.add_argument("--work", required=True)
    ap.add_argument("--resolution", type=int, required=True)
    ap.add_argument("--channels", type=int, required=True)
    ap.add_argument("--check-only", action="store_true", help="check the page file only (no browser)")
    args = ap.parse_args()
    with open(args.key, encoding="utf-8", newline="") as f:
        key_rows = list(csv.DictReader(f))
    images = check_page(args, key_rows)
    if args.check_only:
        print("PASS")
        return
    a_name, b_name = "reader-a", 'Dr. "B", radiology'
    a_clicks, a_file = run_reader(args, images, a_name,
                                  lambda i: ("synthetic" if i % 2 == 0 else "real", i % 5 + 1),
                                  reload_at=len(images) // 2, back_at=2)
    b_clicks, b_file = run_reader(args, images, b_name,
                                  lambda i: ("synthetic" if i % 3 == 0 else "real", 3))
    check_scores(args, key_rows, [(a_name, a_clicks), (b_name, b_clicks)], [a_file, b_file])
    print("PASS")


if __name__ == "__main__":
    main()
