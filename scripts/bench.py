"""Runs runner's and PyTorch's rotation pretext step side by side and prints a table.

Every variant runs once per repetition, in the same order each time, so slow drifts of the
machine affect both sides alike; the table shows medians over repetitions.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "target" / "release" / "runner"
PYTORCH = ROOT / "scripts" / "bench_pytorch.py"

# glibc malloc settings that stop large activation buffers from being mapped and unmapped
# at every step (runner sets the same values with mallopt at start-up).
TUNED_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024), "MALLOC_TRIM_THRESHOLD_": str(1024**3)}


def run_json(command, env=None):
    merged = dict(os.environ, **(env or {}))
    output = subprocess.run(command, capture_output=True, text=True, env=merged)
    if output.returncode != 0:
        sys.exit(f"bench: {' '.join(map(str, command))} failed:\n{output.stderr}")
    return json.loads(output.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer steps and repetitions (under 3 minutes)")
    parser.add_argument("--reps", type=int, help="repetitions of every variant")
    parser.add_argument("--spec", default=str(ROOT / "experiments" / "rotation_ssl.toml"))
    args = parser.parse_args()

    data_dir = os.environ.get("RUNNER_DATA_DIR")
    if not data_dir:
        sys.exit("bench: set RUNNER_DATA_DIR to the folder that holds cifar10-jpg/")
    data_root = str(Path(data_dir) / "cifar10-jpg")
    warmup, steps, reps = (3, 10, 3) if args.quick else (5, 40, 5)
    reps = args.reps or reps

    def runner(mode):
        return [RUNNER, "bench", args.spec, "--mode", mode, "--warmup", warmup, "--steps", steps]

    def pytorch(mode):
        return [sys.executable, PYTORCH, "--data-root", data_root, "--mode", mode,
                "--warmup", warmup, "--steps", steps]

    variants = {
        ("runner", "end_to_end"): (runner("end-to-end"), None),
        ("pytorch", "end_to_end"): (pytorch("end_to_end"), None),
        ("pytorch_tuned", "end_to_end"): (pytorch("end_to_end"), TUNED_ENV),
        ("runner", "compute"): (runner("compute"), None),
        ("pytorch", "compute"): (pytorch("compute"), None),
        ("pytorch_tuned", "compute"): (pytorch("compute"), TUNED_ENV),
        ("runner", "data"): (runner("data"), None),
        ("pytorch", "data"): (pytorch("data"), None),
        ("runner", "sgemm"): (runner("sgemm"), None),
    }
    results = {key: [] for key in variants}
    for rep in range(reps):
        for key, (command, env) in variants.items():
            results[key].append(run_json([str(part) for part in command], env))
        print(f"bench: repetition {rep + 1}/{reps} done", file=sys.stderr)

    def median(key, field="images_per_second"):
        return statistics.median(result[field] for result in results[key])

    flops = results[("runner", "compute")][0]["train_flops_per_image"]
    sgemm = median(("runner", "sgemm"))
    ceiling = sgemm * 1e9 / flops
    rows = [
        ("end-to-end (rotated images/s)", "end_to_end"),
        ("compute only (rotated images/s)", "compute"),
        ("data pipeline (source images/s)", "data"),
    ]
    print(f"\nrotation pretext step, batch 128 x 4 rotations, {reps} repetitions of {steps} steps, medians\n")
    print(f"{'':34}{'runner':>10}{'pytorch':>10}{'pytorch+env':>13}")
    for label, mode in rows:
        cells = []
        for side in ("runner", "pytorch", "pytorch_tuned"):
            key = (side, mode)
            cells.append(f"{median(key):>10.0f}" if key in results else f"{'-':>10}")
        print(f"{label:34}{cells[0]}{cells[1]}{cells[2]:>13}")
    decode = median(("runner", "data"), "decode_images_per_second")
    print(f"{'runner JPEG decode (images/s)':34}{decode:>10.0f}")
    print(f"\nceiling: sgemm {sgemm:.1f} GFLOP/s / {flops / 1e6:.1f} MFLOP per rotated image "
          f"(forward + backward) = {ceiling:.0f} rotated images/s")
    runner_e2e = median(("runner", "end_to_end"))
    runner_compute = median(("runner", "compute"))
    ratios = [
        ("runner / pytorch, end-to-end", runner_e2e / median(("pytorch", "end_to_end")), 1.5),
        ("runner / pytorch+env, end-to-end", runner_e2e / median(("pytorch_tuned", "end_to_end")), 1.0),
        ("runner compute / ceiling", runner_compute / ceiling, 0.8),
        ("runner end-to-end / runner compute", runner_e2e / runner_compute, 0.95),
    ]
    print()
    for label, value, target in ratios:
        verdict = "met" if value >= target else "NOT met"
        print(f"{label:38}{value:6.2f}   target >= {target:.2f}  {verdict}")
    peak = max(result["peak_rss_mib"] for key in results if key[0] == "runner" for result in results[key])
    print(f"\npeak resident memory of runner bench processes: {peak:.0f} MiB")
    print("pytorch+env: " + " ".join(f"{k}={v}" for k, v in TUNED_ENV.items()))


if __name__ == "__main__":
    main()
