"""Reads every TensorBoard event folder under a run folder with TensorBoard's own
EventAccumulator and prints, as JSON, {stage folder: {"scalars": {tag: [[step, value], ...]},
"images": {tag: [[step, width, height], ...]}}}."""

import json
import os
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main(run_dir):
    result = {}
    for folder, _, files in os.walk(run_dir):
        if not any(name.startswith("events.out.tfevents.") for name in files):
            continue
        accumulator = EventAccumulator(folder, size_guidance={"scalars": 0, "images": 0})
        accumulator.Reload()
        tags = accumulator.Tags()
        stage = os.path.relpath(folder, run_dir)
        result[stage] = {
            "scalars": {
                tag: [[event.step, event.value] for event in accumulator.Scalars(tag)]
                for tag in tags["scalars"]
            },
            "images": {
                tag: [[event.step, event.width, event.height] for event in accumulator.Images(tag)]
                for tag in tags["images"]
            },
        }
    json.dump(result, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main(sys.argv[1])
