#!/usr/bin/python3
"""Reads a vae_ddp run's TensorBoard event files with an independent decoder and checks them.

    tensorboard_check.py RUN_DIR

TFRecord framing is checked record by record (length, masked CRC32C of the length, data,
masked CRC32C of the data; CRC32C from the crc32c package), and each record is decoded as
a tensorflow.Event protobuf message (python3-protobuf; the message types are declared here
from TensorBoard's event.proto / summary.proto field numbers). The epoch scalars must equal
metrics.csv, the step scalars must be present, and the sample grids must be PNGs of the
size the header declares. Exit 77 (ctest: skipped) when a reader module is missing.
"""
import csv
import glob
import struct
import sys

try:
    import crc32c
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
except ImportError as e:  # pragma: no cover
    print(f"skipped: {e} (apt-get install python3-protobuf python3-crc32c)")
    sys.exit(77)


def masked(data):
    c = crc32c.crc32c(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def event_class():
    f = descriptor_pb2.FileDescriptorProto(name="check_event.proto", package="check", syntax="proto3")
    T = descriptor_pb2.FieldDescriptorProto

    def msg(name, fields):
        m = f.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            fd = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                fd.type_name = type_name
        return m

    opt, rep = T.LABEL_OPTIONAL, T.LABEL_REPEATED
    msg("Image", [("height", 1, T.TYPE_INT32, opt, None), ("width", 2, T.TYPE_INT32, opt, None),
                  ("colorspace", 3, T.TYPE_INT32, opt, None), ("encoded_image_string", 4, T.TYPE_BYTES, opt, None)])
    msg("Value", [("tag", 1, T.TYPE_STRING, opt, None), ("simple_value", 2, T.TYPE_FLOAT, opt, None),
                  ("image", 4, T.TYPE_MESSAGE, opt, ".check.Image")])
    msg("Summary", [("value", 1, T.TYPE_MESSAGE, rep, ".check.Value")])
    msg("Event", [("wall_time", 1, T.TYPE_DOUBLE, opt, None), ("step", 2, T.TYPE_INT64, opt, None),
                  ("file_version", 3, T.TYPE_STRING, opt, None), ("summary", 5, T.TYPE_MESSAGE, opt, ".check.Summary")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    desc = pool.FindMessageTypeByName("check.Event")
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(desc)
    return message_factory.MessageFactory(pool).GetPrototype(desc)


def records(path):
    data = open(path, "rb").read()
    at = 0
    while at < len(data):
        header = data[at:at + 8]
        (length,) = struct.unpack("<Q", header)
        (len_crc,) = struct.unpack("<I", data[at + 8:at + 12])
        assert len_crc == masked(header), f"{path}@{at}: length CRC mismatch"
        body = data[at + 12:at + 12 + length]
        (body_crc,) = struct.unpack("<I", data[at + 12 + length:at + 16 + length])
        assert len(body) == length, f"{path}@{at}: truncated record"
        assert body_crc == masked(body), f"{path}@{at}: data CRC mismatch"
        yield body
        at += 16 + length


def main(run_dir):
    Event = event_class()
    files = sorted(glob.glob(f"{run_dir}/tb/events.out.tfevents.*"))
    assert files, f"no event files in {run_dir}/tb"
    scalars, images, versions = {}, [], []
    for path in files:
        for body in records(path):
            e = Event()
            e.ParseFromString(body)
            assert e.wall_time > 1.5e9, e.wall_time
            if e.file_version:
                versions.append(e.file_version)
            for v in e.summary.value:
                if v.HasField("image"):
                    images.append((e.step, v.image))
                else:
                    scalars.setdefault(v.tag, {})[e.step] = v.simple_value
    assert versions and all(v == "brain.Event:2" for v in versions), versions
    rows = list(csv.DictReader(open(f"{run_dir}/metrics.csv")))
    for row in rows:
        epoch = int(row["epoch"])
        for column in ("train_loss", "test_loss", "train_bce", "test_kld", "beta"):
            got, want = scalars[f"epoch/{column}"][epoch], float(row[column])
            assert abs(got - want) <= 1e-4 * max(1.0, abs(want)), (column, epoch, got, want)
    assert scalars.get("step/loss"), "no per-step scalars"
    assert images, "no sample-grid images"
    for step, img in images:
        png = img.encoded_image_string
        assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
        width, height = struct.unpack(">II", png[16:24])
        assert (width, height) == (img.width, img.height), (width, height, img.width, img.height)
    print(f"{len(files)} event file(s): {sum(len(v) for v in scalars.values())} scalars over {len(scalars)} tags, "
          f"{len(images)} images, epochs {[int(r['epoch']) for r in rows]} match metrics.csv")


if __name__ == "__main__":
    main(sys.argv[1])
