# mypy: ignore-errors
"""TensorFlow worker: ``<tensorflow venv>/bin/python tf_worker.py JOB.json``.

Runs inside the TensorFlow environment (``distbench env install tensorflow``); it imports
TensorFlow, Keras 3 and NumPy, never distbench. Start at ``main``. The model is rebuilt from
the architecture spec with native Keras layers (channels-last), its weights assigned from the
job's .npz (already in Keras layout, keyed by PyTorch names). Modes:

- ``compare``: no strategy; loss on batch 0 in inference mode, then K SGD steps on the
  job's batches; writes the weights as loaded, the per-step losses and the final weights.
- ``train`` with ``strategy`` ``allreduce``: ``MultiWorkerMirroredStrategy`` (ring all-reduce over
  gRPC, one process per worker, ``TF_CONFIG`` from the launcher) and a custom training loop
  (Keras 3's ``fit`` fails under this strategy). The step is two compiled functions so
  the phases can be timed: forward+backward (one function: TensorFlow cannot stop between
  them without recomputing, so both are charged to ``backward`` and the record says so in
  ``extra.unseparated_phases``), the gradient all-reduce (``comm``, timed inside the graph
  with ``tf.timestamp``; it must run in the replica context of the gradients), the SGD
  update. Control dependencies make the all-reduce wait for every gradient, so it does not
  overlap the backward pass here.
- ``train`` with ``strategy`` ``ps-async``: ``ParameterServerStrategy``; the coordinator (this
  program with ``role`` ``chief``) schedules steps on the workers through a
  ``ClusterCoordinator``; worker and ps processes only serve. Each step reports its own
  start and end as measured on the worker (``tf.timestamp``) and which worker ran it, and
  the coordinator writes every worker's record lines (step time: the worker's cycle from
  the end of its previous step, idle time included as ``wait``).

To a goal (``--target-accuracy`` / ``--epochs``: ``goal`` and ``held_out`` in the job) the
step loop follows ``measurement/goal.py``'s rule, as a PyTorch rank does (``job_goal``):
``sequential`` and ``allreduce`` evaluate on worker 0 (``allreduce`` sums its decision over
every worker with an all-reduce, so all stop at the same step). ``ps-async`` counts in
updates: the
coordinator schedules the steps up to the next evaluation, waits for them, evaluates the
weights on the parameter server (they then hold exactly those updates) and goes on or
stops; training time is the wall-clock span of each such batch of updates, measured on the
workers, so the coordinator's evaluations and its waits between batches are left out.

With a ``profile`` window in the job (``--profile-ops``, ``sequential`` and ``allreduce`` only),
TensorFlow's profiler records the window's steps (``OpProfiler``) and the worker writes the
operator events it found for the launcher to summarize.

SGD is written out (``v -= lr * (g + wd v)``, PyTorch's momentum convention) rather than a
Keras optimizer, so that the update is PyTorch's to the last operation.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Sibling modules (compare.py, launch.py, ...) must not shadow anything TensorFlow imports.
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
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

FRAMEWORK = "tensorflow"


def import_tf(threads: int | None):
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    import keras

    return tf, keras


# ------------------------------------------------------------------------------ the model


def _pool_matrix(size_in: int, size_out: int) -> np.ndarray:
    """PyTorch's adaptive average pooling along one axis as an (out, in) matrix."""
    matrix = np.zeros((size_out, size_in), dtype=np.float32)
    for i in range(size_out):
        start = (i * size_in) // size_out
        end = -((-(i + 1) * size_in) // size_out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


class Builder:
    """Applies spec nodes to Keras tensors, remembering which variable holds which weight."""

    def __init__(self, tf, keras, dropout: bool) -> None:
        self.tf, self.keras, self.dropout = tf, keras, dropout
        self.variables: dict[str, object] = {}

    def apply(self, nodes, x):
        for node in nodes:
            x = getattr(self, "op_" + node["op"])(node, x)
        return x

    def op_conv(self, node, x):
        layers = self.keras.layers
        if node["padding"]:
            x = layers.ZeroPadding2D(node["padding"])(x)
        layer = layers.Conv2D(
            node["out"],
            node["kernel"],
            strides=node["stride"],
            padding="valid",
            groups=node["groups"],
            use_bias=node["bias"],
            name=_safe(node["name"]),
        )
        x = layer(x)
        self.variables[node["name"] + ".weight"] = layer.kernel
        if node["bias"]:
            self.variables[node["name"] + ".bias"] = layer.bias
        return x

    def op_bn(self, node, x):
        # Keras' momentum is the weight of the old value: PyTorch's 0.1 is Keras' 0.9.
        layer = self.keras.layers.BatchNormalization(
            momentum=1.0 - node["momentum"], epsilon=node["eps"], name=_safe(node["name"])
        )
        x = layer(x)
        name = node["name"]
        self.variables.update(
            {
                f"{name}.weight": layer.gamma,
                f"{name}.bias": layer.beta,
                f"{name}.running_mean": layer.moving_mean,
                f"{name}.running_var": layer.moving_variance,
            }
        )
        return x

    def op_relu(self, node, x):
        return self.keras.layers.ReLU()(x)

    def op_maxpool(self, node, x):
        pad = node["padding"]
        if pad:  # PyTorch pads max-pooling with -inf, not zeros
            tf = self.tf
            x = self.keras.layers.Lambda(
                lambda t: tf.pad(
                    t, [[0, 0], [pad, pad], [pad, pad], [0, 0]], constant_values=float("-inf")
                )
            )(x)
        return self.keras.layers.MaxPooling2D(node["kernel"], node["stride"], "valid")(x)

    def op_adaptive_avgpool(self, node, x):
        _, h, w = node["in_shape"]
        out = node["out"]
        if h == out and w == out:
            return x
        if h % out == 0 and w % out == 0:
            return self.keras.layers.AveragePooling2D((h // out, w // out))(x)
        ph, pw = _pool_matrix(h, out), _pool_matrix(w, out)
        tf = self.tf
        return self.keras.layers.Lambda(
            lambda t: tf.einsum(
                "nhwc,oh,pw->nopc", t, tf.constant(ph, t.dtype), tf.constant(pw, t.dtype)
            )
        )(x)

    def op_flatten(self, node, x):
        return self.keras.layers.Flatten()(x)

    def op_linear(self, node, x):
        layer = self.keras.layers.Dense(
            node["out"], use_bias=node["bias"], name=_safe(node["name"])
        )
        x = layer(x)
        self.variables[node["name"] + ".weight"] = layer.kernel
        if node["bias"]:
            self.variables[node["name"] + ".bias"] = layer.bias
        return x

    def op_dropout(self, node, x):
        if not self.dropout or node["p"] == 0:
            return x
        return self.keras.layers.Dropout(node["p"])(x)

    def op_residual(self, node, x):
        body = self.apply(node["body"], x)
        shortcut = self.apply(node["shortcut"], x) if node["shortcut"] else x
        out = self.keras.layers.Add()([body, shortcut])
        return self.keras.layers.ReLU()(out)


def _safe(name: str) -> str:
    return name.replace(".", "_")


def build_model(tf, keras, spec, dropout: bool = True):
    """The Keras model of ``spec`` and {PyTorch key: variable}."""
    c, h, w = spec["input_shape"]
    builder = Builder(tf, keras, dropout)
    inputs = keras.Input(shape=(h, w, c))
    model = keras.Model(inputs, builder.apply(spec["nodes"], inputs))
    return model, builder.variables


def assign_weights(variables, arrays) -> None:
    missing = sorted(set(variables) - set(arrays))
    if missing:
        raise ValueError(f"weights file lacks {missing[:3]}")
    for key, var in variables.items():
        if tuple(var.shape) != arrays[key].shape:
            raise ValueError(f"{key}: model shape {tuple(var.shape)} != file {arrays[key].shape}")
        var.assign(arrays[key])


def read_weights(variables):
    return {key: np.array(var.numpy()) for key, var in variables.items()}


# ------------------------------------------------------------------------------ training


class Trainer:
    """Compiled functions of one SGD step, split so each phase can be timed."""

    def __init__(self, tf, strategy, model, lr, momentum, weight_decay) -> None:
        self.tf, self.strategy, self.model = tf, strategy, model
        self.lr, self.momentum, self.wd = lr, momentum, weight_decay
        self.trainable = list(model.trainable_variables)
        with strategy.scope():
            self.buffers = (
                [tf.Variable(tf.zeros_like(v.value), trainable=False) for v in self.trainable]
                if momentum
                else []
            )
        self.grads = tf.function(self._grads)
        self.reduce = tf.function(self._reduce)
        self.grads_all_reduced = tf.function(self._grads_all_reduced)
        self.update = tf.function(self._update)
        self.eval_loss = tf.function(self._eval_loss)
        self.logits = tf.function(lambda x: model(x, training=False))
        self.sum_over_workers = tf.function(self._sum_over_workers)

    def _loss(self, x, y, training):
        tf = self.tf
        logits = self.model(x, training=training)
        return tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        )

    def _grads(self, x, y):
        def replica(x, y):
            with self.tf.GradientTape() as tape:
                loss = self._loss(x, y, True)
            return loss, tape.gradient(loss, self.trainable)

        return self.strategy.run(replica, args=(x, y))

    def _grads_all_reduced(self, x, y):
        """Gradients, then their all-reduce, in one function: the all-reduce must run in the
        replica context that produced them. Graph timestamps (``tf.timestamp``), ordered by
        control dependencies, split the call into compute and all-reduce."""
        tf = self.tf

        def replica(x, y):
            with tf.GradientTape() as tape:
                loss = self._loss(x, y, True)
            grads = tape.gradient(loss, self.trainable)
            with tf.control_dependencies(grads):
                before = tf.timestamp()
            with tf.control_dependencies([before]):
                grads = [tf.identity(g) for g in grads]
            reduced = tf.distribute.get_replica_context().all_reduce("MEAN", grads)
            with tf.control_dependencies(reduced):
                after = tf.timestamp()
            return loss, reduced, after - before

        return self.strategy.run(replica, args=(x, y))

    def _reduce(self, grads):
        def replica(g):
            return self.tf.distribute.get_replica_context().all_reduce("MEAN", g)

        return self.strategy.run(replica, args=(grads,))

    def _update(self, grads):
        grads = [self.strategy.experimental_local_results(g)[0] for g in grads]
        for i, (var, grad) in enumerate(zip(self.trainable, grads, strict=True)):
            if self.wd:
                grad = grad + self.wd * var.value
            if self.momentum:
                buf = self.buffers[i]
                buf.assign(self.momentum * buf + grad)
                grad = buf.value()
            var.assign_sub(self.lr * grad)

    def _eval_loss(self, x, y):
        return self._loss(x, y, False)

    def _sum_over_workers(self, value):
        def replica(v):
            # made inside the replica function: placed on the replica's device, which the
            # all-reduce takes its destinations from
            v = self.tf.identity(v)
            return self.tf.distribute.get_replica_context().all_reduce("SUM", v)

        return self.strategy.run(replica, args=(value,))

    def predict(self, x):
        """Logits of the current weights for a batch of held-out inputs (inference mode)."""
        return self.logits(self.tf.constant(x)).numpy()

    def agree(self, reached: bool) -> bool:
        """Worker 0's decision on every worker: the sum of its flag and the others' zeros."""
        flag = self.tf.constant([1.0 if reached else 0.0])
        return float(self.local(self.sum_over_workers(flag))[0]) > 0

    def local(self, value):
        return self.strategy.experimental_local_results(value)[0]


# ------------------------------------------------------------------------------ compare


def run_compare(job) -> None:
    """For each precision: load, inference-mode loss on batch 0, K SGD steps, weights."""
    tf, keras = import_tf(job.get("threads"))
    arrays, info = (
        {},
        {
            "framework": FRAMEWORK,
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        },
    )
    weights = common.load_arrays(job["weights"])
    batches = common.load_arrays(job["batches"])
    for precision in job["precisions"]:
        keras.config.set_dtype_policy(precision)
        model, variables = build_model(tf, keras, job["spec"], dropout=False)
        assign_weights(variables, {k: v.astype(precision) for k, v in weights.items()})
        arrays.update({f"init:{precision}:{k}": v for k, v in read_weights(variables).items()})
        trainer = Trainer(
            tf,
            tf.distribute.get_strategy(),
            model,
            job["lr"],
            job.get("momentum", 0.0),
            job.get("weight_decay", 0.0),
        )
        xs = batches["x"].astype(precision)
        ys = batches["y"].astype(np.int64)
        eval_loss = float(trainer.eval_loss(tf.constant(xs[0]), tf.constant(ys[0])))
        losses = []
        for i in range(xs.shape[0]):
            loss, grads = trainer.grads(tf.constant(xs[i]), tf.constant(ys[i]))
            trainer.update(trainer.reduce(grads))
            losses.append(float(trainer.local(loss)))
        arrays.update({f"final:{precision}:{k}": v for k, v in read_weights(variables).items()})
        mapped = {id(v) for v in variables.values()}
        info[precision] = {
            "losses": losses,
            "eval_loss": eval_loss,
            "unmapped_variables": [v.path for v in model.weights if id(v) not in mapped],
            "native_shapes": {k: list(v.shape) for k, v in variables.items()},
        }
    keras.config.set_dtype_policy("float32")
    np.savez(job["out"] + ".npz", **arrays)
    common.write_json(job["out"] + ".json", info)


# ------------------------------------------------------------------------------ sync training


def _tf_config(job, task_type: str, index: int) -> None:
    os.environ["TF_CONFIG"] = json.dumps(
        {"cluster": job["cluster"], "task": {"type": task_type, "index": index}}
    )


def run_sync(job, rank: int) -> None:
    """``allreduce`` (MultiWorkerMirroredStrategy) or ``sequential`` (no all-reduce)."""
    recorder = common.Recorder(job["run_dir"], rank, "worker", FRAMEWORK, job.get("threads"))
    try:
        sequential = job["strategy"] == "sequential"
        if not sequential:
            _tf_config(job, "worker", rank)
        tf, keras = import_tf(job.get("threads"))
        if sequential:
            strategy = tf.distribute.get_strategy()
        else:
            options = tf.distribute.experimental.CommunicationOptions(
                implementation=tf.distribute.experimental.CommunicationImplementation.RING
            )
            strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        with strategy.scope():
            model, variables = build_model(tf, keras, job["spec"])
        assign_weights(variables, common.load_arrays(job["weights"]))
        trainer = Trainer(
            tf, strategy, model, job["lr"], job.get("momentum", 0.0), job.get("weight_decay", 0.0)
        )
        goal = common.job_goal(
            job,
            rank,
            lambda: common.HeldOut(job["held_out"]).evaluate(trainer.predict),
            agree=None if sequential else trainer.agree,
        )
        _sync_loop(
            tf,
            job,
            trainer,
            recorder,
            common.Batches(job["batches"][rank]),
            goal,
            all_reduce=not sequential,
        )
        recorder.summary({**_summary_extra(tf, keras, job["strategy"]), **goal.summary()})
    except Exception as exc:
        recorder.error(f"rank {rank}: {type(exc).__name__}: {exc}")
        raise
    finally:
        recorder.close()


def _sync_loop(tf, job, trainer, recorder, batches, goal, all_reduce: bool) -> None:
    timer = common.Phases()
    window = common.op_window(job)
    profiler = OpProfiler(tf, job, recorder.rank) if window else None
    for step in goal.steps():
        if window and window.starts(step):
            profiler.start()
        timer.start_step()
        xb, yb = batches.next()
        x, y = tf.constant(xb), tf.constant(yb)
        timer.mark("data")
        if all_reduce:
            loss, grads, comm = trainer.grads_all_reduced(x, y)
            timer.mark("backward")  # forward and backward together (module docstring)
            comm = float(trainer.local(comm))
            timer.phases["backward"] -= comm
            timer.phases["comm"] = comm
        else:
            loss, grads = trainer.grads(x, y)
            timer.mark("backward")  # forward and backward together (module docstring)
        trainer.update(grads)
        loss_value = float(trainer.local(loss))
        timer.mark("update")
        step_time, phases = timer.end_step()
        extra = window.step_extra(step) if window else {}
        recorder.step(
            step,
            step < job["warmup"],
            timer.start_wall,
            step_time,
            len(yb),
            phases,
            loss=loss_value,
            **extra,
        )
        if window and window.after_step(step, timer.start_wall, step_time):
            profiler.finish(window.span)
        goal.after_step(step, step_time, loss_value)


class OpProfiler:
    """TensorFlow's profiler (``tf.profiler.experimental``) over the job's profile window.

    The profiler writes an XSpace protobuf (``*.xplane.pb``, under ``tf_profile_rank{R}/``
    in the run directory, readable by TensorBoard's profile plugin); ``finish`` reads back
    the host plane's operator events (those whose metadata carry an op type as display
    name, e.g. ``Conv2DBackpropFilter``) and writes them with wall-clock start times."""

    def __init__(self, tf, job, rank: int) -> None:
        self.tf, self.run_dir, self.rank = tf, job["run_dir"], rank
        self.logdir = str(Path(job["run_dir"]) / f"tf_profile_rank{rank}")
        self.started_wall = 0.0

    def start(self) -> None:
        import time

        options = self.tf.profiler.experimental.ProfilerOptions(
            host_tracer_level=2, python_tracer_level=0, device_tracer_level=0
        )
        self.started_wall = time.time()
        self.tf.profiler.experimental.start(self.logdir, options=options)

    def finish(self, span) -> None:
        self.tf.profiler.experimental.stop()
        common.write_op_events(
            self.run_dir,
            self.rank,
            FRAMEWORK,
            "tf.profiler (XSpace host plane)",
            xplane_op_events(self.logdir, self.started_wall),
            span,
        )


def xplane_op_events(logdir: str, fallback_start_s: float) -> list[dict]:
    """Operator events of the newest ``*.xplane.pb`` under ``logdir``."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    files = sorted(Path(logdir).rglob("*.xplane.pb"), key=lambda f: f.stat().st_mtime)
    if not files:
        raise RuntimeError(f"TensorFlow's profiler wrote no .xplane.pb under {logdir}")
    space = xplane_pb2.XSpace()
    space.ParseFromString(files[-1].read_bytes())
    # Line timestamps count from the profile's start (the "Task Environment" plane's
    # profile_start_time, ns since the epoch); without it, the moment start() was called.
    base_ns = _profile_start_ns(space) or int(fallback_start_s * 1e9)
    intervals = []
    for plane in space.planes:
        if not plane.name.startswith("/host:"):
            continue
        for line in plane.lines:
            for event in line.events:
                metadata = plane.event_metadata[event.metadata_id]
                if not metadata.display_name:
                    continue  # executor and threadpool bookkeeping, not an operator
                start_us = (base_ns + line.timestamp_ns) / 1e3 + event.offset_ps / 1e6
                intervals.append(
                    (
                        op_label(metadata.name, metadata.display_name),
                        start_us,
                        start_us + event.duration_ps / 1e6,
                        line.id,
                    )
                )
    return common.self_times(intervals)


#: Name scopes of Keras 3's BatchNormalization, which computes with elementwise operators
#: (``moments`` then ``batchnorm``), not one fused batch-norm kernel.
KERAS_BATCH_NORM_SCOPES = ("/moments/", "/batchnorm/")


def op_label(full_name: str, op_type: str) -> str:
    """The op type (``Conv2DBackpropFilter``), or ``BatchNorm[Mul]`` / ``BatchNormGrad[Sum]``
    for the elementwise operators of a Keras batch-norm layer (forward, or under the
    gradient tape's scope), so they can be told from the same op types elsewhere."""
    scope = full_name.split(":")[0]
    if any(marker in scope for marker in KERAS_BATCH_NORM_SCOPES):
        kind = "BatchNormGrad" if scope.startswith("gradient_tape/") else "BatchNorm"
        return f"{kind}[{op_type}]"
    return op_type


def _profile_start_ns(space) -> int | None:
    for plane in space.planes:
        names = {key: meta.name for key, meta in plane.stat_metadata.items()}
        for stat in plane.stats:
            if names.get(stat.metadata_id) == "profile_start_time":
                return int(stat.uint64_value or stat.int64_value)
    return None


def _summary_extra(tf, keras, mode: str):
    common_extra = {
        "framework_versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        "unseparated_phases": {"backward": ["forward", "backward"]},
    }
    if mode == "sequential":
        return {**common_extra, "engine": "default strategy, one process"}
    if mode == "allreduce":
        return {**common_extra, "engine": "MultiWorkerMirroredStrategy (RING all-reduce)"}
    common_extra["unseparated_phases"] = {
        "backward": ["pull", "forward", "backward", "push", "update"]
    }
    return {
        **common_extra,
        "engine": "ParameterServerStrategy + ClusterCoordinator",
        "step_times": "measured on the worker with tf.timestamp",
    }


# ------------------------------------------------------------------------------ async training


def run_server(job, task_type: str, index: int) -> None:
    """A worker or ps task of ParameterServerStrategy: serve until the launcher stops us."""
    _tf_config(job, task_type, index)
    tf, _ = import_tf(job.get("threads"))
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    server = tf.distribute.Server(
        resolver.cluster_spec(), job_name=task_type, task_index=index, protocol="grpc", start=True
    )
    server.join()


def run_coordinator(job) -> None:
    _tf_config(job, "chief", 0)
    tf, keras = import_tf(job.get("threads"))
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    strategy = tf.distribute.experimental.ParameterServerStrategy(resolver)
    workers = job["workers"]
    recorders = [
        common.Recorder(job["run_dir"], r, "worker", FRAMEWORK, job.get("threads"))
        for r in range(workers)
    ]
    try:
        with strategy.scope():
            model, variables = build_model(tf, keras, job["spec"])
        assign_weights(variables, common.load_arrays(job["weights"]))
        goal = _update_goal(job, model)
        _async_loop(tf, strategy, job, model, recorders, goal)
        for recorder in recorders:
            extra = _summary_extra(tf, keras, "ps-async")
            recorder.summary({**extra, **goal.summary()} if recorder.rank == 0 else extra)
    except Exception as exc:
        recorders[0].error(f"coordinator: {type(exc).__name__}: {exc}")
        raise
    finally:
        for recorder in recorders:
            recorder.close()


def _async_step_fn(tf, strategy, model, job):
    """One asynchronous step on a worker: gradients on the weights it reads from the
    parameter server, then PyTorch's SGD (weight decay, momentum buffer) applied to the
    server's variables at once, as the PyTorch and MXNet asynchronous servers apply it."""
    trainable = list(model.trainable_variables)
    lr, momentum, wd = job["lr"], job.get("momentum", 0.0), job.get("weight_decay", 0.0)
    with strategy.scope():  # on the parameter server, beside the weights
        buffers = (
            [tf.Variable(tf.zeros_like(v.value), trainable=False) for v in trainable]
            if momentum
            else []
        )

    @tf.function
    def step(x, y):
        def replica(x, y):
            start = tf.timestamp()
            with tf.GradientTape() as tape:
                logits = model(x, training=True)
                loss = tf.reduce_mean(
                    tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
                )
            grads = tape.gradient(loss, trainable)
            for i, (var, grad) in enumerate(zip(trainable, grads, strict=True)):
                if wd:
                    grad = grad + wd * var
                if momentum:
                    buffers[i].assign(momentum * buffers[i] + grad)
                    grad = buffers[i]
                var.assign_sub(lr * grad)
            with tf.control_dependencies([loss]):
                end = tf.timestamp()
            worker = tf.distribute.coordinator.experimental_get_current_worker_index()
            return loss, start, end, worker

        return strategy.run(replica, args=(x, y))

    return step


def _update_goal(job, model):
    """The goal counted in updates (the coordinator's unit): every per-worker setting times
    the workers, one update trains one worker's batch. Evaluated on the coordinator, whose
    model reads the parameter server's variables."""
    workers = int(job["workers"])
    per_update = dict(job)
    goal = job.get("goal")
    if goal:
        settings = dict(goal["settings"])
        for name in ("eval_every", "max_steps", "warmup", "steps"):
            settings[name] = settings[name] * workers
        per_update["goal"] = {**goal, "settings": settings, "updaters": 1, "asynchronous": False}
    else:
        per_update["warmup"], per_update["steps"] = job["warmup"] * workers, job["steps"] * workers
    held_out = common.HeldOut(job["held_out"]) if goal else None
    return common.job_goal(
        per_update, 0, lambda: held_out.evaluate(lambda x: model(x, training=False).numpy())
    )


def _async_loop(tf, strategy, job, model, recorders, goal) -> None:
    """Schedule the steps up to the next evaluation, wait for them, hand each update to the
    goal in the order the updates ended (its time: from the previous update's end, or the
    batch's first start); without a goal, all steps at once."""
    coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)
    step_fn = _async_step_fn(tf, strategy, model, job)
    streams = [common.Batches(path) for path in job["batches"]]
    limit = goal.step_limit if goal.active else job["warmup"] + job["steps"]
    every = goal.settings.eval_every if goal.active else limit
    done, update, batch = [], 0, 0
    # as Goal.steps: at least one measured step, even when the goal is met in the warm-up
    while update < limit and not (goal.stopped and update > goal.settings.warmup):
        pending = []
        for i in range(update, min(limit, (update // every + 1) * every)):
            xb, yb = streams[i % len(streams)].next()
            pending.append(coordinator.schedule(step_fn, args=(tf.constant(xb), tf.constant(yb))))
        coordinator.join()
        ran = sorted(
            (tuple(float(np.asarray(v)) for v in value.fetch()) for value in pending),
            key=lambda r: r[2],
        )
        previous_end = min(start for _, start, _, _ in ran)
        for loss, _, end, _ in ran:
            goal.after_step(update, end - previous_end, loss)
            previous_end, update = end, update + 1
        done.extend((loss, start, end, worker, batch) for loss, start, end, worker in ran)
        batch += 1
    _record_async(job, done, recorders)


def _record_async(job, done, recorders) -> None:
    """Each worker's steps in the order it ran them. A step's time is the worker's cycle:
    from the end of its previous step to the end of this one, so time spent idle waiting
    for the coordinator to hand it the next step (and its batch) is counted, as ``wait``;
    the step itself, measured on the worker, is ``backward`` (see the module docstring).
    A worker's first step of each batch of scheduled steps (training to a goal) counts from
    its own start: the gap before it holds the coordinator's evaluation, not training."""
    by_worker = {}
    for loss, start, end, worker, batch in done:
        by_worker.setdefault(int(worker) % job["workers"], []).append(
            (float(start), float(end), float(loss), batch)
        )
    for rank, steps in by_worker.items():
        previous_end, previous_batch = None, None
        for step, (start, end, loss, batch) in enumerate(sorted(steps)):
            compute = end - start
            first = previous_end is None or batch != previous_batch
            cycle = compute if first else max(compute, end - previous_end)
            previous_end, previous_batch = end, batch
            recorders[rank].step(
                step,
                step < job["warmup"],
                start,
                cycle,
                int(job["batch_size"]),
                {"backward": compute, "wait": cycle - compute},
                loss=loss,
            )


# ------------------------------------------------------------------------------ entry point


def main() -> int:
    job = common.read_job(sys.argv[1])
    role = os.environ.get("DISTBENCH_ROLE", "worker")
    index = int(os.environ.get("DISTBENCH_INDEX", "0"))
    try:
        if job["mode"] == "compare":
            run_compare(job)
        elif job["strategy"] in ("allreduce", "sequential"):
            run_sync(job, index)
        elif role == "chief":
            run_coordinator(job)
        else:
            run_server(job, role, index)
    except Exception:
        import traceback

        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
