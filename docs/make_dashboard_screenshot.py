"""Regenerate docs/dashboard.png: a realistic workload with the dashboard open, then a screenshot.

    PYTHONPATH=src python docs/make_dashboard_screenshot.py 30 docs/dashboard.png

Needs the dashboard extra, numpy and Debian's `chromium`. A thread polls the
page's JSON every second, as an open tab does, so the charts have history.
"""

import os
import random
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np

import asyncray as ray

ctx = ray.init(num_cpus=4, include_dashboard=True, dashboard_port=0, object_store_memory=256 << 20)
url = ctx.dashboard_url
stop = threading.Event()


def watch():  # as an open tab does
    while not stop.is_set():
        urllib.request.urlopen(f"http://{url}/api/snapshot").read()
        stop.wait(1.0)


threading.Thread(target=watch, daemon=True).start()


@ray.remote
def preprocess(i):
    time.sleep(random.uniform(0.05, 0.3))
    return np.random.rand(100_000)


@ray.remote
def train_step(x):
    time.sleep(random.uniform(0.2, 0.6))
    if random.random() < 0.08:
        raise RuntimeError("diverged")
    return float(x.sum())


@ray.remote
def simulate(seconds):
    end = time.time() + seconds
    n = 0
    while time.time() < end:
        n += 1
    return n


@ray.remote
def evaluate(i):
    time.sleep(random.uniform(0.02, 0.1))
    return i


@ray.remote(max_restarts=2)
class ParameterServer:
    def __init__(self):
        self.w = 0.0

    def update(self, g):
        time.sleep(0.01)
        self.w += g
        return self.w

    def crash(self):
        os._exit(1)


@ray.remote
class Logger:
    def log(self, m):
        return len(m)


ps = ParameterServer.options(name="ps").remote()
logger = Logger.options(name="logger").remote()
gone = Logger.remote()
ray.get(gone.log.remote("x"))
ray.kill(gone)
keep = []
t_end = time.time() + float(sys.argv[1])
crashed = False
while time.time() < t_end:
    xs = [preprocess.remote(i) for i in range(8)]
    steps = [train_step.remote(x) for x in xs]
    for s in steps:
        try:
            ps.update.remote(ray.get(s))
        except Exception:
            logger.log.remote("step failed")
    ray.get([evaluate.remote(i) for i in range(20)])
    keep.append(ray.put(np.zeros(3_000_000)))  # 24 MB each: the store fills, then spills
    keep = keep[-14:]
    if not crashed and time.time() > t_end - float(sys.argv[1]) / 2:
        ps.crash.remote()
        crashed = True
# Still busy while the picture is taken.
busy = [simulate.remote(8) for _ in range(3)]
time.sleep(2.5)
out = sys.argv[2]
subprocess.run(
    [
        "chromium",
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--hide-scrollbars",
        "--virtual-time-budget=2500",
        f"--screenshot={out}",
        "--window-size=1400,1300",
        f"http://{url}/",
    ],
    capture_output=True,
    timeout=90,
)
stop.set()
print("saved", out)
try:
    ray.get(busy)
except Exception:
    pass
ray.shutdown()
