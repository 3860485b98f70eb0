"""FedML ServerApp: runs the strategy, reports each round's metrics to FedML (telemetry.Channel), saves the model."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from logging import INFO, WARNING
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.common import log
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAdagrad, FedAvg, FedProx
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords

from fedml_app import telemetry
from fedml_app.task import build_model, setup_torch

setup_torch()

SUPPORTED_STRATEGIES = ("fedavg", "fedprox", "fedadagrad")
SUPPORTED_PARTITIONING = ("iid", "dirichlet")
# Bookkeeping metrics that must not be averaged into the aggregated record.
NON_AGGREGATED_KEYS = ("partition-id",)

app = ServerApp()


def aggregate_metrics(records: list[RecordDict], weighting_key: str) -> MetricRecord:
    """Weighted average (like Flower's default) without bookkeeping keys."""
    metrics = aggregate_metricrecords(records, weighting_key)
    for key in NON_AGGREGATED_KEYS:
        if key in metrics:
            del metrics[key]
    return metrics


class TelemetryMixin:
    """Reports one metrics record after every train / evaluate aggregation (never to the log)."""

    fedml_run_id: str = ""
    flwr_run_id: int | None = None
    num_rounds: int = 0
    channel: telemetry.Channel = telemetry.Channel(None)

    def _emit(self, server_round: int, phase: str, replies: list[Message], agg: MetricRecord | None) -> None:
        self.channel.write(
            telemetry.metrics_record(
                fedml_run_id=self.fedml_run_id,
                flwr_run_id=self.flwr_run_id,
                server_round=server_round,
                num_rounds=self.num_rounds,
                phase=phase,
                aggregated=agg,
                per_node=telemetry.per_node_metrics(replies),
            )
        )

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)  # may be a one-shot iterable
        arrays, metrics = super().aggregate_train(server_round, replies)  # type: ignore[misc]
        self._emit(server_round, "train", replies, metrics)
        return arrays, metrics

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        replies = list(replies)
        metrics = super().aggregate_evaluate(server_round, replies)  # type: ignore[misc]
        self._emit(server_round, "evaluate", replies, metrics)
        return metrics


class FedMLFedAvg(TelemetryMixin, FedAvg):
    pass


class FedMLFedProx(TelemetryMixin, FedProx):
    pass


class FedMLFedAdagrad(TelemetryMixin, FedAdagrad):
    pass


class NodesTimeout(RuntimeError):
    """Fewer nodes than the run needs stayed connected for longer than `nodes-timeout`."""


class FastPollGrid:
    """Delegating Grid wrapper whose ``send_and_receive`` polls every 0.5 s.

    Flower 1.42's HTTP Grid sleeps a fixed 3 s between ``pull_messages`` calls,
    which adds up to ~3 s of idle time to every train/evaluate phase. This
    wrapper uses only the public Grid API (``push_messages``/``pull_messages``).

    It also watches the strategy wait for nodes (Flower polls ``get_node_ids`` every second,
    for ever, until ``min-nodes`` are connected): FedML is told which are connected whenever
    that changes, and the run fails after ``nodes_timeout`` seconds of waiting.
    """

    def __init__(
        self,
        grid: Grid,
        poll_interval: float = 0.5,
        *,
        min_nodes: int = 0,
        nodes_timeout: float = 0.0,
        report: Callable[[list[int], bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._grid = grid
        self._poll_interval = poll_interval
        self._min_nodes = min_nodes
        self._nodes_timeout = nodes_timeout
        self._report = report
        self._clock = clock
        self._waiting_since: float | None = None
        self._reported: list[int] | None = None

    def __getattr__(self, name: str) -> object:
        return getattr(self._grid, name)

    def get_node_ids(self) -> Iterable[int]:
        nodes = sorted(self._grid.get_node_ids())
        if len(nodes) >= self._min_nodes:
            if self._waiting_since is not None:
                self._waiting_since = None
                self._tell(nodes, timed_out=False)  # the wait is over
            return nodes
        now = self._clock()
        if self._waiting_since is None:
            self._waiting_since = now
        waited = now - self._waiting_since
        if self._nodes_timeout > 0 and waited >= self._nodes_timeout:
            self._tell(nodes, timed_out=True)
            raise NodesTimeout(
                f"waited {waited:.0f} s for nodes: {len(nodes)} connected (minimum required: {self._min_nodes})"
            )
        if nodes != self._reported:
            self._tell(nodes, timed_out=False)
        return nodes

    def _tell(self, nodes: list[int], *, timed_out: bool) -> None:
        self._reported = nodes
        if self._report is not None:
            self._report(nodes, timed_out)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        msg_ids = set(self._grid.push_messages(messages))
        end_time = time.time() + (timeout if timeout is not None else 0.0)
        replies: list[Message] = []
        while timeout is None or time.time() < end_time:
            res = list(self._grid.pull_messages(msg_ids))
            replies.extend(res)
            msg_ids.difference_update(m.metadata.reply_to_message_id for m in res)
            if not msg_ids:
                break
            time.sleep(self._poll_interval)
        return replies


def make_strategy(rc: dict) -> FedAvg:
    name = str(rc.get("strategy", "fedavg")).strip().lower()
    min_nodes = int(rc.get("min-nodes", 2))
    common = dict(
        fraction_train=float(rc.get("fraction-train", 1.0)),
        fraction_evaluate=float(rc.get("fraction-evaluate", 1.0)),
        min_train_nodes=min_nodes,
        min_evaluate_nodes=min_nodes,
        min_available_nodes=min_nodes,
        train_metrics_aggr_fn=aggregate_metrics,
        evaluate_metrics_aggr_fn=aggregate_metrics,
    )
    if name == "fedavg":
        return FedMLFedAvg(**common)
    if name == "fedprox":
        return FedMLFedProx(**common, proximal_mu=float(rc.get("proximal-mu", 0.01)))
    if name == "fedadagrad":
        return FedMLFedAdagrad(
            **common,
            eta=float(rc.get("server-learning-rate", 0.1)),
            eta_l=float(rc.get("learning-rate", 0.05)),
        )
    raise ValueError(f"Unsupported strategy {name!r}; expected one of {SUPPORTED_STRATEGIES}")


def resolve_artifact_dir(raw: str) -> Path:
    path = Path(raw).expanduser() if raw.strip() else Path.cwd() / "artifacts"
    path = path.resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@app.main()
def main(grid: Grid, context: Context) -> None:
    rc = context.run_config
    fedml_run_id = str(rc.get("current-run-id", "") or "")
    num_rounds = int(rc.get("num-server-rounds", 5))
    seed = int(rc.get("seed", 42))
    partitioning = str(rc.get("partitioning", "iid"))
    if partitioning not in SUPPORTED_PARTITIONING:
        raise ValueError(f"Unsupported partitioning {partitioning!r}; expected one of {SUPPORTED_PARTITIONING}")
    if num_rounds < 1:
        raise ValueError(f"num-server-rounds must be >= 1, got {num_rounds}")

    model = build_model(int(rc.get("hidden-units", 16)), seed)
    initial_arrays = ArrayRecord(model.state_dict())

    strategy = make_strategy(rc)
    strategy.fedml_run_id = fedml_run_id
    strategy.flwr_run_id = context.run_id
    strategy.num_rounds = num_rounds
    strategy.channel = channel = telemetry.Channel.for_run(fedml_run_id)

    log(
        INFO,
        "FedML run %s (Flower run %s): strategy=%s rounds=%d partitioning=%s",
        fedml_run_id or "-",
        context.run_id,
        type(strategy).__name__,
        num_rounds,
        partitioning,
    )

    min_nodes = int(rc.get("min-nodes", 2))

    def report_nodes(connected: list[int], timed_out: bool) -> None:
        channel.write(
            telemetry.nodes_record(
                fedml_run_id=fedml_run_id,
                flwr_run_id=context.run_id,
                connected=connected,
                required=min_nodes,
                timed_out=timed_out,
            )
        )

    watched = FastPollGrid(
        grid, min_nodes=min_nodes, nodes_timeout=float(rc.get("nodes-timeout", 600)), report=report_nodes
    )
    result = strategy.start(
        grid=watched,  # type: ignore[arg-type]
        initial_arrays=initial_arrays,
        num_rounds=num_rounds,
        timeout=float(rc.get("round-timeout", 600)),
        train_config=ConfigRecord({}),
        evaluate_config=ConfigRecord({}),
    )

    # Save the final global model as the run's artifact.
    out_dir = resolve_artifact_dir(str(rc.get("artifact-dir", "") or ""))
    name = re.sub(r"[^A-Za-z0-9._-]", "_", fedml_run_id) or f"flwr-{context.run_id}"
    out_path = out_dir / f"global_model_{name}.pt"
    final_arrays = result.arrays if len(result.arrays) > 0 else initial_arrays
    if final_arrays is initial_arrays:
        log(WARNING, "No successful training round; saving the initial model")
    torch.save(final_arrays.to_torch_state_dict(), out_path)
    log(INFO, "Saved final global model as %s", out_path.name)  # no server paths in a log participants read
    channel.write(telemetry.artifact_record(fedml_run_id=fedml_run_id, flwr_run_id=context.run_id, path=str(out_path)))
