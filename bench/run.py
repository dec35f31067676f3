"""Run the benchmark: ``python -m bench [--quick] [--only a,b] [--scenarios x,y] [--json PATH]``.

Every contender gets fresh server processes on 127.0.0.1 (one per scenario, so
a scenario's leftovers never weigh on the next), driven from this process by
an async httpx client.  Prints a Markdown table and writes the JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

if __package__ in (None, ""):  # run as ``python bench/run.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import idle, report, scenarios
from bench.contenders import BY_NAME, CONTENDERS, Contender
from bench.profile import Profiler, render, summarize, summarize_pstats
from bench.profile import available as profiling_unavailable
from bench.servers import GUNICORN_THREADS, ROOT, Server, stop_all
from bench.upstream import raise_fd_limit

SCENARIOS = (
    "throughput", "latency", "concurrency", "disconnect", "memory", "slow-reader", "idle",
    "resume",
)  # fmt: skip
DEFAULT_JSON = ROOT / "bench" / "results" / "latest.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts: a ~2 minute smoke test")
    parser.add_argument(
        "--only", default="", help="comma-separated contenders (default: all default ones)"
    )
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, from {SCENARIOS}"
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where the JSON goes")
    parser.add_argument(
        "--slow-chunk",
        type=int,
        default=None,
        help="chunk size in bytes for the slow-reader upstream (default 8192)",
    )
    parser.add_argument(
        "--profile",
        default="",
        help="comma-separated scenario steps to sample with py-spy (concurrency-1000, idle, ...;"
        " 'concurrency' means every concurrency step): bench/results/profiles/",
    )
    parser.add_argument(
        "--profiler",
        choices=("py-spy", "cprofile"),
        default="py-spy",
        help="py-spy: sampling, low cost; cprofile: exact calls and thread CPU per function,"
        " several times slower",
    )
    parser.add_argument("--list", action="store_true", help="list the contenders and exit")
    return parser.parse_args(argv)


def select(args: argparse.Namespace) -> tuple[list[Contender], list[str]]:
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise SystemExit(f"unknown contender(s) {unknown}; expected some of {list(BY_NAME)}")
    chosen = [BY_NAME[n] for n in names] if names else [c for c in CONTENDERS if c.default]
    wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    bad = [s for s in wanted if s not in SCENARIOS]
    if bad:
        raise SystemExit(f"unknown scenario(s) {bad}; expected some of {list(SCENARIOS)}")
    return chosen, [s for s in SCENARIOS if s in wanted]


def versions() -> dict[str, str]:
    found = {}
    for name in ("starlette", "fastapi", "uvicorn", "httptools", "uvloop", "flask", "django",
                 "gunicorn", "sse-starlette", "httpx", "indox-integrations"):  # fmt: skip
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError), open("/proc/meminfo") as info:
        mem = f"{int(info.readline().split()[1]) // 1024} MiB"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_before": os.getloadavg()[0],
    }


def git_state() -> dict[str, Any]:
    """The commit measured, and the package files that differed from it at the start."""
    import subprocess

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip()

    changed = git("status", "--porcelain", "--", "indox_integrations")
    return {"commit": git("rev-parse", "HEAD"), "package_changes": changed.splitlines()}


async def bounded(work: Awaitable[scenarios.Result], limit: float) -> scenarios.Result:
    """Every scenario has its own cuts; this is the backstop if one of them hangs."""
    try:
        return await asyncio.wait_for(work, limit)
    except asyncio.TimeoutError:
        raise TimeoutError(f"scenario still running after {limit:g} s") from None


async def run_contender(
    contender: Contender,
    wanted: list[str],
    cfg: scenarios.Config,
    log_dir: Path,
    profile: tuple[str, ...] = (),
    profiler: str = "py-spy",
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    profile_dir = log_dir.parent / "profiles"

    def profiled(name: str) -> bool:
        return any(name == p or name.startswith(f"{p}-") for p in profile)

    async def measure(name: str, group: list[Server]) -> scenarios.Result:
        if not profiled(name):
            return await bounded(run_of[name](group), cfg.scenario_limit)
        stem = f"{contender.name}.{name}"
        if profiler == "cprofile":
            await cprofile_call(group[0], "mark")
            result = await bounded(run_of[name](group), cfg.scenario_limit)
            await cprofile_call(group[0], "dump")
            path = Path(group[0].env["BENCH_CPROFILE"])
            summary = summarize_pstats(path, result.get("events"))
        else:
            # py-spy walks every thread's state each sample: fewer for 2,000 threads.
            rate = 50 if contender.wsgi else 250
            sampler = Profiler(group[0].pid, profile_dir / f"{stem}.txt", rate)
            try:
                result = await bounded(run_of[name](group), cfg.scenario_limit)
            finally:
                written = sampler.stop()
            if not written:
                return result
            summary = summarize(profile_dir / f"{stem}.txt", result.get("events"), rate=rate)
        summary["cpu_us_per_chunk"] = result.get("cpu_us_per_chunk")
        (profile_dir / f"{stem}.summary.txt").write_text(render(summary) + "\n")
        result["profile"] = summary
        return result

    @contextlib.contextmanager
    def attempt(name: str) -> Iterator[None]:
        started = time.monotonic()
        print(f"  {contender.name:22} {name:16}", end="", flush=True)
        try:
            yield
        except Exception as exc:
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
            (log_dir / f"{contender.name}.{name}.error.txt").write_text(traceback.format_exc())
            print(f" ERROR {type(exc).__name__}: {str(exc)[:120]}")
        else:
            print(f" {time.monotonic() - started:6.1f} s")

    Step = Callable[[list[Server]], Awaitable[scenarios.Result]]
    steps: list[tuple[str, Step]] = []
    if "throughput" in wanted:
        steps.append(("throughput", lambda s: scenarios.throughput(s[0], contender, cfg)))
    if "latency" in wanted:
        steps.append(("latency", lambda s: scenarios.latency(s[0], contender, cfg)))
    if "concurrency" in wanted:
        for streams in cfg.concurrency:
            steps.append((f"concurrency-{streams}", _concurrency_step(contender, cfg, streams)))
    # The slow reader runs before memory: when they share a server, the held
    # streams of a contender that never closes its upstream would delay it.
    if "slow-reader" in wanted:
        steps.append(("slow-reader", lambda s: scenarios.slow_reader(s[0], contender, cfg)))
    if "memory" in wanted:
        steps.append(("memory", lambda s: scenarios.memory(s[0], contender, cfg)))
    if "idle" in wanted:
        if contender.wsgi or not contender.heartbeats:
            why = "one thread per stream" if contender.wsgi else "it sends no heartbeats"
            out["idle"] = {"skipped": f"needs one uvicorn process and heartbeats: {why}"}
        else:
            steps.append(("idle", lambda s: idle.idle(s[0], contender, cfg)))
    if "resume" in wanted:
        if contender.direct is None:
            out["resume"] = {"skipped": "streams are not resumable"}
        else:
            steps.append(("resume", lambda s: scenarios.resume(s[0], contender, cfg)))
    if "disconnect" in wanted:
        # Two servers: on one, a silent sync upstream that blocks the event loop
        # (the naive code) would keep the chatty clients from reading at all.
        steps.append(("disconnect", lambda s: scenarios.disconnect(s[0], s[1], contender, cfg)))

    # Throughput and latency read their streams to the end, so they share a
    # server; the rest get fresh ones, unless the config says to save the time.
    groups: dict[str, list[str]] = {}
    for name, _ in steps:
        if name in ("throughput", "latency") or (not cfg.isolate and name.startswith("conc")):
            label = "speed"
        elif not cfg.isolate and name in ("memory", "slow-reader"):
            label = "resources"
        else:
            label = name
        groups.setdefault(label, []).append(name)
    run_of = dict(steps)
    # All of a contender's servers boot at once (imports are most of a start)
    # and all are up before the first measurement; an idle server takes no CPU
    # from the one being measured.
    # The idle scenario's heartbeat is also set for the apps that fix theirs at start.
    env = {label: {} for label in groups}
    if "idle" in env:
        env["idle"]["BENCH_HEARTBEAT"] = f"{cfg.idle_heartbeat:g}"
    for label, names in groups.items():
        if profiler == "cprofile" and any(profiled(n) for n in names):
            env[label]["BENCH_CPROFILE"] = str(profile_dir / f"{contender.name}.{label}.pstats")
    servers = {
        label: [
            Server(contender, log_dir, f"{label}-{i}", env[label])
            for i in range(2 if label == "disconnect" else 1)
        ]
        for label in groups
    }
    try:
        booted: dict[str, BaseException | None] = {}
        for label, group in servers.items():
            try:
                for server in group:
                    server.wait_ready()
                booted[label] = None
            except Exception as exc:
                booted[label] = exc
        for label, names in groups.items():
            group = servers[label]
            try:
                error = booted[label]
                if error is not None:
                    raise error
                await asyncio.gather(*(scenarios.warm_up(server, contender) for server in group))
                for name in names:
                    with attempt(name):
                        out[name] = await measure(name, group)
            except Exception as exc:
                for name in names:
                    out.setdefault(name, {"error": f"{type(exc).__name__}: {exc}"})
                print(f"  {contender.name:22} server failed: {type(exc).__name__}: {exc}"[:400])
            finally:
                for server in group:
                    server.stop()
    finally:
        for group in servers.values():
            for server in group:
                server.stop()
    return out


async def cprofile_call(server: Server, action: str) -> None:
    """Mark or dump the server's cProfile totals (:mod:`bench.cprof`) on its side port."""
    url = server.stats_url.rsplit("/", 1)[0] + f"/profile/{action}"
    async with httpx.AsyncClient() as client:
        response = await client.post(url, timeout=120.0)
        response.raise_for_status()


def _concurrency_step(
    contender: Contender, cfg: scenarios.Config, streams: int
) -> Callable[[list[Server]], Awaitable[scenarios.Result]]:
    return lambda s: scenarios.concurrency(s[0], contender, cfg, streams)


def best_of(first: Any, second: Any) -> Any:
    """The better of two floor results (more chunks/s, or less wall time), with both kept."""
    runs = [r for r in (first, second) if isinstance(r, dict) and "error" not in r]
    if not runs:
        return first or second
    if "chunks_per_s" in runs[0]:
        best = max(runs, key=lambda r: r["chunks_per_s"])
    else:
        best = min(runs, key=lambda r: r["projected_s"] or float("inf"))
        # CPU per chunk is a measure of its own: the lower of the two, too.
        cpus = [r["cpu_us_per_chunk"] for r in runs if r.get("cpu_us_per_chunk") is not None]
        if cpus:
            best = {**best, "cpu_us_per_chunk": min(cpus)}
    return {**best, "runs": runs}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    contenders, wanted = select(args)
    profile = tuple(p.strip() for p in args.profile.split(",") if p.strip())
    if profile and args.profiler == "py-spy" and (why := profiling_unavailable()) is not None:
        raise SystemExit(f"--profile: {why}")
    cfg = scenarios.QUICK if args.quick else scenarios.FULL
    if args.slow_chunk:
        cfg = dataclasses.replace(cfg, slow_chunk=args.slow_chunk)
    log_dir = args.json.parent / "logs"
    started = time.time()
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    meta: dict[str, Any] = {
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "mode": "quick" if args.quick else "full",
        "machine": machine(),
        "versions": versions(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)),
        "server": "uvicorn --http httptools (uvloop), 1 process; gunicorn gthread, 1 worker, "
        f"{GUNICORN_THREADS} threads",
        "client": "httpx.AsyncClient in the harness process (uvloop when installed); "
        "the idle scenario holds its streams with raw asyncio sockets",
        "nofile": raise_fd_limit()[0],
        "git": git_state(),
    }
    print(f"bench: {meta['mode']} run, {len(contenders)} contenders, scenarios {wanted}")
    for contender in contenders:
        reason = contender.missing()
        if reason:
            skipped[contender.name] = reason
            print(f"  {contender.name:22} skipped: {reason}")
            continue
        results[contender.name] = await run_contender(
            contender, wanted, cfg, log_dir, profile, args.profiler
        )
    floor = results.get("floor")
    again = [s for s in wanted if s in ("throughput", "concurrency")]
    if floor is not None and again and len(results) > 1 and not args.quick and not profile:
        # Every ratio divides by the floor, so one unlucky moment for it would
        # skew the whole table: it runs again at the end and keeps its best.
        print("  floor again (every ratio is taken to its best run)")
        floor_again = await run_contender(BY_NAME["floor"], again, cfg, log_dir)
        for name, second in floor_again.items():
            results["floor"][name] = best_of(floor.get(name), second)
    meta["seconds"] = round(time.time() - started, 1)
    meta["load_after"] = os.getloadavg()[0]
    return {
        "meta": meta,
        "config": cfg.__dict__ | {"concurrency": list(cfg.concurrency)},
        "contenders": {c.name: c.__dict__ for c in contenders},
        "skipped": skipped,
        "results": results,
        "ratios": report.ratios(results),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for c in CONTENDERS:
            print(f"{c.name:22} {c.server:9} {'' if c.default else '(--only) '}{c.what}")
        return 0
    runner: Callable[..., Any] = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        runner = uvloop.run
    # A SIGTERM (``timeout``, CI) must not leave servers behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        data = runner(run(args))
    finally:
        stop_all()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, indent=2, default=str))
    print()
    print(report.table(data))
    print(f"\nJSON: {args.json}   ({data['meta']['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
