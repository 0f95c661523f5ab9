// hdgan_jax editor page: a canvas to paint the label map on, the generated image, the tools.
// Every action is one request to the local server (hdgan_jax/editor_server.py); strokes are
// sent as point lists [[y, x], ...] in label-map pixels. No inline script: the page's CSP
// allows only this file. body[data-busy] is "0" when the page shows the server's state
// and data-version is that state's version (the browser test waits on both).
'use strict';
const TOKEN = document.querySelector('meta[name="editor-token"]').content;
const $ = (id) => document.getElementById(id);
const lab = $('lab'), gen = $('gen'), msg = $('msg'), ctx = lab.getContext('2d');
let st = null;          // the last /state answer
let sel = null;         // {instance, class, name, clusters, style, x, y}
let labImage = null;    // the label map as an Image, redrawn under stroke previews
let stroke = null;      // points of the stroke being drawn

function setBusy(b) { document.body.dataset.busy = b ? '1' : '0'; }
function say(text, error) { msg.textContent = text || ''; msg.className = error ? 'error' : ''; }
function tool() { return document.querySelector('input[name="tool"]:checked').value; }
function color(c) { const k = st.colors[c] || [0, 0, 0]; return `rgb(${k[0]},${k[1]},${k[2]})`; }

function options(select, items, value) {
  select.replaceChildren(...items.map(([v, text, c]) => {
    const o = document.createElement('option');
    o.value = v; o.textContent = text;
    if (c !== undefined) { o.style.borderLeft = `1em solid ${color(c)}`; }
    return o;
  }));
  select.value = String(value);
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const im = new Image();
    im.onload = () => resolve(im);
    im.onerror = () => reject(new Error('cannot load ' + url));
    im.src = url;
  });
}

async function answer(r) {
  let j = {};
  try { j = await r.json(); } catch (e) { j = { error: `HTTP ${r.status}` }; }
  if (!r.ok) { throw new Error(j.error || `HTTP ${r.status}`); }
  return j;
}

async function show(s) {
  const first = st === null;
  st = s;
  if (first) {
    const classes = s.classes.map(([c, n]) => [c, `${c} ${n}`, c]);
    options($('cls'), classes, 26);
    options($('top'), classes, 23);
    options($('bottom'), [['none', '(same)']].concat(classes), 7);
    $('swatch').style.background = color(26);
  }
  const v = s.version;
  const [labels, image] = await Promise.all([loadImage(`labels.png?v=${v}`),
                                             loadImage(`image.png?v=${v}`)]);
  lab.width = s.width; lab.height = s.height;
  labImage = labels;
  ctx.drawImage(labels, 0, 0);
  gen.src = image.src;
  await new Promise((resolve) => (gen.complete ? resolve() : (gen.onload = resolve)));
  say(s.message + `  (undo ${s.undo}, redo ${s.redo})`, s.message.startsWith('not applied'));
  $('undo').disabled = !s.undo; $('redo').disabled = !s.redo;
  if (sel) { await select(sel.x, sel.y); }
  document.body.dataset.version = String(v);
}

async function request(promise) {
  setBusy(true);
  try {
    await show(await answer(await promise));
  } catch (e) {
    say('error: ' + e.message, true);
  } finally {
    setBusy(false);
  }
}

function post(url, body) {
  return request(fetch(url, { method: 'POST', body: JSON.stringify(body || {}),
    headers: { 'Content-Type': 'application/json', 'X-Editor-Token': TOKEN } }));
}

function edit(op) { return post('edit', op); }
function cls() { return +$('cls').value; }

function pixel(e) {
  const r = lab.getBoundingClientRect();
  const clamp = (v, n) => Math.min(n - 1, Math.max(0, Math.floor(v * n)));
  return [clamp((e.clientY - r.top) / r.height, st.height),
          clamp((e.clientX - r.left) / r.width, st.width)];
}

async function select(x, y) {
  const i = await answer(await fetch(`pick?x=${x}&y=${y}`));
  const same = sel && sel.instance === i.instance && sel.version === st.version - 1;
  sel = { ...i, x, y, version: st.version };
  const thing = st.things.includes(i.class);
  $('sel').textContent = `selected: instance ${i.instance}, class ${i.class} ${i.name}` +
    (thing ? '' : ' (stuff)') + (i.style !== null ? `, style ${JSON.stringify(i.style)}` : '');
  $('del').disabled = !thing; $('chg').disabled = false;
  if (same && $('thumbs').children.length) {  // a restyle of this object: the thumbnails stand
    [...$('thumbs').children].forEach((im) => {
      im.className = +im.dataset.cluster === i.style ? 'chosen' : '';
    });
  } else {
    await thumbnails(i);
  }
}

let thumbsAsked = 0;  // answers to older thumbnail requests are dropped
async function thumbnails(i) {
  const box = $('thumbs'), asked = ++thumbsAsked;
  box.replaceChildren();
  if (!st.features) { $('stylemsg').textContent = st.no_features; return; }
  if (!i.clusters) { $('stylemsg').textContent = `class ${i.class} has no styles`; return; }
  $('stylemsg').textContent = 'styles: rendering...';
  const t = await answer(await fetch(`thumbs?instance=${i.instance}`));
  if (asked !== thumbsAsked) { return; }
  $('stylemsg').textContent = 'styles (click one):';
  t.thumbnails.forEach((url, k) => {
    const im = document.createElement('img');
    im.src = url; im.title = `cluster ${k}`; im.dataset.cluster = k;
    if (i.style === k) { im.className = 'chosen'; }
    im.addEventListener('click', () => edit({ op: 'style', instance: i.instance, cluster: k }));
    box.appendChild(im);
  });
}

function preview() {
  ctx.drawImage(labImage, 0, 0);
  ctx.strokeStyle = ctx.fillStyle = color(cls());
  ctx.lineWidth = 2 * +$('radius').value; ctx.lineCap = ctx.lineJoin = 'round';
  ctx.beginPath();
  stroke.forEach(([y, x], k) => (k ? ctx.lineTo(x + 0.5, y + 0.5) : ctx.moveTo(x + 0.5, y + 0.5)));
  if (stroke.length === 1) { ctx.lineTo(stroke[0][1] + 0.5, stroke[0][0] + 0.5); }
  ctx.stroke();
}

lab.addEventListener('pointerdown', (e) => {
  if (!st || document.body.dataset.busy === '1') { return; }
  const [y, x] = pixel(e);
  const t = tool();
  if (t === 'brush') {
    stroke = [[y, x]];
    lab.setPointerCapture(e.pointerId);
    preview();
  } else if (t === 'select') {
    setBusy(true);
    select(x, y).catch((err) => say('error: ' + err.message, true)).finally(() => setBusy(false));
  } else if (t === 'fill') {
    edit({ op: 'fill', at: [y, x], class: cls() });
  } else {
    edit({ op: 'stamp', shape: t, at: [y, x], size: +$('size').value });
  }
});
lab.addEventListener('pointermove', (e) => {
  if (!stroke) { return; }
  const p = pixel(e), last = stroke[stroke.length - 1];
  if (p[0] !== last[0] || p[1] !== last[1]) { stroke.push(p); preview(); }
});
function endStroke() {
  if (!stroke) { return; }
  const points = stroke;
  stroke = null;
  edit({ op: 'paint', points, class: cls(), radius: +$('radius').value });
}
lab.addEventListener('pointerup', endStroke);
lab.addEventListener('pointercancel', endStroke);

$('cls').addEventListener('change', () => { $('swatch').style.background = color(cls()); });
$('undo').addEventListener('click', () => post('undo'));
$('redo').addEventListener('click', () => post('redo'));
$('resample').addEventListener('click', () => post('resample'));
$('del').addEventListener('click', () => sel && edit({ op: 'remove', instance: sel.instance }));
$('chg').addEventListener('click', () => sel && edit({ op: 'change_class', instance: sel.instance,
                                                        to: cls() }));
$('save').addEventListener('click', () => post('save', { name: $('name').value }));
$('new').addEventListener('click', () => {
  sel = null;
  const b = $('bottom').value;
  post('new', { classes: b === 'none' ? [+$('top').value] : [+$('top').value, +b] });
});

function readFile(input) {
  return new Promise((resolve, reject) => {
    if (!input.files.length) { reject(new Error('choose both PNG files first')); return; }
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(input.files[0]);
  });
}
$('load').addEventListener('click', async () => {
  try {
    const [labels, instances] = await Promise.all([readFile($('flab')), readFile($('finst'))]);
    sel = null;
    await post('load', { labels, instances });
  } catch (e) { say('error: ' + e.message, true); }
});

request(fetch('state'));
