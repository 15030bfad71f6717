"""Closed-loop HTTP load for the benchmarks: wrk when installed (a Debian package), else a light Python generator
of its own. Every request carries its own X-CIO-Delivery-ID, as Customer.io's webhooks do."""

import http.client
import json
import re
import shutil
import statistics
import subprocess
import threading
import time
from pathlib import Path

from production_site import VIA_PROXY

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = %(body)s
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Forwarded-Proto"] = "https"
wrk.headers["Host"] = "127.0.0.1"
local threads = 0
function setup(thread)
   threads = threads + 1
   thread:set("number", threads)
end
local sent = 0
function request()
   sent = sent + 1
   local headers = {}
   for name, value in pairs(wrk.headers) do headers[name] = value end
   headers["X-CIO-Delivery-ID"] = %(run)s .. "-" .. number .. "-" .. sent
   return wrk.format(nil, nil, headers)
end
"""


def lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid Lua string literal for these (ASCII) values


def run_wrk(url: str, body: str, seconds: float, connections: int, run: str, workdir: Path) -> dict:
    script = workdir / f"{run}.lua"
    script.write_text(WRK_SCRIPT % {"body": lua_string(body), "run": lua_string(run)})
    command = ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "-s", str(script), url]
    output = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout

    def latency(label):
        value, unit = re.search(rf"\s{label}%\s+([\d.]+)(us|ms|s)", output).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    total = re.search(r"(\d+) requests in", output)
    return {
        "rate": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50": latency("50"),
        "p99": latency("99"),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "requests": int(total.group(1)),
    }


def run_python_clients(url: str, body: str, seconds: float, connections: int, run: str) -> dict:
    """The light Python load generator (no wrk): `connections` keep-alive clients POSTing for `seconds`."""
    host, port_path = url.removeprefix("http://").split(":", 1)
    port, path = port_path.split("/", 1)
    stop_at = time.monotonic() + seconds
    latencies: list[float] = []
    statuses: list[int] = []

    def client(number):
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        sent = 0
        mine, codes = [], []
        while time.monotonic() < stop_at:
            sent += 1
            headers = {**VIA_PROXY, "Content-Type": "application/json", "X-CIO-Delivery-ID": f"{run}-{number}-{sent}"}
            started = time.perf_counter()
            connection.request("POST", "/" + path, body=body.encode(), headers=headers)
            response = connection.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            codes.append(response.status)
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
                connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.close()
        latencies.extend(mine)
        statuses.extend(codes)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "rate": len(latencies) / seconds,
        "p50": statistics.median(latencies) * 1000,
        "p99": percentile(latencies, 0.99) * 1000,
        "non_2xx": sum(1 for status in statuses if not 200 <= status < 400),
        "requests": len(latencies),
    }


def drive(url: str, body: str, arguments, label: str, workdir: Path, meter=None) -> dict:
    """Warm up, then measure: the same load for every endpoint. `meter()`, when given, returns CPU seconds used
    so far by kind ({"web": …, "database": …}); the figures then hold each kind's CPU per request of the
    measurement (`cpu_us`), read around it alone."""
    run = f"{label}-{time.monotonic_ns()}"
    load = (
        (lambda seconds, run: run_wrk(url, body, seconds, arguments.connections, run, workdir))
        if shutil.which("wrk")
        else (lambda seconds, run: run_python_clients(url, body, seconds, arguments.connections, run))
    )
    load(arguments.warm_up, run + "-warm")
    before = meter() if meter else None
    figures = load(arguments.seconds, run)
    if meter:
        after, requests = meter(), max(1, figures["requests"])
        figures["cpu_us"] = {kind: (after[kind] - before[kind]) / requests * 1e6 for kind in after}
    return figures


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]
