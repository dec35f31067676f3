"""Ratios to the floor, the naive baseline and sse-starlette; the Markdown tables."""

from __future__ import annotations

from typing import Any

from bench.contenders import BY_NAME, NAIVE_OF, SSE_STARLETTE_OF

FLOOR = "floor"


def _get(results: dict[str, Any], name: str | None, *path: str) -> Any:
    value: Any = results.get(name or "", {})
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return a / b
    return None


def _concurrency_keys(results: dict[str, Any]) -> list[str]:
    keys = {k for r in results.values() for k in r if k.startswith("concurrency-")}
    return sorted(keys, key=lambda k: int(k.split("-")[1]))


def ratios(results: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """Per contender: throughput as a fraction of the others' (higher is better), wall
    time and memory as multiples of the others' (lower is better)."""
    out: dict[str, dict[str, float | None]] = {}
    for name in results:
        contender = BY_NAME[name]
        others = {
            "floor": FLOOR,
            "naive": NAIVE_OF[contender.family],
            "sse_starlette": SSE_STARLETTE_OF[contender.mode],
        }
        row: dict[str, float | None] = {}
        for label, other in others.items():
            if other == name:
                continue
            row[f"throughput_x_{label}"] = _ratio(
                _get(results, name, "throughput", "chunks_per_s"),
                _get(results, other, "throughput", "chunks_per_s"),
            )
            for key in _concurrency_keys(results):
                row[f"{key}_wall_x_{label}"] = _ratio(
                    _get(results, name, key, "projected_s"),
                    _get(results, other, key, "projected_s"),
                )
                row[f"{key}_cpu_x_{label}"] = _ratio(
                    _get(results, name, key, "cpu_us_per_chunk"),
                    _get(results, other, key, "cpu_us_per_chunk"),
                )
            row[f"memory_x_{label}"] = _ratio(
                _get(results, name, "memory", "kib_per_stream"),
                _get(results, other, "memory", "kib_per_stream"),
            )
        out[name] = row
    return out


def _n(value: Any, digits: int = 0) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    if digits == 0 and abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _x(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return ""
    return f" ({value:.2f}x)" if value < 10 else f" ({value:.0f}x)"


def _err(cell: Any) -> str | None:
    if isinstance(cell, dict) and "error" in cell:
        return "error"
    if isinstance(cell, dict) and "skipped" in cell:
        return "n/a"
    if cell is None:
        return "–"
    return None


def _throughput(results: dict[str, Any], name: str) -> str:
    cell = results[name].get("throughput")
    if (bad := _err(cell)) is not None:
        return bad
    floor = _get(results, FLOOR, "throughput", "chunks_per_s")
    text = f"{_n(cell['chunks_per_s'])}{_x(_ratio(cell['chunks_per_s'], floor))}"
    if not cell["complete"]:
        text += " incomplete" if not cell["cut"] else " cut"
    return text


def _concurrency(results: dict[str, Any], name: str, key: str) -> str:
    cell = results[name].get(key)
    if (bad := _err(cell)) is not None:
        return bad
    floor = _get(results, FLOOR, key, "projected_s")
    if cell["cut"]:
        text = f">{_n(cell['wall_s'])} s, ~{_n(cell['projected_s'])} s proj."
    else:
        text = f"{_n(cell['wall_s'], 1)} s"
    text += _x(_ratio(cell["projected_s"], floor))
    if cell["errors"]:
        text += f" {cell['errors']} err"
    elif not cell["cut"] and cell["complete"] < cell["streams"]:
        text += f" {cell['streams'] - cell['complete']} short"
    return text


def _cpu(results: dict[str, Any], name: str, key: str) -> str:
    cell = results[name].get(key)
    if (bad := _err(cell)) is not None:
        return bad
    floor = _get(results, FLOOR, key, "cpu_us_per_chunk")
    text = f"{_n(cell.get('cpu_us_per_chunk'))}{_x(_ratio(cell.get('cpu_us_per_chunk'), floor))}"
    return text + (" cut" if cell["cut"] else "")


def _max_active(results: dict[str, Any], name: str, key: str) -> str:
    cell = results[name].get(key)
    return _n(cell.get("max_active")) if isinstance(cell, dict) else "–"


def _latency(results: dict[str, Any], name: str) -> tuple[str, str]:
    cell = results[name].get("latency")
    if (bad := _err(cell)) is not None:
        return bad, bad
    return _n(cell["first_event_ms"]), f"{_n(cell['gap_p50_ms'])} / {_n(cell['gap_p99_ms'])}"


def _disconnect(results: dict[str, Any], name: str, variant: str) -> str:
    cell = results[name].get("disconnect")
    if (bad := _err(cell)) is not None:
        return bad
    cell = cell[variant]
    if not cell["measured"]:
        return f"3 events not in {cell['read_cut_s']:g} s"
    answered = cell.get("answered", cell["measured"])
    if not answered:
        return "no /stats answer"
    ms = cell["close_median_ms"]
    if ms is None:
        when = f"never ≤{cell['cut_s']:g} s"
    elif cell["heartbeat_s"] and variant == "silent":
        when = f"{cell['heartbeat_s']:g} s hb + {_n(ms - cell['heartbeat_s'] * 1000)} ms"
    else:
        when = f"{_n(ms)} ms"
    text = f"{when} / {_n(cell['pulled_after_max'])}"
    if answered < cell["streams"]:
        text += f" ({answered} of {cell['streams']} read 3 events)"
    return text


def _memory(results: dict[str, Any], name: str) -> str:
    cell = results[name].get("memory")
    if (bad := _err(cell)) is not None:
        return bad
    if 2 * cell["open"] < cell["streams"]:
        return f"– ({cell['open']} of {cell['streams']} open)"
    text = _n(cell["kib_per_stream"], 1)
    if cell["open"] < cell["streams"]:
        text += f" ({cell['open']} open)"
    return text


def _idle(results: dict[str, Any], name: str) -> str:
    cell = results[name].get("idle")
    if (bad := _err(cell)) is not None:
        return bad
    if 2 * cell["open"] < cell["streams"]:
        return f"– ({cell['open']} of {cell['streams']} open)"
    text = (
        f"{_n(cell['kib_per_stream'], 1)} / {_n(cell['late_p50_ms'])} / {_n(cell['late_p99_ms'])}"
    )
    if cell["open"] < cell["streams"]:
        text += f" ({cell['open']} open)"
    return text


def _vs(results: dict[str, Any], name: str, other: str, *path: str) -> str:
    """``name``'s figure at ``path`` as a multiple of ``other``'s."""
    return _f(_ratio(_get(results, name, *path), _get(results, other, *path)))


def _protocol_table(data: dict[str, Any], keys: list[str]) -> str | None:
    """Other protocols' wires against the same router on the indox wire: the cost of a
    JSON object per chunk (and the protocol's own start and finish chunks)."""
    results: dict[str, Any] = data["results"]
    last = keys[-1] if keys else None
    rows = []
    for name in results:
        indox = BY_NAME[name].on_indox
        if indox is None:
            continue
        rows.append([
            f"{name} (vs {indox})",
            _vs(results, name, indox, "throughput", "chunks_per_s"),
            _vs(results, name, indox, last, "projected_s") if last else "–",
            _vs(results, name, indox, last, "cpu_us_per_chunk") if last else "–",
            _vs(results, name, indox, "memory", "kib_per_stream"),
        ])  # fmt: skip
    if not rows:
        return None
    streams = last.split("-")[1] if last else ""
    head = [
        "protocols: JSON per chunk against raw text",
        "throughput vs indox wire",
        f"{streams} streams wall vs indox wire",
        f"{streams} streams server CPU µs per chunk vs indox wire",
        "KiB per stream vs indox wire",
    ]
    return _md(head, rows)


def _resume_table(data: dict[str, Any], keys: list[str]) -> str | None:
    """Resumable mode against the same router streaming directly: ratios, resume latency."""
    results: dict[str, Any] = data["results"]
    rows = []
    last = keys[-1] if keys else None
    for name in results:
        direct = BY_NAME[name].direct
        if direct is None:
            continue
        cell = results[name].get("resume") or {}
        resumed = (
            f"{_n(cell.get('resume_ms_p50'), 1)} / {_n(cell.get('resume_ms_p90'), 1)}"
            f" ({cell.get('exact', 0)}/{cell.get('reps', 0)} exact)"
            if "resume_ms_p50" in cell
            else _err(cell) or "-"
        )
        rows.append([
            f"{name} (vs {direct})",
            _vs(results, name, direct, "throughput", "chunks_per_s"),
            _vs(results, name, direct, last, "projected_s") if last else "-",
            _vs(results, name, direct, "memory", "kib_per_stream"),
            resumed,
        ])  # fmt: skip
    if not rows:
        return None
    streams = last.split("-")[1] if last else ""
    head = [
        "resumable contender",
        "throughput vs direct",
        f"{streams} streams wall vs direct",
        "KiB per stream vs direct",
        "resume: GET to first replayed event p50 / p90 ms",
    ]
    return _md(head, rows)


def _idle_table(data: dict[str, Any]) -> str | None:
    results: dict[str, Any] = data["results"]
    names = [n for n in results if isinstance(results[n].get("idle"), dict)]
    names = [n for n in names if "skipped" not in results[n]["idle"]]
    if not names:
        return None
    cfg = data["config"]
    head = [
        f"idle: {cfg['idle_streams']:,} streams, {cfg['idle_heartbeat']:g} s heartbeat",
        "open (s to open)",
        "server KiB per stream",
        "heartbeat late p50 / p99 / max ms",
        "heartbeats got / due",
        "server CPU % of a core (µs per heartbeat)",
        "server threads",
        "server GC pauses: count / longest ms",
        "client CPU % / KiB per stream / loop lag p99 ms",
        "upstreams closed after leaving",
    ]
    floor_kib = _get(results, FLOOR, "idle", "kib_per_stream")
    rows = []
    for name in names:
        cell = results[name]["idle"]
        if "error" in cell:
            rows.append([name, "error", *["–"] * (len(head) - 2)])
            continue
        opened = (
            f"{_n(cell['open'])} ({_n(cell['open_s'], 1)} s{', cut' if cell['open_cut'] else ''})"
        )
        if cell["errors"]:
            opened += f" {cell['errors']} err"
        closed = (
            f"{_n(cell['closed_s'], 1)} s"
            if cell["closed_s"] is not None
            else (f"{_n(cell['upstreams_left'])} left after {cfg['idle_close_cut']:g} s")
        )
        rows.append([
            name,
            opened,
            f"{_n(cell['kib_per_stream'], 1)}{_x(_ratio(cell['kib_per_stream'], floor_kib))}",
            " / ".join(_n(cell[k]) for k in ("late_p50_ms", "late_p99_ms", "late_max_ms")),
            f"{_n(cell['heartbeats'])} / {_n(cell['expected'])}",
            f"{_n(cell['server_cpu_pct'], 1)} ({_n(cell['server_cpu_us_per_heartbeat'])})",
            _n(cell["server_threads"]),
            f"{_n(cell.get('gc_pauses'))} / {_n(cell.get('gc_pause_max_ms'))}",
            f"{_n(cell['client_cpu_pct'], 1)} / {_n(cell['client_kib_per_stream'], 1)}"
            f" / {_n(cell['client_lag_p99_ms'], 1)}",
            closed,
        ])  # fmt: skip
    return _md(head, rows)


def _slow(results: dict[str, Any], name: str) -> str:
    cell = results[name].get("slow-reader")
    if (bad := _err(cell)) is not None:
        return bad
    return f"{_n(cell['peak_growth_mb'], 1)} / {_n(cell['pulled_mb'], 1)}"


def table(data: dict[str, Any]) -> str:
    """The results as Markdown: one row per contender, then the kit's ratios."""
    results: dict[str, Any] = data["results"]
    keys = _concurrency_keys(results)
    cfg = data["config"]
    head = ["contender", f"throughput chunks/s ({cfg['throughput_chunks']:,} chunks)"]
    head += [f"{k.split('-')[1]} streams wall" for k in keys]
    head += [f"{k.split('-')[1]} streams server CPU µs per chunk" for k in keys]
    if keys:
        head.append(f"max active ({keys[-1].split('-')[1]})")
    head += [
        "first event ms",
        "gap p50 / p99 ms",
        "disconnect chatty: close / pulled after",
        "disconnect silent: close / pulled after",
        f"KiB per open stream ({cfg['memory_streams']:,})",
        f"idle {cfg['idle_streams']:,}: KiB per stream / heartbeat late p50 / p99 ms",
        f"slow reader MB: RSS peak / pulled ({cfg['slow_bytes'] >> 20} MB"
        f" in {cfg['slow_chunk'] >> 10} KiB chunks)",
    ]
    rows = []
    for name in results:
        row = [f"{name} ({BY_NAME[name].server})", _throughput(results, name)]
        row += [_concurrency(results, name, k) for k in keys]
        row += [_cpu(results, name, k) for k in keys]
        if keys:
            row.append(_max_active(results, name, keys[-1]))
        row += [*_latency(results, name), _disconnect(results, name, "chatty")]
        row += [_disconnect(results, name, "silent"), _memory(results, name), _idle(results, name)]
        row.append(_slow(results, name))
        rows.append(row)
    lines = [_md(head, rows)]
    idle_table = _idle_table(data)
    if idle_table:
        lines += ["", idle_table]
    resume_table = _resume_table(data, keys)
    if resume_table:
        lines += ["", resume_table]
    protocol_table = _protocol_table(data, keys)
    if protocol_table:
        lines += ["", protocol_table]
    kit = [n for n in results if BY_NAME[n].role == "kit"]
    if kit:
        lines.append("")
        lines.append(_md(*_kit_ratios(data, kit, keys)))
    for name, reason in data.get("skipped", {}).items():
        lines.append(f"\nskipped {name}: {reason}")
    return "\n".join(lines)


def _kit_ratios(
    data: dict[str, Any], kit: list[str], keys: list[str]
) -> tuple[list[str], list[list[str]]]:
    last = keys[-1] if keys else None
    streams = last.split("-")[1] if last else ""
    head = [
        "kit contender",
        "throughput vs floor / naive / sse-starlette",
        f"{streams} streams wall vs floor / naive / sse-starlette",
        f"{streams} streams CPU per chunk vs floor / naive / sse-starlette",
        "KiB per stream vs floor / sse-starlette",
    ]
    rows = []
    for name in kit:
        r = data["ratios"].get(name, {})
        rows.append([
            name,
            " / ".join(_f(r.get(f"throughput_x_{o}")) for o in ("floor", "naive", "sse_starlette")),
            " / ".join(
                _f(r.get(f"{last}_wall_x_{o}")) for o in ("floor", "naive", "sse_starlette")
            ) if last else "–",
            " / ".join(
                _f(r.get(f"{last}_cpu_x_{o}")) for o in ("floor", "naive", "sse_starlette")
            ) if last else "–",
            " / ".join(_f(r.get(f"memory_x_{o}")) for o in ("floor", "sse_starlette")),
        ])  # fmt: skip
    return head, rows


def _f(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    return f"{value:.2f}x" if value < 10 else f"{value:.0f}x"


def _md(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
