"""Stand-ins, written to a temp dir, for the two imports NVIDIA's pix2pixHD needs and a
CPU-only torch wheel lacks: torchvision (networks.py builds VGG19 from it: random
weights here, the cost is the same) and dominate (util/html.py)."""

import os
import tempfile

_FILES = {
    'torchvision/__init__.py': 'from . import models, transforms  # noqa\n',
    'torchvision/models.py': '''import torch.nn as nn
_CFG = [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M', 512, 512, 512, 512, 'M',
        512, 512, 512, 512, 'M']


class _VGG19(nn.Module):
    def __init__(self):
        super().__init__()
        layers, c = [], 3
        for v in _CFG:
            if v == 'M':
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)


def vgg19(pretrained=False, **kw):
    return _VGG19()
''',
    'torchvision/transforms.py': '''class _Identity:
    def __init__(self, *a, **k):
        pass

    def __call__(self, x):
        return x


Compose = ToTensor = Normalize = Resize = Scale = RandomCrop = Lambda = _Identity
''',
    'dominate/__init__.py': '',
    'dominate/tags.py': 'def __getattr__(name):\n    return None\n',
}


def install() -> str:
  """Writes the stand-ins into a fresh temp dir and returns it (put it on sys.path)."""
  root = tempfile.mkdtemp(prefix='p2phd_stubs_')
  for rel, text in _FILES.items():
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
      f.write(text)
  return root
