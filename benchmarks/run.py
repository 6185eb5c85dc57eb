"""End to end: `nsgsync` run as a process on a generated cluster, timed and weighed.

    python -m benchmarks.run [--sizes 100,1000,10000] [--repeat N] [--write]

For each size (NetworkPolicies), the cluster of `benchmarks/generate.py` is written once
under `benchmarks/.clusters/` (gitignored; rewritten when the generator changes), then
each command runs as a child process, as a user runs it:

    nsgsync compile -f manifests --topology topology-aws.yaml -o json
    nsgsync plan --offline -o json -f manifests --topology topology-{aws,azure,gcp}.yaml
    nsgsync explain -f manifests --topology topology-aws.yaml --from A --to B --port P

measuring the child's wall time (median of --repeat runs), its peak RSS (`ru_maxrss` of
the child, from `os.wait4`), the bytes it printed, and, read from that output, the
findings and Intent rules (compile) or the cloud resources (plan). In the same run, the
*floor*: a separate Python process that only parses the same files with PyYAML's C
loader (`yaml.load_all(..., Loader=yaml.CSafeLoader)` over every file, keeping the
documents), the least any command reading these files as YAML can cost.

It prints a Markdown table; `--write` also replaces the block between
`<!-- bench:e2e:start -->` and `<!-- bench:e2e:end -->` in docs/benchmarks.md and in
README.md's Performance section, with the machine, the date and the commit.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import generate

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "benchmarks" / ".clusters"
START = "<!-- bench:e2e:start -->"
END = "<!-- bench:e2e:end -->"
DOCS = ROOT / "docs" / "benchmarks.md"
README = ROOT / "README.md"

# The floor: parse every file the command reads with libyaml, keep the documents, exit.
FLOOR = """\
import os, sys, yaml
docs = []
for root in sys.argv[1:]:
    paths = [root] if os.path.isfile(root) else sorted(
        os.path.join(d, f)
        for d, dirs, files in os.walk(root)
        for f in files
        if f.endswith((".yaml", ".yml", ".json")) and not f.startswith(".")
    )
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            docs.extend(yaml.load_all(fh, Loader=yaml.CSafeLoader))
print(len(docs))
"""


@dataclass
class Sample:
    wall_s: float
    cpu_s: float
    rss_mb: float
    exit_code: int
    out_bytes: int


@dataclass
class Row:
    size: int
    command: str
    argv: list[str]
    runs: int
    wall_s: float | None = None  # median; None when it failed or timed out
    cpu_s: float | None = None  # median of user + system time: less disturbed by other load
    rss_mb: float | None = None  # the largest of the runs
    out_bytes: int | None = None
    findings: int | None = None
    rules: int | None = None
    resources: int | None = None
    status: str = "ok"


@dataclass
class SizeResult:
    size: int
    cluster: dict[str, Any]
    floor: Row
    rows: list[Row] = field(default_factory=list)


COMPILE = "compile -o json"


# --- the clusters ---


def _generator_digest(seed: int) -> str:
    source = Path(generate.__file__).read_bytes()
    return hashlib.sha256(source + f"\0{seed}".encode()).hexdigest()[:16]


def ensure_cluster(size: int, *, cache: Path, seed: int = generate.SEED) -> Path:
    """The generated cluster of `size` policies, written unless an up-to-date one is cached."""
    out = cache / f"policies-{size}"
    stamp = out / ".stamp"
    digest = _generator_digest(seed)
    if stamp.exists() and stamp.read_text() == digest:
        return out
    progress(f"size {size}: generating the cluster under {out} ...")
    generate.generate(out, size, seed=seed)
    stamp.write_text(digest)
    return out


# --- measuring one child process ---


def nsgsync_command() -> list[str]:
    """The `nsgsync` console script next to this interpreter, as a user runs it."""
    script = Path(sys.executable).parent / "nsgsync"
    if script.exists():
        return [str(script)]
    found = shutil.which("nsgsync")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from nsgsync.cli.main import main; sys.exit(main())"]


def run_child(argv: list[str], *, out: Path, timeout: float) -> Sample:
    """Run argv with stdout to `out`; wall time and the child's own peak RSS (wait4)."""
    with open(out, "wb") as stdout, open(out.with_suffix(".err"), "wb") as stderr:
        start = time.perf_counter()
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        # wait4 blocks; a timer kills a child that runs too long.
        timer = threading.Timer(timeout, child.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(child.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss is in KiB on Linux (bytes on macOS; these figures are Linux ones).
    cpu = usage.ru_utime + usage.ru_stime
    return Sample(wall, cpu, usage.ru_maxrss / 1024, child.returncode, out.stat().st_size)


def _stderr_tail(out: Path) -> str:
    lines = out.with_suffix(".err").read_text(errors="replace").strip().splitlines()
    return "\n".join(lines[-5:])


# Counted in a process of its own: Linux reports a child's peak RSS as at least what the
# parent held when it forked, so a parent that had parsed a 170 MB plan would lend every
# later command its memory (the tables showed 678 MB for explain at 10,000 policies).
_COUNT = """\
import json, sys
doc = json.load(open(sys.argv[2], "rb"))
if sys.argv[1] == "compile":
    rules = sum(len(s["ingress"]["rules"]) + len(s["egress"]["rules"]) for s in doc["segments"])
    print(json.dumps({"findings": len(doc["findings"]), "rules": rules}))
else:
    print(json.dumps({"resources": len(doc["desired"])}))
"""


def _count(command: str, out: Path) -> dict[str, int]:
    verb = command.split()[0]
    if verb not in ("compile", "plan"):
        return {}
    found = subprocess.run(
        [sys.executable, "-c", _COUNT, verb, str(out)], capture_output=True, check=True
    )
    counts: dict[str, int] = json.loads(found.stdout)
    return counts


def measure(
    size: int,
    command: str,
    argv: list[str],
    *,
    repeat: int,
    timeout: float,
    ok_codes: tuple[int, ...],
    work: Path,
) -> Row:
    row = Row(size, command, argv, runs=0)
    samples: list[Sample] = []
    out = work / "out.txt"
    for _ in range(repeat):
        sample = run_child(argv, out=out, timeout=timeout)
        if sample.exit_code == -9 and sample.wall_s >= timeout:
            row.status = f"timed out after {timeout:.0f} s"
            progress(f"size {size}: {command}: {row.status}")
            break
        if sample.exit_code not in ok_codes:
            row.status = f"failed (exit {sample.exit_code})"
            progress(f"size {size}: {command}: {row.status}:\n{_stderr_tail(out)}")
            break
        samples.append(sample)
        progress(
            f"size {size}: {command}: {sample.wall_s:.2f} s ({sample.cpu_s:.2f} s CPU), "
            f"{sample.rss_mb:.0f} MB, "
            f"{sample.out_bytes:,} bytes"
        )
    row.runs = len(samples)
    if samples and row.status == "ok":
        row.wall_s = statistics.median(s.wall_s for s in samples)
        row.cpu_s = statistics.median(s.cpu_s for s in samples)
        row.rss_mb = max(s.rss_mb for s in samples)
        row.out_bytes = samples[-1].out_bytes
        for key, value in _count(command, out).items():
            setattr(row, key, value)
    out.unlink(missing_ok=True)
    out.with_suffix(".err").unlink(missing_ok=True)
    return row


def measure_size(size: int, *, repeat: int, timeout: float, cache: Path) -> SizeResult:
    folder = ensure_cluster(size, cache=cache)
    cluster = json.loads((folder / "cluster.json").read_text())
    manifests = str(folder / "manifests")

    def topology(cloud: str) -> str:
        return str(folder / f"topology-{cloud}.yaml")

    work = cache / "work"
    work.mkdir(parents=True, exist_ok=True)
    floor = measure(
        size,
        "floor: parse with CSafeLoader",
        [sys.executable, "-c", FLOOR, manifests, topology("aws")],
        repeat=repeat,
        timeout=timeout,
        ok_codes=(0,),
        work=work,
    )
    result = SizeResult(size, cluster, floor)
    nsgsync = nsgsync_command()
    inputs = ["-f", manifests]
    commands: list[tuple[str, list[str], tuple[int, ...]]] = [
        (COMPILE, ["compile", *inputs, "--topology", topology("aws"), "-o", "json"], (0,))
    ]
    for cloud in generate.CLOUDS:
        commands.append(
            (
                f"plan --offline -o json ({cloud})",
                ["plan", "--offline", *inputs, "--topology", topology(cloud), "-o", "json"],
                (0,),
            )
        )
    conn = cluster["explain"]
    commands.append(
        (
            "explain",
            [
                *("explain", *inputs, "--topology", topology("aws")),
                *("--from", conn["from"], "--to", conn["to"], "--port", conn["port"]),
            ],
            # 3: the cloud is wider than Kubernetes, a normal answer; 4 would be a bug.
            (0, 3),
        )
    )
    for command, args, ok in commands:
        result.rows.append(
            measure(
                size,
                command,
                [*nsgsync, *args],
                repeat=repeat,
                timeout=timeout,
                ok_codes=ok,
                work=work,
            )
        )
    return result


# --- reporting ---


def _num(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _ratio(value: float | None, floor: float | None, *, digits: int = 1) -> str:
    if value is None or not floor:
        return "—"
    return f"{value / floor:.{digits}f}x"


def table(results: list[SizeResult]) -> str:
    lines = [
        "| policies | command | runs | wall (s) | CPU (s) | peak RSS (MB) | output (MB) "
        "| findings | Intent rules | cloud resources | wall / floor | CPU / floor "
        "| RSS / floor | wall / compile | CPU / compile |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        f = res.floor
        # A plan compiles first: its figures beside compile's say what planning adds.
        c = next((r for r in res.rows if r.command == COMPILE and r.status == "ok"), None)
        for row in [f, *res.rows]:
            head = f"| {res.size:,} | {row.command} | {row.runs} "
            if row.status != "ok":
                lines.append(head + f"| {row.status} |" + " — |" * 11)
                continue
            planned = c is not None and row.command.startswith("plan")
            assert row.wall_s is not None and row.cpu_s is not None and row.rss_mb is not None
            out_mb = "—" if row is f or row.out_bytes is None else f"{row.out_bytes / 1e6:.1f}"
            lines.append(
                head + f"| {row.wall_s:.2f} | {row.cpu_s:.2f} | {row.rss_mb:.0f} "
                f"| {out_mb} | {_num(row.findings)} | {_num(row.rules)} "
                f"| {_num(row.resources)} "
                f"| {'' if row is f else _ratio(row.wall_s, f.wall_s)} "
                f"| {'' if row is f else _ratio(row.cpu_s, f.cpu_s)} "
                f"| {'' if row is f else _ratio(row.rss_mb, f.rss_mb)} "
                f"| {_ratio(row.wall_s, c.wall_s, digits=2) if planned and c else ''} "
                f"| {_ratio(row.cpu_s, c.cpu_s, digits=2) if planned and c else ''} |"
            )
    return "\n".join(lines) + "\n"


def cluster_table(results: list[SizeResult]) -> str:
    lines = [
        "| policies | namespaces | segments | Deployments | StatefulSets | bare Pods "
        "| files | MB of YAML |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        c = res.cluster
        lines.append(
            f"| {c['policies']:,} | {c['namespaces']:,} | {c['segments']:,} "
            f"| {c['deployments']:,} | {c['statefulsets']:,} | {c['pods']:,} "
            f"| {c['files']:,} | {c['bytes'] / 1e6:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem = f", {pages / 2**30:.0f} GB RAM"
    except (ValueError, OSError):
        pass
    return (
        f"`nproc` = {os.cpu_count()} ({cpu}){mem}, {platform.system()}, "
        f"CPython {platform.python_version()}"
    )


def block(results: list[SizeResult], *, repeat: int, full: bool) -> str:
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = (
        f"Measured {date} at commit {_commit()} by `python -m benchmarks.run "
        f"--sizes {','.join(str(r.size) for r in results)} --repeat {repeat}`, "
        f"on {machine()}, other jobs possibly running. Wall: the median of the runs; CPU: "
        "the child's user + system time (median), less disturbed than wall by other jobs; "
        "peak RSS: the child's `ru_maxrss`, the largest of the runs. Plan output has no "
        "findings; explain prints a few lines.\n"
    )
    parts = [textwrap.fill(head, width=92) + "\n", table(results)]
    if full:
        parts += ["The generated clusters:\n", cluster_table(results)]
    return "\n".join(parts)


def replace_block(text: str, new: str, *, where: str) -> str:
    """`text` with what lies between the start and end markers replaced by `new`."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"{where}: no {START} ... {END} block to replace; add the two markers")
    return text[: start + len(START)] + "\n" + new.strip("\n") + "\n" + text[end:]


def write(results: list[SizeResult], *, repeat: int, docs: Path, readme: Path) -> None:
    for path, full in ((docs, True), (readme, False)):
        text = path.read_text()
        path.write_text(
            replace_block(text, block(results, repeat=repeat, full=full), where=path.name)
        )
        progress(f"wrote the table into {path}")


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="100,1000,10000", help="policy counts, comma-separated")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per command at every size (medians)"
    )
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds before a run is killed (per run)"
    )
    parser.add_argument("--write", action="store_true", help="write the tables into the docs")
    parser.add_argument("--json", action="store_true", help="print JSON, not a table")
    parser.add_argument("--cache", type=Path, default=CACHE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    results = [
        measure_size(size, repeat=args.repeat, timeout=args.timeout, cache=args.cache)
        for size in sizes
    ]
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print(table(results))
    if args.write:
        write(results, repeat=args.repeat, docs=DOCS, readme=README)
    failed = [r for res in results for r in (res.floor, *res.rows) if r.status != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
