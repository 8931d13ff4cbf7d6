"""Reads a vae_ddp run's tb/ with the tensorboard package from PyPI: its EventAccumulator,
the reader behind `tensorboard --logdir`. The epoch scalars must equal metrics.csv, the step
scalars must be there, and each sample grid must be a PNG of the size TensorBoard reports.

    tensorboard_package_check.py RUN_DIR

A damaged record makes TensorBoard stop reading that file (it logs the data loss and goes
on), so a damaged file shows up here as scalars missing against metrics.csv. Exit 77
(ctest: skipped) when the tensorboard package is not installed.
"""
import csv
import struct
import sys

try:
    from tensorboard.backend.event_processing import event_accumulator as ea
except ImportError as e:  # pragma: no cover
    print(f"skipped: {e} (pip install tensorboard; launch/setup puts it in .venv-pytorch)")
    sys.exit(77)

EPOCH_COLUMNS = ("train_loss", "test_loss", "train_bce", "train_kld", "test_bce", "test_kld", "beta")


def main(run_dir):
    acc = ea.EventAccumulator(f"{run_dir}/tb", size_guidance={ea.SCALARS: 0, ea.IMAGES: 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = {t: {e.step: e.value for e in acc.Scalars(t)} for t in tags["scalars"]}
    rows = list(csv.DictReader(open(f"{run_dir}/metrics.csv")))
    assert rows, "metrics.csv has no rows"
    problems = []
    for row in rows:
        epoch = int(row["epoch"])
        for column in EPOCH_COLUMNS:
            if column not in row:
                continue
            got, want = scalars.get(f"epoch/{column}", {}).get(epoch), float(row[column])
            if got is None:
                problems.append(f"epoch/{column} missing at epoch {epoch}")
            elif abs(got - want) > 1e-4 * max(1.0, abs(want)):
                problems.append(f"epoch/{column} at epoch {epoch}: {got} in TensorBoard, {want} in metrics.csv")
    if not scalars.get("step/loss"):
        problems.append("no step/loss scalars")
    images = [(t, e) for t in tags["images"] for e in acc.Images(t)]
    if not images:
        problems.append("no images")
    for tag, img in images:
        png = img.encoded_image_string
        if png[:8] != b"\x89PNG\r\n\x1a\n":
            problems.append(f"{tag} at step {img.step}: not a PNG")
            continue
        size = struct.unpack(">II", png[16:24])
        if size != (img.width, img.height):
            problems.append(f"{tag} at step {img.step}: PNG is {size[0]}x{size[1]}, TensorBoard says "
                            f"{img.width}x{img.height}")
    if problems:
        print("FAIL: TensorBoard's reader disagrees with metrics.csv:\n  " + "\n  ".join(problems[:20]))
        sys.exit(1)
    print(f"TensorBoard's EventAccumulator: {sum(len(v) for v in scalars.values())} "
          f"scalars over {len(scalars)} tags, {len(images)} images; epochs {[int(r['epoch']) for r in rows]} "
          f"match metrics.csv")


if __name__ == "__main__":
    main(sys.argv[1])
