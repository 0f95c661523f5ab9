"""The interactive editor in a real browser: headless Chromium driven by Selenium.

One tiny feature model with random weights (styles and thumbnails work; the
pixels mean nothing) is launched with ``editor.launch`` on 127.0.0.1, port 0,
and the page is used as a person would: paint a stroke with the brush, select
and delete a car, select a person and pick another style from its
thumbnails, undo and redo. After each action the server's session must hold
exactly the expected label/instance maps (changed inside the stroke or the
object, bit-identical elsewhere), the PNG the page shows must be the
session's image, and that image must have changed mostly around the edit
(the generator's instance norm spreads a little change everywhere, so the
image is compared by mean change near the edit against far from it).

Selenium never downloads anything here: the driver and browser paths are
given (Debian's ``chromium`` and ``chromium-driver``; ``.ci/run`` installs
them). Without them the test is skipped, except in CI (``CI`` set), where it
fails.
"""

import base64
import io
import os

import jax
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from conftest import tiny_run_config
from hdgan_jax import edit, editor, editor_shapes, features, models, run as run_lib
from hdgan_jax.data import cityscapes

try:  # the [test] extra installs selenium; without it the test is skipped (outside CI)
  from selenium import webdriver
  from selenium.webdriver.chrome.service import Service
  from selenium.webdriver.common.action_chains import ActionChains
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:
  webdriver = None

CHROMIUM, CHROMEDRIVER = '/usr/bin/chromium', '/usr/bin/chromedriver'
H, W = 64, 128
CAR, PERSON = 26000, 24000
NEAR, FAR = 8, 16   # pixels: "around the edit" and "far from it" for the image check


def _missing():
  if webdriver is None:
    return 'selenium is not installed (pip install -e ".[test]")'
  absent = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
  if absent:
    return f'{" and ".join(absent)} missing (apt-get install -y chromium chromium-driver)'
  return None


@pytest.fixture(scope='module')
def browser():
  why = _missing()
  if why:
    if os.environ.get('CI'):
      pytest.fail(f'browser test cannot run in CI: {why}')
    pytest.skip(why)
  os.environ.setdefault('SE_OFFLINE', 'true')  # Selenium Manager: never go online
  opts = webdriver.ChromeOptions()
  opts.binary_location = CHROMIUM
  for arg in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu',
              '--window-size=1300,1000', '--disable-extensions', '--no-first-run'):
    opts.add_argument(arg)
  driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
  driver.set_script_timeout(30)
  yield driver
  driver.quit()


def random_params(model_cfg, rng):
  """G parameters of the right shapes, N(0, 0.02) kernels (the original's init), zero biases.

  Drawn with numpy from ``jax.eval_shape``: running G.init would take longer than the test.
  """
  x = np.zeros((1, 16, 16, models.generator_input_nc(model_cfg)), np.float32)
  shapes = jax.eval_shape(models.make_generator(model_cfg).init, jax.random.PRNGKey(0), x)
  return jax.tree_util.tree_map_with_path(
      lambda path, s: (rng.normal(0, 0.02, s.shape) if path[-1].key == 'kernel'
                       else np.zeros(s.shape)).astype(s.dtype), shapes['params'])


def scene():
  label = np.full((H, W), cityscapes.ID_OF['road'])
  label[:24] = cityscapes.ID_OF['sky']
  label[34:50, 16:48] = CAR // 1000
  label[26:56, 92:100] = PERSON // 1000
  inst = np.where(label == CAR // 1000, CAR, np.where(label == PERSON // 1000, PERSON, label))
  return label, inst


@pytest.fixture(scope='module')
def handle(tmp_path_factory):
  """The editor launched on a random-weight feature model, with every edit recorded."""
  c = tiny_run_config()
  c.model.update(dict(use_features=True, feat_num=3))
  rng = np.random.default_rng(0)
  params = random_params(c.model, rng)
  clusters = {k // 1000: features.ClassClusters(rng.normal(0, 2, (3, 3)).astype(np.float32),
                                                np.ones(3, np.int64)) for k in (CAR, PERSON)}
  run = run_lib.Run(c, {'G': params}, origin='random weights', clusters=clusters)
  label, inst = scene()
  h = editor.launch(run, label, inst, out_dir=str(tmp_path_factory.mktemp('edited')))
  sent, apply = [], h.session.apply
  h.session.apply = lambda op: (sent.append(op), apply(op))[1]
  h.sent = sent
  yield h
  h.stop()


def wait_shown(driver, version):
  """Waits until the page shows a state newer than ``version``; returns its version."""
  WebDriverWait(driver, 30).until(lambda d: d.execute_script(
      'return document.body.dataset.busy === "0" && +document.body.dataset.version > '
      f'{version}'))
  return int(driver.execute_script('return document.body.dataset.version'))


def shown_image(driver) -> np.ndarray:
  """The generated image as the page shows it (drawn on a canvas, read back as PNG)."""
  url = driver.execute_script(
      "const g = document.getElementById('gen'), c = document.createElement('canvas');"
      'c.width = g.naturalWidth; c.height = g.naturalHeight;'
      "c.getContext('2d').drawImage(g, 0, 0); return c.toDataURL('image/png');")
  return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(',', 1)[1]))).convert('RGB'))


def at(driver, y, x):
  """ActionChains offsets of label pixel (y, x) from the canvas centre."""
  r = driver.find_element(By.ID, 'lab').rect
  return (x + 0.5) * r['width'] / W - r['width'] / 2, (y + 0.5) * r['height'] / H - r['height'] / 2


def click_label(driver, y, x):
  canvas = driver.find_element(By.ID, 'lab')
  ActionChains(driver).move_to_element_with_offset(canvas, *at(driver, y, x)).click().perform()


def tool(driver, name):
  driver.find_element(By.CSS_SELECTOR, f'input[name="tool"][value="{name}"]').click()


def check_image(driver, h, before_image, region):
  """The page shows the session's image; it changed most near ``region``."""
  shown = shown_image(driver)
  np.testing.assert_array_equal(shown, h.session.image)
  diff = np.abs(shown.astype(int) - before_image.astype(int)).mean(-1)
  dist = ndimage.distance_transform_edt(~region)
  near, far = diff[dist <= NEAR].mean(), diff[dist > FAR].mean()
  assert near > 2 * far and near > 5, (near, far)


def test_paint_delete_restyle_undo_redo_in_the_browser(browser, handle):
  d, h, s = browser, handle, handle.session
  d.get(h.url)
  version = wait_shown(d, -1)
  np.testing.assert_array_equal(shown_image(d), s.image)

  # 1. A brush stroke of class person across the sky: one new person instance.
  old, old_image = s.state, s.image
  tool(d, 'brush')
  Select(d.find_element(By.ID, 'cls')).select_by_value('24')
  d.find_element(By.ID, 'radius').clear()
  d.find_element(By.ID, 'radius').send_keys('3')
  canvas = d.find_element(By.ID, 'lab')
  (x0, y0), (x1, y1) = at(d, 10, 40), at(d, 14, 80)
  chain = ActionChains(d).move_to_element_with_offset(canvas, x0, y0).click_and_hold()
  for k in range(1, 5):
    chain = chain.move_to_element_with_offset(canvas, x0 + (x1 - x0) * k / 4,
                                              y0 + (y1 - y0) * k / 4)
  chain.release().perform()
  version = wait_shown(d, version)
  op = h.sent[-1]
  assert op['op'] == 'paint' and op['class'] == 24 and op['radius'] == 3
  assert np.abs(np.subtract(op['points'][0], [10, 40])).max() <= 1
  assert np.abs(np.subtract(op['points'][-1], [14, 80])).max() <= 1
  stroke = editor_shapes.stroke_mask((H, W), op['points'], 3)
  assert 150 < stroke.sum() < 400 and not stroke[24:].any()  # all in the sky
  np.testing.assert_array_equal(s.state.label, np.where(stroke, 24, old.label))
  np.testing.assert_array_equal(s.state.inst, np.where(stroke, PERSON + 1, old.inst))
  check_image(d, h, old_image, stroke)

  # 2. Select the car and delete it: its pixels become the road around it, nothing else moves.
  old, old_image = s.state, s.image
  tool(d, 'select')
  click_label(d, 42, 30)
  WebDriverWait(d, 20).until(lambda d: f'instance {CAR}' in d.find_element(By.ID, 'sel').text)
  d.find_element(By.ID, 'del').click()  # while its thumbnails may still be on their way
  version = wait_shown(d, version)
  assert h.sent[-1] == {'op': 'remove', 'instance': CAR}
  car = old.inst == CAR
  assert CAR not in s.state.inst
  assert (s.state.label[car] == cityscapes.ID_OF['road']).all()
  np.testing.assert_array_equal(s.state.inst[car], s.state.label[car])
  np.testing.assert_array_equal(s.state.label[~car], old.label[~car])
  np.testing.assert_array_equal(s.state.inst[~car], old.inst[~car])
  check_image(d, h, old_image, car)

  # 3. Select the person and click another style's thumbnail: only its style changes.
  old, old_image = s.state, s.image
  click_label(d, 40, 95)
  WebDriverWait(d, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, '#thumbs img')) == 3)
  thumbs = [np.asarray(Image.open(io.BytesIO(base64.b64decode(
      im.get_attribute('src').split(',', 1)[1])))) for im in
            d.find_elements(By.CSS_SELECTOR, '#thumbs img')]
  person = old.inst == PERSON
  assert thumbs[0].shape[:2] == (30 + 8, 8 + 8)   # the person's box and 4 pixels around it
  assert any(np.abs(t.astype(int) - thumbs[0]).mean() > 5 for t in thumbs[1:])
  sampled = features.sample_choices(old.inst, s.renderer.clusters, rng=s.seed)[PERSON]
  k = (sampled + 1) % 3
  d.find_element(By.CSS_SELECTOR, f'#thumbs img[data-cluster="{k}"]').click()
  version = wait_shown(d, version)
  assert h.sent[-1] == {'op': 'style', 'instance': PERSON, 'cluster': k}
  assert s.state.styles == {PERSON: k}
  np.testing.assert_array_equal(s.state.label, old.label)
  np.testing.assert_array_equal(s.state.inst, old.inst)
  check_image(d, h, old_image, person)
  WebDriverWait(d, 20).until(lambda d: d.find_element(
      By.CSS_SELECTOR, f'#thumbs img[data-cluster="{k}"]').get_attribute('class') == 'chosen')

  # 4. Undo and redo from the page.
  styled = s.image
  d.find_element(By.ID, 'undo').click()
  version = wait_shown(d, version)
  assert s.state is old and s.state.styles == {}
  np.testing.assert_array_equal(shown_image(d), old_image)
  d.find_element(By.ID, 'redo').click()
  wait_shown(d, version)
  assert s.state.styles == {PERSON: k}
  np.testing.assert_array_equal(shown_image(d), styled)
  assert 'redo 0' in d.find_element(By.ID, 'msg').text
  assert edit.check_state(s.state) is None
