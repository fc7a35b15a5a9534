#!/usr/bin/env python3
"""R13: the admin API under a schema-based fuzzer (schemathesis, from PyPI) driven by its own
OpenAPI document, plus the access rules checked path by path.

Usage: api_fuzz.py URL PASSWORD [MAX_EXAMPLES]
Checks: no 5xx for any generated request (schemathesis' not_a_server_error), the server still
answers afterwards; every /esb/api path answers 401 without credentials; dashboard pages
redirect to sign-in without a session. Prints one line "RELIABILITY R13 ..." and exits
non-zero when a check fails."""
import base64, json, os, re, subprocess, sys, tempfile, urllib.error, urllib.request

url, password = sys.argv[1].rstrip("/"), sys.argv[2]
examples = sys.argv[3] if len(sys.argv) > 3 else "20"
auth = "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()

class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

def fetch(method, path, authorized=True):
    request = urllib.request.Request(url + path, method=method, data=b"{}" if method in ("POST", "PUT") else None)
    if authorized:
        request.add_header("Authorization", auth)
    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()

status, _, body = fetch("GET", "/esb/api/openapi.json")
assert status == 200, f"openapi.json: {status}"
document = json.loads(body)
schema = os.path.join(tempfile.mkdtemp(prefix="esb-fuzz-"), "openapi.json")
with open(schema, "wb") as f:
    f.write(body)

# Every /esb/api operation without credentials: 401.
unauthenticated = []
for path, operations in document["paths"].items():
    if not path.startswith("/esb/api"):
        continue
    concrete = re.sub(r"\{[^}]+\}", "x", path)
    for method in operations:
        code, headers, _ = fetch(method.upper(), concrete, authorized=False)
        if code != 401:
            unauthenticated.append(f"{method.upper()} {concrete} -> {code}")

# Dashboard pages without a session: a redirect to sign-in.
unguarded = []
for page in ["/esb/dashboard/", "/esb/dashboard/services", "/esb/dashboard/deployments", "/esb/dashboard/objects/def_amqp",
             "/esb/dashboard/enmasse", "/esb/dashboard/startup"]:
    code, headers, _ = fetch("GET", page, authorized=False)
    if code != 302 or "/esb/dashboard/login" not in headers.get("Location", ""):
        unguarded.append(f"{page} -> {code}")

run = subprocess.run(["schemathesis", "run", schema, "--url", url, "-H", f"Authorization: {auth}",
                      "--checks", "not_a_server_error", "--max-examples", examples, "--seed", "42",
                      "--request-timeout", "30", "--suppress-health-check", "all"],
                     capture_output=True, text=True)
output = run.stdout + run.stderr
summary = [line for line in output.splitlines() if re.search(r"passed|failed|errored|Test cases|operations", line, re.I)][-6:]
alive = fetch("GET", "/esb/ping", authorized=False)[0] == 200
ok = run.returncode == 0 and not unauthenticated and not unguarded and alive
print("\n".join(summary))
if run.returncode != 0:
    print(output[-6000:])
cases = re.search(r"(\d+) generated", output)
print(f"RELIABILITY R13 schemathesis={'passed' if run.returncode == 0 else 'failed'} cases={cases.group(1) if cases else '?'} "
      f"unauthenticated_not_401={len(unauthenticated)} "
      f"dashboard_unguarded={len(unguarded)} server_alive={alive}")
for problem in unauthenticated + unguarded:
    print("  " + problem)
sys.exit(0 if ok else 1)
