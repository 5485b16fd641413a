"""TensorBoard's own reader against gradacc's event files (tests/tensorboard.sh).

  proto DESCRIPTOR_SET     every message, field and enum value of src/log/tensorboard_event.proto
                           (compiled by protoc) has the number, type and label of TensorBoard's
  equal LOGDIR LOG.jsonl   TensorBoard's data provider (what its scalar and text dashboards read)
                           holds every number of every step record, and of every eval record, at
                           its step, equal to the JSONL value; the options and the run are text
  cut FILE                 a copy of FILE cut in the middle of its last record reads up to the
                           record before, without an error
"""
import glob
import json
import os
import shutil
import sys
import tempfile

from google.protobuf import descriptor_pb2
from tensorboard.backend.event_processing import data_provider, event_file_loader, plugin_event_multiplexer
from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
from tensorboard import context


def check_proto(descriptor_set):
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(open(descriptor_set, "rb").read())
    theirs = {}
    for mod in (event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2):
        fdp = descriptor_pb2.FileDescriptorProto()
        mod.DESCRIPTOR.CopyToProto(fdp)
        for m in fdp.message_type:
            theirs[m.name] = m
            for n in m.nested_type:
                theirs[m.name + "." + n.name] = n
        for e in fdp.enum_type:
            theirs[e.name] = e
    checked = 0

    def compare_enum(name, ours):
        nonlocal checked
        ref = {v.name: v.number for v in theirs[name].value}
        for v in ours.value:
            assert ref.get(v.name) == v.number, f"enum {name}.{v.name} = {v.number}, TensorBoard's {ref.get(v.name)}"
            checked += 1

    def compare(name, ours):
        nonlocal checked
        assert name in theirs, f"TensorBoard has no message {name}"
        ref = {f.name: f for f in theirs[name].field}
        for f in ours.field:
            r = ref.get(f.name)
            assert r is not None, f"TensorBoard's {name} has no field {f.name}"
            assert (f.number, f.type, f.label) == (r.number, r.type, r.label), \
                f"{name}.{f.name}: ours (number, type, label) {(f.number, f.type, f.label)}, TensorBoard's " \
                f"{(r.number, r.type, r.label)}"
            assert f.type_name.split(".")[-1] == r.type_name.split(".")[-1], f"{name}.{f.name}: {f.type_name}"
            checked += 1
        for n in ours.nested_type:
            compare(name + "." + n.name, n)
        for e in ours.enum_type:
            compare_enum(e.name, e) if e.name in theirs else compare_enum_nested(name, e)

    def compare_enum_nested(parent, e):
        nonlocal checked
        ref = {x.name: x for x in theirs[parent].enum_type}[e.name]
        for v in e.value:
            assert {x.name: x.number for x in ref.value}.get(v.name) == v.number, f"{parent}.{e.name}.{v.name}"
            checked += 1

    (ours,) = fds.file
    for m in ours.message_type:
        compare(m.name, m)
    for e in ours.enum_type:
        compare_enum(e.name, e)
    print(f"tensorboard_event.proto: {checked} fields and enum values, each as TensorBoard declares it")


def check_equal(logdir, log):
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(logdir)
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, logdir)
    ctx = context.RequestContext()
    scalars = provider.list_scalars(ctx, experiment_id="", plugin_name="scalars")
    (run,) = scalars.keys()
    tags = list(scalars[run].keys())
    data = provider.read_scalars(ctx, experiment_id="", plugin_name="scalars", downsample=10 ** 9,
                                 run_tag_filter=None)[run]
    got = {tag: [(p.step, p.value) for p in points] for tag, points in data.items()}

    rows = [json.loads(l) for l in open(log)]
    want = {}
    last = 0
    for r in rows:
        if "step" in r:
            last = r["step"]
            prefix, at, skip = "train", r["step"], {"step"}
        elif r.get("event") == "eval":
            prefix, at, skip = r.get("split", "eval"), r.get("at_step", last), {"at_step"}
        else:
            continue
        for k, v in r.items():
            if k in skip or isinstance(v, str):
                continue
            want.setdefault(f"{prefix}/{k}", []).append((at, float(v)))
    assert sorted(want) == sorted(tags), f"tags differ: only in JSONL {sorted(set(want) - set(tags))}, only in " \
                                         f"TensorBoard {sorted(set(tags) - set(want))}"
    values = 0
    for tag, points in want.items():
        assert got[tag] == points, f"{tag}: TensorBoard {got[tag][:6]}..., JSONL {points[:6]}..."
        values += len(points)
    steps = sorted({s for s, _ in want["train/loss"]})
    assert steps == list(range(1, steps[-1] + 1)), f"steps {steps}"

    texts = provider.list_tensors(ctx, experiment_id="", plugin_name="text")[run]
    assert {"options", "run"} <= set(texts), f"text tags {sorted(texts)}"
    blobs = provider.read_tensors(ctx, experiment_id="", plugin_name="text", downsample=10, run_tag_filter=None)[run]
    options = blobs["options"][-1].numpy.item().decode()
    assert "| `--tensorboard` |" in options, options[:200]
    files = sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*")))
    print(f"{logdir}: {len(files)} event file(s); {len(tags)} scalar tags, {values} values over steps 1-{steps[-1]}, "
          f"each equal to the JSONL; options and run as text")


def check_cut(path):
    full = list(event_file_loader.EventFileLoader(path).Load())
    size = os.path.getsize(path)
    tmp = tempfile.mkdtemp()
    try:
        cut = os.path.join(tmp, os.path.basename(path))
        with open(path, "rb") as f:
            data = f.read()
        last = len(full[-1].SerializeToString()) + 16  # the last record, framed
        with open(cut, "wb") as f:
            f.write(data[: size - last // 2])
        part = list(event_file_loader.EventFileLoader(cut).Load())
    finally:
        shutil.rmtree(tmp)
    assert [e.SerializeToString() for e in part] == [e.SerializeToString() for e in full[:-1]], \
        f"cut file: {len(part)} events, expected {len(full) - 1}"
    print(f"{os.path.basename(path)} cut {last // 2} bytes into its last record: {len(part)} of {len(full)} events "
          f"read, the last one dropped")


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "proto":
        check_proto(sys.argv[2])
    elif mode == "equal":
        check_equal(sys.argv[2], sys.argv[3])
    elif mode == "cut":
        check_cut(sys.argv[2])
    else:
        sys.exit(f"unknown mode {mode}")
