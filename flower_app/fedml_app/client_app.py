"""FedML ClientApp: local training / evaluation on this node's partition."""

from __future__ import annotations

from logging import INFO

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common import log

from fedml_app.task import build_model, evaluate, load_partition, setup_torch, train

setup_torch()

app = ClientApp()


def _node_partition(context: Context) -> tuple[int, int]:
    cfg = context.node_config
    try:
        partition_id = int(cfg["partition-id"])
        num_partitions = int(cfg["num-partitions"])
    except KeyError as err:
        raise ValueError("SuperNode must be started with --node-config 'partition-id=<i> num-partitions=<n>'") from err
    return partition_id, num_partitions


def _load(context: Context):
    rc = context.run_config
    partition_id, num_partitions = _node_partition(context)
    data = load_partition(
        partition_id,
        num_partitions,
        str(rc.get("partitioning", "iid")),
        float(rc.get("dirichlet-alpha", 0.5)),
        int(rc.get("seed", 42)),
    )
    model = build_model(int(rc.get("hidden-units", 16)), int(rc.get("seed", 42)))
    return partition_id, data, model


@app.train()
def train_handler(msg: Message, context: Context) -> Message:
    """Train the received global model on the local train split."""
    rc = context.run_config
    partition_id, data, model = _load(context)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())

    config = msg.content["config"]
    server_round = int(config.get("server-round", 0))
    proximal_mu = float(config.get("proximal-mu", 0.0))
    train_loss = train(
        model,
        data,
        epochs=int(rc.get("local-epochs", 2)),
        lr=float(rc.get("learning-rate", 0.05)),
        batch_size=int(rc.get("batch-size", 16)),
        seed=int(rc.get("seed", 42)) * 100_003 + partition_id * 1_009 + server_round,
        proximal_mu=proximal_mu,
    )

    metrics = MetricRecord(
        {
            "train_loss": train_loss,
            "num-examples": len(data.y_train),
            "partition-id": partition_id,
        }
    )
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics})
    log(
        INFO,
        "[fedml] round %d train: partition %d, %d examples, train_loss=%.4f",
        server_round,
        partition_id,
        len(data.y_train),
        train_loss,
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate_handler(msg: Message, context: Context) -> Message:
    """Evaluate the received global model on the local held-out 20 %."""
    partition_id, data, model = _load(context)
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    loss, acc = evaluate(model, data.x_test, data.y_test)
    metrics = MetricRecord(
        {
            "eval_loss": loss,
            "eval_acc": acc,
            "accuracy": acc,
            "num-examples": len(data.y_test),
            "partition-id": partition_id,
        }
    )
    log(
        INFO,
        "[fedml] evaluate: partition %d, %d examples, loss=%.4f acc=%.4f",
        partition_id,
        len(data.y_test),
        loss,
        acc,
    )
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
