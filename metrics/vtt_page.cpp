// The Visual Turing Test page (see vtt.h): one HTML file, no network access (the
// Content-Security-Policy allows inline script and style and data: images only), images embedded
// as PNG data URIs in a JSON block that holds ids and pixels and nothing else.
#include <nlohmann/json.hpp>

#include "metrics/vtt.h"

namespace sf::metrics::vtt {

namespace {

// @TITLE@ (HTML-escaped), @SIZE@ (CSS pixels) and @DATA@ (JSON, '<' escaped) are replaced.
const char* kTemplate = R"VTTPAGE(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@TITLE@</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 0; background: #1d1f21; color: #e8e8e8; }
  main { max-width: 960px; margin: 0 auto; padding: 16px; text-align: center; }
  h1 { font-size: 1.4em; margin: 8px 0 16px; }
  .screen { display: none; }
  .screen.on { display: block; }
  #img { width: min(@SIZE@px, 92vw, 64vh); height: auto; image-rendering: pixelated; image-rendering: crisp-edges;
         background: #000; border: 1px solid #444; display: block; margin: 8px auto; }
  button { font-size: 1.05em; padding: 8px 18px; margin: 4px; border-radius: 6px; border: 1px solid #666;
           background: #2c2f33; color: #e8e8e8; cursor: pointer; }
  button:disabled { opacity: 0.4; cursor: default; }
  button.chosen { background: #2f6fb3; border-color: #8cc0ff; color: #fff; font-weight: bold; }
  input[type=text] { font-size: 1.05em; padding: 6px 10px; width: 18em; }
  .row { margin: 10px 0; }
  .hint { color: #9aa0a6; font-size: 0.9em; }
  #bar { height: 6px; background: #333; border-radius: 3px; margin: 6px auto; max-width: 600px; }
  #bar div { height: 6px; background: #2f6fb3; border-radius: 3px; width: 0; }
  #warn { color: #ffb74d; }
  a.download { display: inline-block; font-size: 1.1em; padding: 10px 20px; margin: 10px; border-radius: 6px;
               background: #2f6fb3; color: #fff; text-decoration: none; }
</style>
</head>
<body>
<main>
<h1>@TITLE@</h1>

<section id="screen-start" class="screen on">
  <p>Each image is either a real image or one made by a generative model. For every image, say which you
     think it is and how sure you are (1 = a guess, 5 = certain). You can go back and change an answer.
     Your answers stay in this browser until you export them.</p>
  <div class="row"><label for="reader">Your name or reader ID: </label><input type="text" id="reader" autocomplete="off"></div>
  <div class="row"><button id="start" disabled>Start</button></div>
  <div class="row" id="resume-row" style="display:none">
    <p id="resume-text"></p>
    <button id="resume">Continue</button>
    <button id="restart">Start over (discards the saved answers)</button>
  </div>
</section>

<section id="screen-test" class="screen">
  <div class="row"><span id="progress"></span> <span class="hint" id="who"></span></div>
  <div id="bar"><div></div></div>
  <img id="img" alt="image to rate">
  <div class="row">
    <button id="btn-real" data-answer="real">Real (R)</button>
    <button id="btn-synthetic" data-answer="synthetic">Synthetic (S)</button>
  </div>
  <div class="row">Confidence:
    <button class="conf" id="conf-1" data-c="1">1</button><button class="conf" id="conf-2" data-c="2">2</button><button class="conf" id="conf-3" data-c="3">3</button><button class="conf" id="conf-4" data-c="4">4</button><button class="conf" id="conf-5" data-c="5">5</button>
    <span class="hint">1 = a guess, 5 = certain</span>
  </div>
  <div class="row">
    <button id="back">&larr; Back</button>
    <button id="next" disabled>Next &rarr;</button>
    <button id="finish">Finish / export</button>
  </div>
  <p class="hint">Keys: R / S answer, 1-5 confidence, arrow keys or Enter move.</p>
</section>

<section id="screen-done" class="screen">
  <p id="done-text"></p>
  <p id="warn"></p>
  <a id="download" class="download" href="#">Download answers (CSV)</a>
  <div class="row"><button id="review">Back to the images</button></div>
  <p class="hint">Send the downloaded CSV file to the study coordinator.</p>
</section>
</main>

<script id="vtt-data" type="application/json">@DATA@</script>
<script>
(function () {
  'use strict';
  var DATA = JSON.parse(document.getElementById('vtt-data').textContent);
  var IMAGES = DATA.images, N = IMAGES.length;
  var STORE = 'styleforge-vtt:' + DATA.kit;
  var st = null;
  var $ = function (id) { return document.getElementById(id); };

  function load() {
    try { var s = JSON.parse(window.localStorage.getItem(STORE)); if (s && s.answers) return s; } catch (e) {}
    return null;
  }
  function save() {
    try { window.localStorage.setItem(STORE, JSON.stringify(st)); $('warn').textContent = ''; }
    catch (e) { $('warn').textContent = 'This browser does not keep answers across a reload: export before closing.'; }
  }
  function complete(a) { return !!(a && a.answer && a.confidence); }
  function answeredCount() {
    var n = 0;
    for (var i = 0; i < N; i++) if (complete(st.answers[IMAGES[i].id])) n++;
    return n;
  }
  function show(name) {
    ['start', 'test', 'done'].forEach(function (s) { $('screen-' + s).classList.toggle('on', s === name); });
    if (st) { st.screen = name; save(); }
  }
  function render() {
    var img = IMAGES[st.pos], a = st.answers[img.id] || {};
    $('img').src = img.src;
    $('progress').textContent = 'Image ' + (st.pos + 1) + ' of ' + N + ' \u00b7 ' + answeredCount() + ' answered';
    $('who').textContent = '(reader: ' + st.reader + ')';
    $('bar').firstElementChild.style.width = (100 * answeredCount() / N) + '%';
    $('btn-real').classList.toggle('chosen', a.answer === 'real');
    $('btn-synthetic').classList.toggle('chosen', a.answer === 'synthetic');
    for (var c = 1; c <= 5; c++) $('conf-' + c).classList.toggle('chosen', a.confidence === c);
    $('back').disabled = st.pos === 0;
    $('next').disabled = !complete(a);
    $('next').textContent = st.pos === N - 1 ? 'Done \u2192' : 'Next \u2192';
  }
  function setAnswer(field, value) {
    var id = IMAGES[st.pos].id, a = st.answers[id] || {};
    a[field] = value;
    if (complete(a)) a.at = new Date().toISOString();
    st.answers[id] = a;
    save();
    render();
  }
  function csvField(s) {
    s = String(s);
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function csv() {
    var out = 'reader,image_id,answer,confidence,position,answered_at\r\n';
    for (var i = 0; i < N; i++) {
      var a = st.answers[IMAGES[i].id], ok = complete(a);
      out += [csvField(st.reader), IMAGES[i].id, ok ? a.answer : '', ok ? a.confidence : '', i + 1,
              ok ? a.at : ''].join(',') + '\r\n';
    }
    return out;
  }
  var blobUrl = null;
  function finish() {
    var n = answeredCount();
    $('done-text').textContent = st.reader + ': ' + n + ' of ' + N + ' images answered.' +
      (n < N ? ' ' + (N - n) + ' still unanswered: go back to answer them, or export as it is.' : ' Thank you.');
    if (blobUrl) URL.revokeObjectURL(blobUrl);
    blobUrl = URL.createObjectURL(new Blob([csv()], { type: 'text/csv' }));
    var link = $('download');
    link.href = blobUrl;
    link.download = 'vtt-answers-' + st.reader.replace(/[^A-Za-z0-9_.-]+/g, '_') + '-' + DATA.kit + '.csv';
    show('done');
  }
  function move(delta) {
    var p = st.pos + delta;
    if (p < 0) return;
    if (p >= N) { finish(); return; }
    st.pos = p;
    save();
    render();
  }
  function begin() {
    show('test');
    render();
  }

  $('reader').addEventListener('input', function () { $('start').disabled = !this.value.trim(); });
  $('reader').addEventListener('keydown', function (e) { if (e.key === 'Enter' && this.value.trim()) $('start').click(); });
  $('start').addEventListener('click', function () {
    var name = $('reader').value.trim();
    if (!name) return;
    var old = load();
    if (old && old.reader === name) st = old;
    else if (old && !window.confirm('Discard the saved answers of ' + old.reader + ' and start as ' + name + '?')) return;
    else st = { reader: name, pos: 0, answers: {} };
    save();
    begin();
  });
  $('resume').addEventListener('click', function () { st = load(); if (st.screen === 'done') finish(); else begin(); });
  $('restart').addEventListener('click', function () {
    if (!window.confirm('Discard the saved answers of ' + load().reader + '?')) return;
    window.localStorage.removeItem(STORE);
    st = null;
    $('resume-row').style.display = 'none';
  });
  $('btn-real').addEventListener('click', function () { setAnswer('answer', 'real'); });
  $('btn-synthetic').addEventListener('click', function () { setAnswer('answer', 'synthetic'); });
  for (var c = 1; c <= 5; c++)
    $('conf-' + c).addEventListener('click', function () { setAnswer('confidence', Number(this.dataset.c)); });
  $('back').addEventListener('click', function () { move(-1); });
  $('next').addEventListener('click', function () { move(1); });
  $('finish').addEventListener('click', finish);
  $('review').addEventListener('click', function () { begin(); });
  document.addEventListener('keydown', function (e) {
    if (!$('screen-test').classList.contains('on') || e.ctrlKey || e.metaKey || e.altKey) return;
    var k = e.key.toLowerCase();
    if (k === 'r') setAnswer('answer', 'real');
    else if (k === 's') setAnswer('answer', 'synthetic');
    else if (k >= '1' && k <= '5') setAnswer('confidence', Number(k));
    else if (k === 'arrowleft') move(-1);
    else if ((k === 'arrowright' || k === 'enter') && !$('next').disabled) move(1);
  });

  var saved = load();
  if (saved) {
    var n = 0;
    for (var i = 0; i < N; i++) if (complete(saved.answers[IMAGES[i].id])) n++;
    $('resume-text').textContent = 'Saved answers of ' + saved.reader + ': ' + n + ' of ' + N + ' images.';
    $('resume-row').style.display = 'block';
  }
  // For scripts that drive the page (tests): the CSV as the download link holds it.
  window.vttAnswersCsv = function () { return st ? csv() : ''; };
})();
</script>
</body>
</html>
)VTTPAGE";

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) s.replace(pos, from.size(), to);
}

}  // namespace

std::string render_page(const std::vector<PageImage>& images, const PageOptions& opts) {
  if (opts.display_size < 16 || opts.display_size > 4096)
    throw VttError("--display-size " + std::to_string(opts.display_size) + ": must be in [16, 4096] CSS pixels");
  nlohmann::json data;
  data["kit"] = opts.kit_id;
  data["images"] = nlohmann::json::array();
  for (const auto& im : images)
    data["images"].push_back({{"id", im.id}, {"src", "data:image/png;base64," + base64_encode(im.png.data(), im.png.size())}});
  std::string json = data.dump();
  replace_all(json, "<", "\\u003c");  // nothing in the block can close the script element
  std::string page = kTemplate;
  // The data first (ids, base64 and hex hold no '@'), the title last (it may hold anything).
  page.replace(page.find("@DATA@"), 6, json);
  replace_all(page, "@SIZE@", std::to_string(opts.display_size));
  replace_all(page, "@TITLE@", html_escape(opts.title));
  return page;
}

}  // namespace sf::metrics::vtt
