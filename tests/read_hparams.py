"""Read a logdir through TensorBoard's hparams plugin, as the HPARAMS tab does, and print JSON.

Usage: read_hparams.py LOGDIR

The script builds TensorBoard's own backend in-process, with no socket: the flags of
`tensorboard --logdir LOGDIR --load_fast=false`, the Python data ingester (an
EventMultiplexer behind a MultiplexerDataProvider, loaded once) and the WSGI app with the
default plugins. Through werkzeug's test client it then sends the requests that the HPARAMS
tab (`tf-hparams-query-pane`) sends: POST /data/plugin/hparams/experiment, then
POST /data/plugin/hparams/session_groups with every status allowed and a column for each
hparam and metric. It also reads /data/plugins_listing to check that the tab is enabled.

NOTE: `tensorboard` uses its Rust data server instead of this Python ingester when
`tensorboard_data_server` is installed (`--load_fast=auto`). That server listens on a socket,
so this script does not exercise it. Read but not run here, its `data_compat.rs` gives values
of the plugin `hparams` the tensor data class, as the Python ingester does.

Output:
    {"plugin_enabled": bool,
     "hparams": [name, ...],
     "metrics": [column, ...],
     "sessions": {session: {"group": group name,
                            "hparams": {name: value},
                            "metrics": {column: value},
                            "status": "STATUS_..."}},
     "groups": {group name: {column: value}}}

A session group's metric values are the mean over its sessions, the tab's default
aggregation. A session with an empty group name forms a group named after the session.

A metric column is named as the tab names it: the tag when the group is "" or ".", else
"<group>.<tag>". Lists keep the order of the plugin's response.
"""

import json
import sys

from werkzeug.test import Client

from tensorboard import default, program
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_ingester

ALL_STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]

# The tab requests at most 1000 hparams (`_maxNumHparamsToLoad`) and shows 100 session groups
# per page by default. One page of 1000 keeps any test sweep in a single response.
HPARAMS_LIMIT = 1000
PAGE_SIZE = 1000


def make_app(logdir):
    """Build TensorBoard's WSGI app over `logdir`, with its data loaded once."""
    plugins = default.get_plugins()
    tensorboard = program.TensorBoard(plugins=plugins)
    tensorboard.configure(
        (
            "",
            "--logdir",
            logdir,
            "--load_fast",
            "false",
            "--reload_interval",
            "0",
            "--reload_task",
            "blocking",
        )
    )
    ingester = data_ingester.LocalDataIngester(tensorboard.flags)
    ingester.start()
    return application.TensorBoardWSGIApp(
        tensorboard.flags,
        plugins,
        ingester.data_provider,
        deprecated_multiplexer=ingester.deprecated_multiplexer,
    )


def post_json(client, path, request):
    """Send `request` as the JSON body of a POST to `path` and return the decoded response."""
    response = client.post(path, data=json.dumps(request), content_type="application/json")
    if response.status_code != 200:
        body = response.get_data(as_text=True)
        raise RuntimeError(f"POST {path} failed with {response.status}: {body}")
    return response.get_json()


def metric_column(name):
    """Name a metric's column from its MetricName, as the tab does."""
    group = name.get("group", "")
    tag = name.get("tag", "")
    return tag if group in ("", ".") else f"{group}.{tag}"


def metric_values(entry):
    """Map metric columns to the values of a session or session group in the response."""
    values = entry.get("metricValues", [])
    return {metric_column(value["name"]): value["value"] for value in values}


def main(logdir):
    client = Client(make_app(logdir))

    listing = client.get("/data/plugins_listing").get_json()
    plugin_enabled = bool(listing.get("hparams", {}).get("enabled"))

    experiment = post_json(
        client,
        "/data/plugin/hparams/experiment",
        {"experimentName": "", "hparamsLimit": HPARAMS_LIMIT},
    )
    hparam_names = [info["name"] for info in experiment.get("hparamInfos", [])]
    metric_names = [info["name"] for info in experiment.get("metricInfos", [])]

    col_params = [{"hparam": name, "includeInResult": True} for name in hparam_names]
    col_params += [{"metric": name, "includeInResult": True} for name in metric_names]
    groups = post_json(
        client,
        "/data/plugin/hparams/session_groups",
        {
            "experimentName": "",
            "allowedStatuses": ALL_STATUSES,
            "colParams": col_params,
            "startIndex": 0,
            "sliceSize": PAGE_SIZE,
        },
    )

    sessions = {}
    group_metrics = {}
    for group in groups.get("sessionGroups", []):
        group_metrics[group["name"]] = metric_values(group)
        for session in group.get("sessions", []):
            sessions[session["name"]] = {
                "group": group["name"],
                # The tab shows the group's hparam values, which the plugin copies from the
                # group's first session.
                "hparams": group.get("hparams", {}),
                "metrics": metric_values(session),
                "status": session.get("status", "STATUS_UNKNOWN"),
            }

    result = {
        "plugin_enabled": plugin_enabled,
        "hparams": hparam_names,
        "metrics": [metric_column(name) for name in metric_names],
        "sessions": sessions,
        "groups": group_metrics,
    }
    json.dump(result, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: read_hparams.py LOGDIR")
    main(sys.argv[1])
