"""Writes a TorchScript ResNet-18 with torchvision's parameter names (3 input channels, 1000-way
fc, widths scaled by --width-mult) for `styleforge classify --weights` tests; torchvision itself
is not needed. Usage: classify_weights_module.py OUT.pt [--width-mult 0.25]"""
import argparse

import torch
from torch import nn


class Basic(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet18(nn.Module):
    def __init__(self, width_mult):
        super().__init__()
        w = lambda c: max(1, round(c * width_mult))
        self.conv1 = nn.Conv2d(3, w(64), 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w(64))
        cin = w(64)
        for i in range(4):
            planes = w(64 << i)
            blocks = [Basic(cin, planes, 2 if i > 0 else 1), Basic(planes, planes, 1)]
            setattr(self, "layer%d" % (i + 1), nn.Sequential(*blocks))
            cin = planes
        self.fc = nn.Linear(cin, 1000)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))


ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("out")
ap.add_argument("--width-mult", type=float, default=1.0)
a = ap.parse_args()
torch.manual_seed(0)
torch.jit.script(ResNet18(a.width_mult).eval()).save(a.out)
