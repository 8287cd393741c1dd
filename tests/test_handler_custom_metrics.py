"""TorchServe's custom metrics API from a handler written for TorchServe 0.12, unchanged, on a
real server: ``add_metric_to_cache`` then ``get_metric(...).add_or_update``, ``update`` with
``Dimension`` objects, ``add_counter`` / ``add_time`` / ``add_size`` / ``add_percent`` /
``add_metric``, and ``MetricsCacheKeyError`` for an unknown metric; what it records reaches a
metrics plugin (``hookserve_record_metrics``) with its unit, type and dimensions."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from helpers import Server, archive, fake_distribution, post, pythonpath, serving, wait_for

HANDLER = """
import torch

from ts.metrics.dimension import Dimension
from ts.metrics.metric_cache_errors import MetricsCacheKeyError
from ts.metrics.metric_type_enum import MetricTypes
from ts.torch_handler.base_handler import BaseHandler


class MetricsHandler(BaseHandler):
    def initialize(self, context):
        super().initialize(context)
        metrics = context.metrics
        metrics.add_metric_to_cache("Rows", unit="count", dimension_names=["ModelName", "Kind"], metric_type=MetricTypes.COUNTER)
        metrics.add_metric_to_cache("Load", unit="percent", dimension_names=[], metric_type=MetricTypes.GAUGE)
        try:
            metrics.get_metric("Never", MetricTypes.HISTOGRAM)
        except MetricsCacheKeyError as exc:
            self.missing = str(exc)

    def preprocess(self, data):
        return torch.tensor([row["body"] for row in data], dtype=torch.float32)

    def postprocess(self, data):
        metrics = self.context.metrics
        metrics.get_metric("Rows", MetricTypes.COUNTER).add_or_update(len(data), ["m", "batch"])
        metrics.get_metric("Rows", MetricTypes.COUNTER).add_or_update(-1, ["m", "batch"])  # dropped: a counter
        metrics.get_metric("Rows", MetricTypes.COUNTER).add_or_update(1, ["only one"])  # dropped: dimensions
        metrics.get_metric("Load", MetricTypes.GAUGE).update(42.5, dimensions=[Dimension("Host", "h1")])
        metrics.add_counter("Calls", 1, dimensions=[Dimension("Route", "predict")])
        metrics.add_time("Think", 1.5, None, "ms")
        metrics.add_size("Payload", 0.25, None, "MB")
        metrics.add_percent("Busy", 80)
        metrics.add_metric("Custom", 7, "items", None, [Dimension("A", "b")], MetricTypes.HISTOGRAM)
        return [{"sum": row.sum().item(), "missing": self.missing} for row in data]
"""

SINK = """
import json
import os

from hookserve.hookspecs import hookimpl


@hookimpl
def hookserve_record_metrics(metrics):
    with open(os.environ["METRICS_SINK_FILE"], "a") as out:
        for m in metrics:
            out.write(json.dumps({"name": m.name, "value": m.value, "unit": m.unit, "type": m.metric_type,
                                  "dimensions": m.dimensions, "model": m.model_name}) + "\\n")
"""


def test_torchserve_custom_metrics_reach_a_metrics_plugin(tmp_path: Path) -> None:
    site = tmp_path / "site"
    fake_distribution(site, "metrics-sink", "0.1", {"sink": "metrics_sink_mod"}, {"metrics_sink_mod": SINK})
    torch.jit.script(torch.nn.Identity()).save(str(tmp_path / "identity.pt"))
    archive(
        tmp_path,
        "metered",
        "handler.py",
        files={"handler.py": HANDLER},
        flags=["--serialized-file", str(tmp_path / "identity.pt")],
    )
    sink = tmp_path / "metrics.jsonl"
    env = {"PYTHONPATH": pythonpath(site), "METRICS_SINK_FILE": str(sink)}
    args = ["--model-store", str(tmp_path / "store"), "--workers", "1", "--models", "metered=metered.mar"]
    with serving(Server(args, tmp_path, env=env)) as server:
        reply = post(server, "/predictions/metered", json=[1.0, 2.0])
        assert reply.status_code == 200, reply.text
        assert reply.json()["sum"] == 3.0
        assert "name 'Never' doesn't exist" in reply.json()["missing"]

        def handler_records() -> list[dict]:
            lines = sink.read_text().splitlines() if sink.exists() else []
            return [
                r
                for r in map(json.loads, lines)
                if r["model"] == "metered"
                and r["name"] not in {"HandlerTime", "PredictionTime", "ts_inference_latency_microseconds"}
            ]

        wait_for(lambda: len(handler_records()) >= 7, what="the handler's metrics in the sink")
    records = {r["name"]: r for r in handler_records()}
    assert sorted(records) == ["Busy", "Calls", "Custom", "Load", "Payload", "Rows", "Think"]
    assert [r["value"] for r in handler_records() if r["name"] == "Rows"] == [1.0]  # the two bad updates dropped
    assert records["Rows"] | {"model": None} == {
        "name": "Rows",
        "value": 1.0,
        "unit": "count",
        "type": "COUNTER",
        "dimensions": {"ModelName": "m", "Kind": "batch"},
        "model": None,
    }
    assert (
        records["Load"]["value"],
        records["Load"]["unit"],
        records["Load"]["type"],
        records["Load"]["dimensions"],
    ) == (42.5, "percent", "GAUGE", {"Host": "h1"})
    assert (records["Calls"]["unit"], records["Calls"]["type"], records["Calls"]["dimensions"]) == (
        "count",
        "COUNTER",
        {"Route": "predict"},
    )
    assert (records["Think"]["value"], records["Think"]["unit"], records["Think"]["type"]) == (1.5, "ms", "GAUGE")
    assert (records["Payload"]["value"], records["Payload"]["unit"]) == (0.25, "MB")
    assert (records["Busy"]["value"], records["Busy"]["unit"]) == (80.0, "percent")
    assert (
        records["Custom"]["value"],
        records["Custom"]["unit"],
        records["Custom"]["type"],
        records["Custom"]["dimensions"],
    ) == (7.0, "items", "HISTOGRAM", {"A": "b"})
