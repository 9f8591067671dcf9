#!/usr/bin/env python3
"""Server CPU per status read: N sequential keep-alive requests, /proc/<pid>/stat deltas.

usage: benches/poll_cpu.py target/release/themis 3000 3
Starts `themis serve` (SQLite, json log to a file), posts a run that stays running
(demo generator, one case delayed 10 min), then measures /healthz, GET /runs/{id} (200),
and the same with If-None-Match (304). Prints µs of server CPU (user + system of the `themis serve` process) per request,
each repeat, and the server's CPU per second while idle. The clock tick is 10 ms: use a
few thousand requests per repeat, and take minima on a shared machine.
"""
import http.client, json, os, subprocess, sys, time, tempfile

bin_, n, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
tick = os.sysconf("SC_CLK_TCK")
tmp = tempfile.mkdtemp()
port = 18000 + os.getpid() % 1000
log = open(os.path.join(tmp, "serve.log"), "w")
server = subprocess.Popen([bin_, "serve", "--addr", f"127.0.0.1:{port}", "--database",
                           f"sqlite://{tmp}/db.sqlite", "--log-format", "json"],
                          stdout=log, stderr=log)
def cpu():
    f = open(f"/proc/{server.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick

try:
    for _ in range(100):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port); c.request("GET", "/healthz")
            c.getresponse().read(); break
        except OSError:
            time.sleep(0.1)
    body = {"generation": {"generator": {"name": "builtin/demo_generator", "params": {"delay_ms": 600000}}},
            "evaluation": {"metrics": ["builtin/exact_match"]},
            "datasets": [{"dataset_id": "d", "cases": [{"case_id": "a", "input": {"question": "1"}, "expected_output": "1"}]}],
            "seeds": [int(time.time())], "concurrency": 1}
    c.request("POST", "/runs", json.dumps(body), {"content-type": "application/json"})
    run = json.loads(c.getresponse().read())["run_id"]
    while True:
        c.request("GET", f"/runs/{run}"); r = c.getresponse(); b = json.loads(r.read())
        if b["status"] == "running":
            tag = r.getheader("etag"); break
        time.sleep(0.05)
    time.sleep(1)
    def measure(path, headers, expect):
        before, t0 = cpu(), time.time()
        for _ in range(n):
            c.request("GET", path, headers=headers); r = c.getresponse(); r.read()
            assert r.status == expect, r.status
        return (cpu() - before) / n * 1e6, (time.time() - t0) / n * 1e6
    results = {"idle": [], "healthz": [], "run 200": [], "run 304": []}
    for _ in range(repeats):
        before = cpu(); time.sleep(1); results["idle"].append((cpu() - before) * 1e6)
        results["healthz"].append(measure("/healthz", {}, 200))
        results["run 200"].append(measure(f"/runs/{run}", {}, 200))
        c.request("GET", f"/runs/{run}"); r = c.getresponse(); r.read(); tag = r.getheader("etag")
        results["run 304"].append(measure(f"/runs/{run}", {"If-None-Match": tag}, 304))
    for k, v in results.items():
        if k == "idle":
            print(f"{k:8s} idle CPU µs per second: {', '.join('%.0f' % x for x in v)}")
        else:
            print(f"{k:8s} CPU µs/request: {', '.join('%.1f' % x for x, _ in v)}  (min {min(x for x, _ in v):.1f}); wall µs: {', '.join('%.0f' % w for _, w in v)}")
finally:
    server.terminate(); server.wait()
