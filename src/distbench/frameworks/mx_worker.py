# mypy: ignore-errors
"""MXNet worker: ``<mxnet venv>/bin/python mx_worker.py JOB.json``.

Runs inside the MXNet environment (``distbench env install mxnet``: MXNet 1.9.1, NumPy
1.23.5); it imports MXNet and NumPy, never distbench. Start at ``main``. The model is rebuilt
from the architecture spec with native Gluon layers (channels-first, the same weight
layouts as PyTorch), hybridized, its weights set from the job's .npz. Roles come from the
launcher through ``DMLC_ROLE``: ``scheduler`` and ``server`` processes only import MXNet,
which serves the parameter-server protocol until the workers finish. Modes:

- ``compare``: local (no kvstore); loss on batch 0 in inference mode, then K SGD steps.
- ``train`` ``ps-sync-join``: kvstore ``dist_sync``; gradients pushed to the server, summed
  there and pulled back (``comm``), then the SGD update on the worker (``update``).
- ``train`` ``ps-async``: kvstore ``dist_async``; MXNet requires the update on the server, so
  each push applies that worker's gradient at once (Downpour) and the pull returns the
  weights: ``comm`` holds push, server update and pull, marked in
  ``extra.unseparated_phases``.

To a goal (``--target-accuracy`` / ``--epochs``: ``goal`` and ``held_out`` in the job) the
step loop follows ``measurement/goal.py``'s rule, as a PyTorch rank does (``job_goal``);
worker 0 evaluates its weights (in inference mode: Gluon outside ``autograd.record``).
``ps-sync-join``: every worker pushes a flag to one extra key of the kvstore, worker 0's
decision and the others' zeros, and pulls back their sum, so all stop at the same step.
``ps-async``: the
server applies every push at once, so no key can carry a flag; worker 0 leaves a file in the
run directory when the target is met and the others stop at their next step
(``StopFile``). Worker 0's weights then hold every worker's updates, not its own steps
alone: the point is placed at their number, counted from the workers' step records
(``UpdateCounter``), at the training time of the update clock, as on the PyTorch
asynchronous parameter server.

MXNet's engine is asynchronous, so the phases are closed at synchronization points
(``wait_to_read`` / ``nd.waitall``), as ``torch.cuda.synchronize`` does on GPUs.

With a ``profile`` window in the job (``--profile-ops``), MXNet's profiler records the
window's steps (``OpProfiler``); its Chrome trace is kept and its operator events written
for the launcher to summarize.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == HERE:
    sys.path.pop(0)


def _load_common():
    spec = importlib.util.spec_from_file_location(
        "distbench_adapter_common", HERE / "adapter_common.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


common = _load_common()

import numpy as np  # noqa: E402

FRAMEWORK = "mxnet"


def import_mx():
    import mxnet as mx
    from mxnet import autograd, gluon

    return mx, autograd, gluon


# ------------------------------------------------------------------------------ the model


class Builder:
    """Turns spec nodes into Gluon blocks, remembering which parameter holds which weight."""

    def __init__(self, mx, gluon, dropout: bool) -> None:
        self.mx, self.gluon, self.dropout = mx, gluon, dropout
        self.params: dict[str, object] = {}

    def sequence(self, nodes):
        seq = self.gluon.nn.HybridSequential()
        for node in nodes:
            block = getattr(self, "op_" + node["op"])(node)
            if block is not None:
                seq.add(block)
        return seq

    def op_conv(self, node):
        nn = self.gluon.nn
        block = nn.Conv2D(
            node["out"],
            node["kernel"],
            strides=node["stride"],
            padding=node["padding"],
            groups=node["groups"],
            use_bias=node["bias"],
            in_channels=node["in"],
        )
        self.params[node["name"] + ".weight"] = block.weight
        if node["bias"]:
            self.params[node["name"] + ".bias"] = block.bias
        return block

    def op_bn(self, node):
        # Gluon's momentum is the weight of the old value: PyTorch's 0.1 is Gluon's 0.9.
        block = self.gluon.nn.BatchNorm(
            momentum=1.0 - node["momentum"], epsilon=node["eps"], in_channels=node["num"]
        )
        name = node["name"]
        self.params.update(
            {
                f"{name}.weight": block.gamma,
                f"{name}.bias": block.beta,
                f"{name}.running_mean": block.running_mean,
                f"{name}.running_var": block.running_var,
            }
        )
        return block

    def op_relu(self, node):
        return self.gluon.nn.Activation("relu")

    def op_maxpool(self, node):
        return self.gluon.nn.MaxPool2D(node["kernel"], node["stride"], node["padding"])

    def op_adaptive_avgpool(self, node):
        _, h, w = node["in_shape"]
        out = node["out"]
        if h == out and w == out:
            return None
        return self.gluon.nn.HybridLambda(
            lambda F, x: F.contrib.AdaptiveAvgPooling2D(x, output_size=out)
        )

    def op_flatten(self, node):
        return self.gluon.nn.Flatten()

    def op_linear(self, node):
        block = self.gluon.nn.Dense(node["out"], use_bias=node["bias"], in_units=node["in"])
        self.params[node["name"] + ".weight"] = block.weight
        if node["bias"]:
            self.params[node["name"] + ".bias"] = block.bias
        return block

    def op_dropout(self, node):
        if not self.dropout or node["p"] == 0:
            return None
        return self.gluon.nn.Dropout(node["p"])

    def op_residual(self, node):
        body = self.sequence(node["body"])
        shortcut = self.sequence(node["shortcut"]) if node["shortcut"] else None
        return make_residual(self.gluon, body, shortcut)


def make_residual(gluon, body, shortcut):
    class Residual(gluon.HybridBlock):
        def __init__(self) -> None:
            super().__init__()
            self.body = body
            self.shortcut = shortcut

        def hybrid_forward(self, F, x):
            identity = x if self.shortcut is None else self.shortcut(x)
            return F.relu(self.body(x) + identity)

    return Residual()


def build_model(mx, gluon, spec, dropout: bool = True):
    builder = Builder(mx, gluon, dropout)
    net = builder.sequence(spec["nodes"])
    net.initialize(mx.init.Zero())
    return net, builder.params


def assign_weights(mx, params, arrays, dtype="float32") -> None:
    for key, param in params.items():
        if key not in arrays:
            raise ValueError(f"weights file lacks {key}")
        if tuple(param.shape) != arrays[key].shape:
            raise ValueError(f"{key}: model shape {tuple(param.shape)} != file {arrays[key].shape}")
        param.set_data(mx.nd.array(arrays[key], dtype=dtype))


def read_weights(params):
    return {key: param.data().asnumpy().copy() for key, param in params.items()}


def make_trainer(gluon, net, job, kvstore, update_on_kvstore):
    options = {
        "learning_rate": job["lr"],
        "momentum": job.get("momentum", 0.0),
        "wd": job.get("weight_decay", 0.0),
    }
    return gluon.Trainer(
        net.collect_params(), "sgd", options, kvstore=kvstore, update_on_kvstore=update_on_kvstore
    )


# ------------------------------------------------------------------------------ compare


def run_compare(job) -> None:
    """For each precision: load, inference-mode loss on batch 0, K SGD steps, weights."""
    mx, autograd, gluon = import_mx()
    arrays, info = {}, {"framework": FRAMEWORK, "versions": {"mxnet": mx.__version__}}
    weights = common.load_arrays(job["weights"])
    batches = common.load_arrays(job["batches"])
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    for precision in job["precisions"]:
        net, params = build_model(mx, gluon, job["spec"], dropout=False)
        net.cast(precision)
        assign_weights(mx, params, {k: v.astype(precision) for k, v in weights.items()}, precision)
        net.hybridize(static_alloc=True, static_shape=True)
        arrays.update({f"init:{precision}:{k}": v for k, v in read_weights(params).items()})
        trainer = make_trainer(gluon, net, job, None, False)
        xs = batches["x"].astype(precision)
        ys = batches["y"].astype(precision)
        eval_loss = float(
            loss_fn(net(mx.nd.array(xs[0], dtype=precision)), mx.nd.array(ys[0], dtype=precision))
            .mean()
            .asscalar()
        )
        losses = []
        for i in range(xs.shape[0]):
            x = mx.nd.array(xs[i], dtype=precision)
            y = mx.nd.array(ys[i], dtype=precision)
            with autograd.record():
                loss = loss_fn(net(x), y).mean()
            loss.backward()
            trainer.step(1)  # the loss is already a mean over the batch
            losses.append(float(loss.asscalar()))
        arrays.update({f"final:{precision}:{k}": v for k, v in read_weights(params).items()})
        mapped = {id(p) for p in params.values()}
        info[precision] = {
            "losses": losses,
            "eval_loss": eval_loss,
            "unmapped_variables": [
                n for n, p in net.collect_params().items() if id(p) not in mapped
            ],
            "native_shapes": {k: list(p.shape) for k, p in params.items()},
        }
    np.savez(job["out"] + ".npz", **arrays)
    common.write_json(job["out"] + ".json", info)


# ------------------------------------------------------------------------------ training

KVSTORES = {"sequential": None, "ps-sync-join": "dist_sync", "ps-async": "dist_async"}


def run_train(job, index: int) -> None:
    recorder = common.Recorder(job["run_dir"], index, "worker", FRAMEWORK, job.get("threads"))
    try:
        mx, autograd, gluon = import_mx()
        mode = job["strategy"]
        kvstore = mx.kv.create(KVSTORES[mode]) if KVSTORES[mode] else None
        net, params = build_model(mx, gluon, job["spec"])
        assign_weights(mx, params, common.load_arrays(job["weights"]))
        net.hybridize(static_alloc=True, static_shape=True)
        # dist_async must update on the server; dist_sync updates on the worker, so the
        # push/pull of gradients (comm) and the update are timed apart.
        trainer = make_trainer(gluon, net, job, kvstore, update_on_kvstore=mode == "ps-async")
        if kvstore is not None:
            start_kvstore(trainer, kvstore)
        batches = common.Batches(job["batches"][index])
        goal = _goal(mx, job, index, net, kvstore, mode)
        _loop(mx, autograd, gluon, job, net, trainer, recorder, batches, mode, goal)
        recorder.summary({**_summary_extra(mx, kvstore, mode), **goal.summary()})
    except Exception as exc:
        recorder.error(f"rank {index}: {type(exc).__name__}: {exc}")
        raise
    finally:
        recorder.close()


def start_kvstore(trainer, kvstore) -> None:
    """Put the parameters in the kvstore and wait for every worker before the first step.
    Gluon does both lazily inside the first step, and dist_sync runs of the same job then
    differed from their first step on (one run in three; losses apart by 1e-3 at once),
    as if a worker's first gradients could reach the server before every worker had
    joined. With the barrier first, repeated runs give the same losses."""
    trainer._init_kvstore()
    trainer._init_params()
    kvstore._barrier()


def _goal(mx, job, rank: int, net, kvstore, mode: str):
    """The run's stopping rule with worker 0's evaluation and the mode's agreement."""
    held_out = common.HeldOut(job["held_out"]) if job.get("goal") else None

    def evaluate():
        return held_out.evaluate(lambda x: net(mx.nd.array(x)).asnumpy())

    agree = None
    if held_out is not None and mode == "ps-sync-join":
        agree = KvstoreAgreement(mx, kvstore).agree
    elif held_out is not None and mode == "ps-async":
        agree = StopFile(job["run_dir"]).agree
    return common.job_goal(job, rank, evaluate, agree=agree)


class KvstoreAgreement:
    """Worker 0's decision on every worker of a ``dist_sync`` kvstore: a key of its own,
    pushed by all (the server sums the pushes of a round) and pulled back."""

    KEY = 1_000_000  # far past the Trainer's parameter indices

    def __init__(self, mx, kvstore) -> None:
        self.mx, self.kvstore = mx, kvstore
        self.value = None

    def agree(self, reached: bool) -> bool:
        if self.value is None:  # at the first evaluation, once the Trainer has its keys
            self.value = self.mx.nd.zeros((1,))
            self.kvstore.init(self.KEY, self.value)
        # only worker 0 evaluates, so the others' flags are 0 (the kvstore's own ranks
        # follow the order workers joined its scheduler, not distbench's)
        flag = self.mx.nd.array([1.0 if reached else 0.0])
        self.kvstore.push(self.KEY, flag)
        self.kvstore.pull(self.KEY, out=self.value)
        return float(self.value.asscalar()) > 0


class StopFile:
    """The asynchronous stop: worker 0 writes the file; every worker stops once it exists."""

    def __init__(self, run_dir: str) -> None:
        self.path = Path(run_dir) / "goal_reached"

    def agree(self, reached: bool) -> bool:
        if reached:
            self.path.touch()
        return reached

    def seen(self) -> bool:
        return self.path.exists()


class UpdateCounter:
    """Updates the server has applied by a moment, counted from every worker's step records
    (``rank{R}.jsonl``, one flushed line per step, read incrementally): the steps that ended
    before it. Worker 0's pulled weights hold them (an update still in flight may be
    missed: at most one per worker)."""

    def __init__(self, run_dir: str, workers: int) -> None:
        self.files = [Path(run_dir) / f"rank{r}.jsonl" for r in range(workers)]
        self.offsets = [0] * workers
        self.ends: list[float] = []

    def _read(self) -> None:
        for i, path in enumerate(self.files):
            if not path.exists():
                continue
            with path.open("rb") as f:
                f.seek(self.offsets[i])
                data = f.read()
            complete = data[: data.rfind(b"\n") + 1]
            self.offsets[i] += len(complete)
            for line in complete.splitlines():
                record = json.loads(line)
                if record.get("kind") == "step":
                    self.ends.append(record["t"] + record["step_time"])

    def by(self, moment: float) -> int:
        self._read()
        return sum(1 for end in self.ends if end <= moment)


def _loop(mx, autograd, gluon, job, net, trainer, recorder, batches, mode, goal) -> None:
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    timer = common.Phases()
    workers = job["workers"]
    window = common.op_window(job)
    profiler = OpProfiler(mx, job, recorder.rank) if window else None
    asynchronous = mode == "ps-async" and goal.active
    stop_file = StopFile(job["run_dir"]) if asynchronous else None
    counter = (
        UpdateCounter(job["run_dir"], workers) if asynchronous and recorder.rank == 0 else None
    )
    for step in goal.steps():
        if window and window.starts(step):
            profiler.start()
        timer.start_step()
        xb, yb = batches.next()
        x, y = mx.nd.array(xb), mx.nd.array(yb.astype(np.float32))
        mx.nd.waitall()
        timer.mark("data")
        with autograd.record():
            loss = loss_fn(net(x), y).mean()
        loss.wait_to_read()
        timer.mark("forward")
        loss.backward()
        mx.nd.waitall()
        timer.mark("backward")
        if mode == "ps-sync-join":  # the server sums the gradients; update(N) takes their mean
            trainer.allreduce_grads()
            mx.nd.waitall()
            timer.mark("comm")
            trainer.update(workers)
        else:  # sequential: a local update; async: push (the server applies it) and pull
            trainer.step(1)
        mx.nd.waitall()
        timer.mark("comm" if mode == "ps-async" else "update")
        step_time, phases = timer.end_step()
        extra = window.step_extra(step) if window else {}
        recorder.step(
            step,
            step < job["warmup"],
            timer.start_wall,
            step_time,
            len(yb),
            phases,
            loss=float(loss.asscalar()),
            **extra,
        )
        if window and window.after_step(step, timer.start_wall, step_time):
            profiler.finish(window.span)
        version = counter.by(timer.start_wall + step_time) if counter else None
        goal.after_step(step, step_time, float(loss.asscalar()), version)
        if stop_file is not None and stop_file.seen():
            goal.stop()


class OpProfiler:
    """MXNet's profiler over the job's profile window. Its dump is a Chrome trace (written
    as the rank's ``trace_rank{R}.json``) whose timestamps are wall-clock microseconds;
    ``finish`` reads the ``operator`` events back. The launcher turns operator bulking off
    for profiled runs (``MXNET_EXEC_BULK_EXEC_*``): bulked segments of a hybridized graph
    show up as one ``ImperativeBulk`` event with no operator names."""

    def __init__(self, mx, job, rank: int) -> None:
        self.mx, self.run_dir, self.rank = mx, job["run_dir"], rank
        self.trace = str(Path(job["run_dir"]) / f"trace_rank{rank}.json")

    def start(self) -> None:
        self.mx.profiler.set_config(
            profile_symbolic=True,
            profile_imperative=True,
            profile_memory=False,
            profile_api=False,
            aggregate_stats=False,
            filename=self.trace,
        )
        self.mx.profiler.set_state("run")

    def finish(self, span) -> None:
        self.mx.profiler.set_state("stop")
        self.mx.profiler.dump(finished=True)
        trace = json.loads(Path(self.trace).read_text(encoding="utf-8"))
        common.write_op_events(
            self.run_dir,
            self.rank,
            FRAMEWORK,
            "mx.profiler",
            trace_op_events(trace.get("traceEvents", [])),
            span,
        )


def trace_op_events(trace_events) -> list:
    """Operator events of a Chrome trace: ``X`` events, and ``B``/``E`` pairs per thread."""
    intervals, open_events = [], {}
    # The dump is not in time order; at equal times an operator ends before the next begins.
    ordered = sorted(
        (e for e in trace_events if e.get("cat") == "operator" and "ts" in e),
        key=lambda e: (e["ts"], 0 if e["ph"] == "E" else 1),
    )
    for event in ordered:
        thread = (event.get("pid"), event.get("tid"))
        if event["ph"] == "X":
            intervals.append((event["name"], event["ts"], event["ts"] + event["dur"], thread))
        elif event["ph"] == "B":
            open_events.setdefault(thread, []).append(event)
        elif event["ph"] == "E" and open_events.get(thread):
            begin = open_events[thread].pop()
            intervals.append((begin["name"], begin["ts"], event["ts"], thread))
    return common.self_times(intervals)


def _summary_extra(mx, kvstore, mode: str):
    extra = {"framework_versions": {"mxnet": mx.__version__}, "engine": "Gluon, no kvstore"}
    if kvstore is not None:
        extra.update(
            engine=f"Gluon, kvstore {kvstore.type}, {kvstore.num_workers} workers",
            kvstore_rank=kvstore.rank,
        )
    if mode == "ps-async":
        extra["unseparated_phases"] = {"comm": ["push", "update", "pull"]}
    return extra


# ------------------------------------------------------------------------------ entry point


def main() -> int:
    job = common.read_job(sys.argv[1])
    role = os.environ.get("DMLC_ROLE", "worker")
    try:
        if job["mode"] == "compare":
            run_compare(job)
        elif role in ("scheduler", "server"):
            import_mx()  # importing MXNet with DMLC_ROLE set runs the server until done
        else:
            run_train(job, int(os.environ.get("DISTBENCH_INDEX", "0")))
    except Exception:
        import traceback

        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
