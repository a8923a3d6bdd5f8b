#!/usr/bin/env python3
"""The reference MCP servers from npm behind `warden mcp`, driven by the
Python `mcp` client (pinned in requirements.txt; tests/mcp/setup.sh installs
everything). Run: target/venv-mcp/bin/python tests/mcp/test_realworld.py

1. server-filesystem: a policy that allows reads and writes inside one
   directory and nothing else is enforced on the real server (files on disk
   are checked), including a `..` traversal attempt.
2. server-everything: the same session run directly and through the gateway
   must give the same tools, prompts, resources, results, progress
   notifications and sampling round trip.
3. Several servers behind one gateway (`warden mcp --config`): filesystem and
   everything (prefixed `ev_`) with a policy scoping writes on the
   filesystem upstream; then everything twice under two names, whose shared
   tool names are refused and audited (read back with `warden audit tail`).
4. The same with everything reached over Streamable HTTP (a `url` server)
   next to the stdio filesystem server, then the HTTP and a stdio
   everything side by side, whose shared names are refused.
5. The filesystem and everything servers behind `warden mcp --config
   --listen`, driven by the Streamable HTTP client: two concurrent sessions
   (writes scoped per server), progress, sampling and a prompt, then a
   clean exit on SIGTERM.
"""
import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
import socket
import subprocess
import time

ROOT = Path(__file__).resolve().parents[2]
WARDEN = os.environ.get("WARDEN", str(ROOT / "target" / "debug" / "warden"))
MODULES = ROOT / "tests" / "mcp" / "node_modules" / "@modelcontextprotocol"
FS_SERVER = ["node", str(MODULES / "server-filesystem" / "dist" / "index.js")]
EVERYTHING = ["node", str(MODULES / "server-everything" / "dist" / "index.js"), "stdio"]

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def gated(policy, server, data_dir=None):
    args = ["mcp", "--policy", str(policy), "--agent", "realworld-agent"]
    if data_dir:
        args += ["--data-dir", str(data_dir)]
    return StdioServerParameters(command=WARDEN, args=args + ["--"] + server)


def direct(server):
    return StdioServerParameters(command=server[0], args=server[1:])


def text_of(result):
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


FS_POLICY = """
apiVersion: warden.dev/v1
kind: Policy
name: fs-realworld
default: deny
rules:
  - id: inside-allowed-dir
    tools: [read_text_file, read_file, list_directory, get_file_info, write_file, create_directory]
    when: args.path.startsWith("{allowed}/") && !args.path.contains("..")
    effect: allow
  - id: where-am-i
    tools: [list_allowed_directories]
    effect: allow
  - id: results
    points: [post_tool_call]
    effect: allow
"""


async def filesystem(tmp: Path):
    allowed, outside = tmp / "allowed", tmp / "outside"
    allowed.mkdir()
    outside.mkdir()
    (allowed / "hello.txt").write_text("hello from inside")
    (outside / "secret.txt").write_text("outside secret")
    policy = tmp / "fs.yaml"
    policy.write_text(FS_POLICY.format(allowed=allowed))
    # The server itself may touch all of tmp: only the gateway stands in the way.
    params = gated(policy, FS_SERVER + [str(tmp)], data_dir=tmp / "warden-data")
    async with stdio_client(params) as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        names = {t.name for t in (await s.list_tools()).tools}
        check("read_text_file" in names and "write_file" in names, "fs: read/write tools listed")
        check("move_file" not in names, "fs: never-allowed move_file hidden")

        res = await s.call_tool("read_text_file", {"path": str(allowed / "hello.txt")})
        check(not res.is_error and "hello from inside" in text_of(res), "fs: read inside allowed")

        res = await s.call_tool("write_file", {"path": str(allowed / "new.txt"), "content": "written"})
        check(not res.is_error, "fs: write inside allowed")
        check((allowed / "new.txt").read_text() == "written", "fs: file written inside")

        res = await s.call_tool("write_file", {"path": str(outside / "evil.txt"), "content": "x"})
        check(res.is_error and "Warden denied" in text_of(res), "fs: write outside denied with reason")
        check(not (outside / "evil.txt").exists(), "fs: nothing written outside")

        sneaky = f"{allowed}/../outside/evil2.txt"
        res = await s.call_tool("write_file", {"path": sneaky, "content": "x"})
        check(res.is_error, "fs: traversal write denied")
        check(not (outside / "evil2.txt").exists(), "fs: traversal wrote nothing")

        res = await s.call_tool("read_text_file", {"path": str(outside / "secret.txt")})
        check(res.is_error and "outside secret" not in text_of(res), "fs: read outside denied")

        res = await s.call_tool("move_file", {"source": str(allowed / "new.txt"),
                                              "destination": str(outside / "moved.txt")})
        check(res.is_error and (allowed / "new.txt").exists(), "fs: hidden tool call denied")
    audit = tmp / "warden-data"
    check(any(audit.rglob("*")), "fs: audit data written")
    pins = json.loads((audit / "mcp-tool-pins.json").read_text())
    check(any("write_file" in v for v in pins.values()), "fs: tool definitions pinned")


def over_stdio(params):
    return stdio_client(params)


async def everything_session(params, transport=over_stdio):
    """One scripted session; returns what it observed."""
    seen = {"sampling": 0, "progress": [], "logs": 0}

    async def sampling(ctx, p: types.CreateMessageRequestParams):
        seen["sampling"] += 1
        return types.CreateMessageResult(role="assistant", model="test-model",
                                         content=types.TextContent(type="text", text="sampled!"))

    async def progress(p, total, message):
        seen["progress"].append(p)

    out = {}
    async with transport(params) as streams, ClientSession(streams[0], streams[1], sampling_callback=sampling) as s:
        init = await s.initialize()
        out["server"] = init.server_info.name
        out["tools"] = sorted(t.name for t in (await s.list_tools()).tools)
        out["prompts"] = sorted(p.name for p in (await s.list_prompts()).prompts)
        out["prompt"] = (await s.get_prompt("simple-prompt")).model_dump(mode="json")
        out["args-prompt"] = (await s.get_prompt("args-prompt", {"city": "Paris", "state": "IDF"})).model_dump(mode="json")
        resources = (await s.list_resources()).resources
        out["resources"] = sorted(str(r.uri) for r in resources)
        first = str(resources[0].uri)
        out["resource"] = (await s.read_resource(first)).model_dump(mode="json")
        out["templates"] = sorted(t.uri_template for t in (await s.list_resource_templates()).resource_templates)
        out["echo"] = (await s.call_tool("echo", {"message": "héllo ✓"})).model_dump(mode="json")
        out["sum"] = (await s.call_tool("get-sum", {"a": 2, "b": 40})).model_dump(mode="json")
        out["structured"] = (await s.call_tool("get-structured-content", {"location": "New York"})).model_dump(mode="json")
        res = await s.call_tool("trigger-long-running-operation", {"duration": 1, "steps": 3},
                                progress_callback=progress)
        out["long"] = text_of(res)
        if "trigger-sampling-request" in out["tools"]:
            res = await s.call_tool("trigger-sampling-request", {"prompt": "hi", "maxTokens": 5})
            out["sampling"] = text_of(res)
        await s.send_ping()
        out["bad_tool"] = (await s.call_tool("no-such-tool", {})).is_error
    out["sampling_calls"] = seen["sampling"]
    out["progress"] = seen["progress"]
    return out


async def everything(tmp: Path):
    policy = tmp / "allow.yaml"
    policy.write_text("apiVersion: warden.dev/v1\nkind: Policy\nname: allow\ndefault: allow\nrules: []\n")
    plain = await everything_session(direct(EVERYTHING))
    through = await everything_session(gated(policy, EVERYTHING))
    for key in plain:
        check(plain[key] == through[key], f"everything: `{key}` same with and without the gateway")
        if plain[key] != through[key]:
            print("  direct: ", json.dumps(plain[key])[:400])
            print("  gateway:", json.dumps(through[key])[:400])
    check(len(through["progress"]) >= 3, "everything: progress notifications delivered")
    check(through["sampling_calls"] == 1, "everything: sampling request reached the client")
    check(through["bad_tool"], "everything: unknown tool is an error")

    # A policy denying one tool hides it and refuses its calls with a reason.
    deny = tmp / "deny.yaml"
    deny.write_text("""apiVersion: warden.dev/v1
kind: Policy
name: no-env
default: allow
rules:
  - id: no-env
    tools: [get-env]
    effect: deny
    reason: environment variables may hold secrets
""")
    async with stdio_client(gated(deny, EVERYTHING)) as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        names = {t.name for t in (await s.list_tools()).tools}
        check("get-env" not in names and "echo" in names, "everything: denied tool hidden")
        res = await s.call_tool("get-env", {})
        check(res.is_error and "environment variables may hold secrets" in text_of(res),
              "everything: denied call explains why")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    for _ in range(200):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port}")


async def everything_http(tmp: Path):
    """The same session over Streamable HTTP: direct, then through `warden mcp --upstream`."""
    policy = tmp / "http.yaml"
    policy.write_text("""apiVersion: warden.dev/v1
kind: Policy
name: http
default: allow
rules:
  - id: no-env
    tools: [get-env]
    effect: deny
    reason: environment variables may hold secrets
""")
    up, front = free_port(), free_port()
    server = subprocess.Popen(EVERYTHING[:2] + ["streamableHttp"], env={**os.environ, "PORT": str(up)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gateway = None
    try:
        wait_port(up, server, "server-everything")
        gateway = subprocess.Popen([WARDEN, "mcp", "--policy", str(policy), "--upstream",
                                    f"http://127.0.0.1:{up}/mcp", "--listen", f"127.0.0.1:{front}"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(front, gateway, "warden mcp --upstream")
        plain = await everything_session(f"http://127.0.0.1:{up}/mcp", streamable_http_client)
        through = await everything_session(f"http://127.0.0.1:{front}/mcp", streamable_http_client)
        plain["tools"] = [t for t in plain["tools"] if t != "get-env"]
        for key in plain:
            check(plain[key] == through[key], f"http: `{key}` same with and without the gateway")
            if plain[key] != through[key]:
                print("  direct: ", json.dumps(plain[key])[:400])
                print("  gateway:", json.dumps(through[key])[:400])
        check(len(through["progress"]) >= 3, "http: progress notifications delivered")
        check(through["sampling_calls"] == 1, "http: sampling request reached the client")
        async with streamable_http_client(f"http://127.0.0.1:{front}/mcp") as (r, w, *_), ClientSession(r, w) as s:
            await s.initialize()
            res = await s.call_tool("get-env", {})
            check(res.is_error and "environment variables may hold secrets" in text_of(res),
                  "http: denied call explains why")
        # The same single HTTP upstream from a gateway file (`url` + `listen`).
        front2 = free_port()
        (tmp / "gateway.yaml").write_text(
            f"policy: [http.yaml]\nlisten: 127.0.0.1:{front2}\n"
            f"servers:\n  - name: ev-http\n    url: http://127.0.0.1:{up}/mcp\n")
        from_file = subprocess.Popen([WARDEN, "mcp", "--config", str(tmp / "gateway.yaml")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(front2, from_file, "warden mcp --config (url)")
            async with streamable_http_client(f"http://127.0.0.1:{front2}/mcp") as (r, w, *_), ClientSession(r, w) as s:
                await s.initialize()
                res = await s.call_tool("echo", {"message": "via file"})
                check(not res.is_error and "via file" in text_of(res), "http: gateway file with a url server works")
                res = await s.call_tool("get-env", {})
                check(res.is_error and "environment variables may hold secrets" in text_of(res),
                      "http: gateway file's policy enforced")
        finally:
            from_file.terminate()
            from_file.wait(timeout=10)
    finally:
        for p in (gateway, server):
            if p is not None:
                p.terminate()
                p.wait(timeout=10)


MULTI_POLICY = """
apiVersion: warden.dev/v1
kind: Policy
name: multi-realworld
default: allow
rules:
  - id: fs-writes-inside-only
    tools: [write_file, edit_file, create_directory, move_file]
    when: context.mcp.server == "fs" && !(args.path.startsWith("{allowed}/") && !args.path.contains(".."))
    effect: deny
    reason: the filesystem server may only write inside the allowed directory
"""


def gateway_file(tmp: Path, servers):
    lines = ["policy: [policy.yaml]", "data_dir: warden-data", "agent: multi-agent", "servers:"]
    for name, command, prefix in servers:
        lines.append(f"  - name: {name}")
        if isinstance(command, str):
            lines.append(f"    url: {command}")
        else:
            lines.append(f"    command: {json.dumps(command[0])}")
            lines.append(f"    args: {json.dumps(command[1:])}")
        if prefix:
            lines.append(f"    prefix: {prefix}")
    path = tmp / "gateway.yaml"
    path.write_text("\n".join(lines) + "\n")
    return StdioServerParameters(command=WARDEN, args=["mcp", "--config", str(path)])


def client_callbacks():
    """A sampling callback answering `sampled!` and a progress callback, both recording into `seen`."""
    seen = {"sampling": 0, "progress": []}

    async def sampling(ctx, p):
        seen["sampling"] += 1
        return types.CreateMessageResult(role="assistant", model="test-model",
                                         content=types.TextContent(type="text", text="sampled!"))

    async def progress(p, total, message):
        seen["progress"].append(p)

    return seen, sampling, progress


async def progress_and_sampling(s, names, seen, progress, label: str):
    """server-everything (prefixed `ev_`) behind the gateway: its progress
    notifications reach the client, and its sampling request makes the round
    trip through the gateway's id mapping (when the server offers it)."""
    res = await s.call_tool("ev_trigger-long-running-operation", {"duration": 1, "steps": 3},
                            progress_callback=progress)
    check(not res.is_error and len(seen["progress"]) >= 3, f"{label}: progress notifications delivered")
    if "ev_trigger-sampling-request" in names:
        res = await s.call_tool("ev_trigger-sampling-request", {"prompt": "hi", "maxTokens": 5})
        check(not res.is_error and seen["sampling"] == 1 and "sampled!" in text_of(res),
              f"{label}: sampling round trip through the id mapping")


async def twins(twin_dir: Path, servers, label: str):
    """Two upstreams offering the same tools behind one gateway (allow-all
    policy in `twin_dir`): the shared `echo` is hidden and its call refused,
    naming both servers."""
    twin_dir.mkdir()
    (twin_dir / "policy.yaml").write_text("apiVersion: warden.dev/v1\nkind: Policy\nname: allow\ndefault: allow\nrules: []\n")
    async with stdio_client(gateway_file(twin_dir, servers)) as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        names = {t.name for t in (await s.list_tools()).tools}
        check("echo" not in names, f"{label}: tool offered by both servers hidden")
        res = await s.call_tool("echo", {"message": "which one?"})
        both = ", ".join(name for name, _, _ in servers)
        check(res.is_error and "mcp:duplicate_tool" in text_of(res) and both in text_of(res),
              f"{label}: duplicated tool call refused")


async def multi(tmp: Path):
    allowed, outside = tmp / "allowed", tmp / "outside"
    allowed.mkdir()
    outside.mkdir()
    (tmp / "policy.yaml").write_text(MULTI_POLICY.format(allowed=allowed))
    params = gateway_file(tmp, [("fs", FS_SERVER + [str(tmp)], None), ("everything", EVERYTHING, "ev_")])
    seen, sampling, progress = client_callbacks()

    async with stdio_client(params) as (r, w), ClientSession(r, w, sampling_callback=sampling) as s:
        init = await s.initialize()
        check(init.server_info.name == "warden-mcp-gateway", "multi: one endpoint, server info names Warden")
        names = {t.name for t in (await s.list_tools()).tools}
        check({"read_text_file", "write_file", "ev_echo", "ev_get-sum"} <= names, "multi: union of both servers' tools")
        check("echo" not in names, "multi: the prefix is what the client sees")

        res = await s.call_tool("write_file", {"path": str(allowed / "a.txt"), "content": "inside"})
        check(not res.is_error and (allowed / "a.txt").read_text() == "inside", "multi: fs write inside allowed")
        res = await s.call_tool("write_file", {"path": str(outside / "b.txt"), "content": "x"})
        check(res.is_error and "only write inside" in text_of(res), "multi: fs write outside denied with reason")
        check(not (outside / "b.txt").exists(), "multi: nothing written outside")
        res = await s.call_tool("read_text_file", {"path": str(allowed / "a.txt")})
        check(not res.is_error and "inside" in text_of(res), "multi: fs read routed to fs")

        res = await s.call_tool("ev_echo", {"message": "héllo ✓"})
        check(not res.is_error and "héllo ✓" in text_of(res), "multi: everything's echo works")
        res = await s.call_tool("ev_get-sum", {"a": 2, "b": 40})
        check(not res.is_error and "42" in text_of(res), "multi: everything's get-sum works")
        await progress_and_sampling(s, names, seen, progress, "multi")
        prompts = {p.name for p in (await s.list_prompts()).prompts}
        check("ev_simple-prompt" in prompts, "multi: prompts listed with the prefix")
        got = await s.get_prompt("ev_simple-prompt")
        check(len(got.messages) >= 1, "multi: prefixed prompt routed")
        resources = (await s.list_resources()).resources
        check(len(resources) > 0, "multi: resources listed")
        read = await s.read_resource(str(resources[0].uri))
        check(len(read.contents) >= 1, "multi: resource read routed by URI")
        await s.send_ping()

    # The same server twice under two names: every shared name is refused.
    twin_dir = tmp / "twins"
    await twins(twin_dir, [("everything", EVERYTHING, None), ("everything-twin", EVERYTHING, None)], "multi")
    tail = subprocess.run([WARDEN, "audit", "tail", "-n", "1000", "--data-dir", str(twin_dir / "warden-data")],
                          capture_output=True, text=True, check=True)
    records = [json.loads(l) for l in tail.stdout.splitlines() if l.strip()]
    check(any('"verdict":"deny"' in json.dumps(r, separators=(",", ":")) and "mcp:duplicate_tool" in json.dumps(r)
              and '"tool":"echo"' in json.dumps(r, separators=(",", ":")) for r in records),
          "multi: duplicate refusal in `warden audit tail`")


async def multi_http(tmp: Path):
    """server-everything over Streamable HTTP as one upstream of `warden mcp --config`."""
    allowed, outside = tmp / "allowed", tmp / "outside"
    allowed.mkdir()
    outside.mkdir()
    (tmp / "policy.yaml").write_text(MULTI_POLICY.format(allowed=allowed))
    up = free_port()
    server = subprocess.Popen(EVERYTHING[:2] + ["streamableHttp"], env={**os.environ, "PORT": str(up)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{up}/mcp"
    seen, sampling, progress = client_callbacks()

    try:
        wait_port(up, server, "server-everything (streamableHttp)")
        params = gateway_file(tmp, [("fs", FS_SERVER + [str(tmp)], None), ("ev-http", url, "ev_")])
        async with stdio_client(params) as (r, w), ClientSession(r, w, sampling_callback=sampling) as s:
            init = await s.initialize()
            check(init.server_info.name == "warden-mcp-gateway", "multi-http: one endpoint")
            names = {t.name for t in (await s.list_tools()).tools}
            check({"write_file", "ev_echo", "ev_get-sum"} <= names, "multi-http: union of stdio and HTTP tools")
            res = await s.call_tool("ev_echo", {"message": "over http ✓"})
            check(not res.is_error and "over http ✓" in text_of(res), "multi-http: HTTP upstream's echo works")
            res = await s.call_tool("ev_get-sum", {"a": 2, "b": 40})
            check(not res.is_error and "42" in text_of(res), "multi-http: HTTP upstream's get-sum works")
            res = await s.call_tool("write_file", {"path": str(outside / "b.txt"), "content": "x"})
            check(res.is_error and not (outside / "b.txt").exists(), "multi-http: stdio fs write outside denied")
            await progress_and_sampling(s, names, seen, progress, "multi-http")
            got = await s.get_prompt("ev_simple-prompt")
            check(len(got.messages) >= 1, "multi-http: prompt routed to the HTTP upstream")
            resources = [r for r in (await s.list_resources()).resources if str(r.uri).startswith("demo://")]
            check(len(resources) > 0, "multi-http: HTTP upstream's resources listed")
            if resources:
                read = await s.read_resource(str(resources[0].uri))
                check(len(read.contents) >= 1, "multi-http: resource read routed to the HTTP upstream")
            await s.send_ping()

        # The same server over HTTP and over stdio: the shared names are refused.
        await twins(tmp / "twins", [("everything", EVERYTHING, None), ("ev-http", url, None)], "multi-http")
    finally:
        server.terminate()
        server.wait(timeout=10)


async def multi_listen(tmp: Path):
    """`warden mcp --config --listen`: the filesystem and everything servers
    behind one Streamable HTTP endpoint, two concurrent client sessions."""
    allowed, outside = tmp / "allowed", tmp / "outside"
    allowed.mkdir()
    outside.mkdir()
    (tmp / "policy.yaml").write_text(MULTI_POLICY.format(allowed=allowed))
    params = gateway_file(tmp, [("fs", FS_SERVER + [str(tmp)], None), ("everything", EVERYTHING, "ev_")])
    front = free_port()
    gateway = subprocess.Popen([WARDEN, *params.args, "--listen", f"127.0.0.1:{front}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{front}/mcp"
    seen, sampling, progress = client_callbacks()
    try:
        wait_port(front, gateway, "warden mcp --listen")

        async def session(label, path):
            async with streamable_http_client(url) as (r, w, *_), ClientSession(r, w, sampling_callback=sampling) as s:
                init = await s.initialize()
                check(init.server_info.name == "warden-mcp-gateway", f"{label}: one endpoint over HTTP")
                names = {t.name for t in (await s.list_tools()).tools}
                check({"write_file", "ev_echo", "ev_get-sum"} <= names, f"{label}: union of both servers' tools")
                res = await s.call_tool("write_file", {"path": str(allowed / path), "content": label})
                check(not res.is_error and (allowed / path).read_text() == label, f"{label}: fs write inside allowed")
                res = await s.call_tool("write_file", {"path": str(outside / path), "content": "x"})
                check(res.is_error and "only write inside" in text_of(res) and not (outside / path).exists(),
                      f"{label}: fs write outside denied with reason")
                res = await s.call_tool("ev_echo", {"message": f"{label} ✓"})
                check(not res.is_error and f"{label} ✓" in text_of(res), f"{label}: everything's echo works")
                return names

        # Two sessions at once, each with its own upstreams.
        names, _ = await asyncio.gather(session("listen-1", "one.txt"), session("listen-2", "two.txt"))
        async with streamable_http_client(url) as (r, w, *_), ClientSession(r, w, sampling_callback=sampling) as s:
            await s.initialize()
            await progress_and_sampling(s, names, seen, progress, "listen")
            got = await s.get_prompt("ev_simple-prompt")
            check(len(got.messages) >= 1, "listen: prefixed prompt routed")
    finally:
        gateway.terminate()
        code = gateway.wait(timeout=20)
    check(code == 0, "listen: SIGTERM stops the gateway cleanly")


async def main():
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d).resolve()
        (tmp / "fs").mkdir()
        (tmp / "ev").mkdir()
        await filesystem(tmp / "fs")
        await everything(tmp / "ev")
        (tmp / "http").mkdir()
        await everything_http(tmp / "http")
        (tmp / "multi").mkdir()
        await multi(tmp / "multi")
        (tmp / "multi-http").mkdir()
        await multi_http(tmp / "multi-http")
        (tmp / "multi-listen").mkdir()
        await multi_listen(tmp / "multi-listen")
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        sys.exit(1)
    print("all real-world MCP checks passed")


if __name__ == "__main__":
    asyncio.run(main())
