"""PyTorch side of `scripts/bench`: the default spec's rotation pretext stage written as a
PyTorch user usually writes it (torchvision ImageFolder, transforms on PIL images, a
DataLoader with worker processes), timed in one of three modes:

- end_to_end: DataLoader batches, rotation, forward, backward and SGD step;
- compute: the same step repeated on one pre-built batch (no input pipeline);
- data: the DataLoader alone (decode and augment).

Prints one JSON object with the rotated images per second (source images per second in
`data` mode). The network, batch, augmentations and optimiser match
experiments/rotation_ssl.toml.
"""

import argparse
import json
import resource
import sys
import time

import torch
import torch.nn as nn
import torchvision
import torchvision.transforms as T

# Per-channel mean and standard deviation of the CIFAR-10 training set on the [0, 1] scale.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def block(in_channels, out_channels):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


def network():
    return nn.Sequential(
        block(3, 32),
        block(32, 64),
        block(64, 128),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, 4),
    )


def rotate(images):
    batch = images.shape[0]
    inputs = torch.cat([torch.rot90(images, k, [2, 3]) for k in range(4)])
    targets = torch.arange(4).repeat_interleave(batch)
    return inputs, targets


def loader(root, batch_size, workers):
    transform = T.Compose(
        [
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(MEAN, STD),
        ]
    )
    dataset = torchvision.datasets.ImageFolder(f"{root}/train", transform=transform)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=workers > 0,
    )


def batches(data, count):
    """Yields `count` batches, restarting the loader at the end of an epoch."""
    produced = 0
    while produced < count:
        for images, _ in data:
            yield images
            produced += 1
            if produced == count:
                return


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-root", required=True, help="folder with train/<class>/*.jpg")
    parser.add_argument("--mode", choices=["end_to_end", "compute", "data"], required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--channels-last", action="store_true", help="channels-last inputs and weights"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also print torch.profiler's table of operator times to stderr",
    )
    args = parser.parse_args()

    torch.manual_seed(0)
    model = network()
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    criterion = nn.CrossEntropyLoss()

    def step(images):
        inputs, targets = rotate(images)
        inputs = inputs.contiguous(memory_format=layout)
        loss = criterion(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    total = args.warmup + args.steps
    if args.mode == "compute":
        fixed = torch.randn(args.batch_size, 3, 32, 32)
        source = (fixed for _ in range(total))
    else:
        source = batches(loader(args.data_root, args.batch_size, args.workers), total)

    started = None
    profiler = None
    for index, images in enumerate(source):
        if index == args.warmup:
            started = time.perf_counter()
            if args.profile:
                profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                profiler.__enter__()
        if args.mode != "data":
            step(images)
    seconds = time.perf_counter() - started
    if profiler is not None:
        profiler.__exit__(None, None, None)
        table = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
        print(table, file=sys.stderr)
    per_step = args.batch_size if args.mode == "data" else 4 * args.batch_size
    print(
        json.dumps(
            {
                "side": "pytorch",
                "mode": args.mode,
                "images_per_second": per_step * args.steps / seconds,
                "seconds": seconds,
                "threads": torch.get_num_threads(),
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
