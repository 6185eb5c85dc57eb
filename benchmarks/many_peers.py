"""One policy with many ipBlock peers: rendering must stay linear in them.

    python -m benchmarks.many_peers [--peers 2500,5000,10000] [--timeout 300]

Writes a policy whose ingress and egress each allow N distinct /32 ipBlock peers (no two
adjacent, so none merge) into the `tier: backend` pods of the example cluster's topology,
then runs `nsgsync plan --offline -o json` for each cloud as a child process, as a user
runs it, and prints wall time, CPU time, peak RSS and how the command ended, beside the
floor: a process that only parses the same files with PyYAML's C loader. AWS refuses
such a group (one rule per peer, over `aws.maxRulesPerGroup`) with a limit error: what is
timed there is the time to that error. Azure packs 4,000 prefixes into a rule and GCP 5,000
ranges, so both plan. Doubling N should about double the time; before rendering was made
linear, AWS took 130 s at 10,000 peers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from benchmarks.run import FLOOR, ROOT, nsgsync_command, run_child

TOPOLOGY = ROOT / "config" / "example" / "topology.yaml"
CLOUDS = ("aws", "azure", "gcp")


def peers(count: int) -> list[dict[str, object]]:
    """`count` distinct /32s from 100.64.0.0 on, every other address (none adjacent)."""
    out: list[dict[str, object]] = []
    for i in range(count):
        n = 2 * i
        out.append({"ipBlock": {"cidr": f"100.{64 + n // 65536}.{n // 256 % 256}.{n % 256}/32"}})
    return out


def policy(count: int) -> dict[str, object]:
    many = peers(count)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "many-peers", "namespace": "shop"},
        "spec": {
            "podSelector": {"matchLabels": {"tier": "backend"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": many}],
            "egress": [{"to": many, "ports": [{"protocol": "TCP", "port": 443}]}],
        },
    }


def write_case(folder: Path, count: int) -> tuple[Path, dict[str, Path]]:
    """The policy file (JSON, which is YAML) and one topology per cloud."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / f"many-peers-{count}.json"
    manifest.write_text(json.dumps(policy(count)))
    text = TOPOLOGY.read_text()
    topologies = {}
    for cloud in CLOUDS:
        path = folder / f"topology-{cloud}.yaml"
        path.write_text(text.replace("provider: aws", f"provider: {cloud}", 1))
        topologies[cloud] = path
    return manifest, topologies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", default="2500,5000,10000")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args(argv)
    print("| ipBlock peers | cloud | wall (s) | CPU (s) | peak RSS (MB) | result |")
    print("|---:|---|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory(prefix="nsgsync-peers-") as tmp:
        work = Path(tmp)
        for count in (int(n) for n in args.peers.split(",")):
            manifest, topologies = write_case(work / str(count), count)
            # The floor, in the same run: a process that only parses the same files.
            floor = run_child(
                [sys.executable, "-c", FLOOR, str(manifest), str(topologies["aws"])],
                out=work / "out.json",
                timeout=args.timeout,
            )
            print(
                f"| {count:,} | floor: parse with CSafeLoader | {floor.wall_s:.2f} "
                f"| {floor.cpu_s:.2f} | {floor.rss_mb:.0f} | exit {floor.exit_code} |",
                flush=True,
            )
            for cloud in CLOUDS:
                argv_ = [
                    *nsgsync_command(),
                    "plan",
                    "--offline",
                    "-o",
                    "json",
                    "-f",
                    str(manifest),
                    "--topology",
                    str(topologies[cloud]),
                ]
                sample = run_child(argv_, out=work / "out.json", timeout=args.timeout)
                err = (work / "out.err").read_text(errors="replace")
                if sample.exit_code == 0:
                    result = "planned"
                elif "error: segment" in err and "over the limit" in err:
                    result = "limit error"
                elif sample.exit_code == -9:
                    result = f"killed after {args.timeout:.0f} s"
                else:
                    result = f"exit {sample.exit_code}"
                print(
                    f"| {count:,} | {cloud} | {sample.wall_s:.2f} | {sample.cpu_s:.2f} "
                    f"| {sample.rss_mb:.0f} | {result} |",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
