#!/usr/bin/python3
"""An alpha-beta model of data-parallel scaling for vae_ddp, as in docs/BENCHMARKS.md.

Each step computes on B/p images per rank, then all-reduces one fp32 gradient buffer of
n bytes with a ring: T_ar(p) = 2(p-1) alpha + 2 (p-1)/p * n / bw. vae_ddp does not overlap
the all-reduce with backward, so a step takes T_c(B/p) + T_ar(p), with
T_c(b) = t0 + b * t_img (t0 = per-step fixed cost). Prints images/s and efficiency for
1..64 ranks and the smallest global batch that keeps efficiency >= 90 %.

  scaling_model.py --t-img-us 2.0 --t0-us 60 [--bytes 2611296]
"""
import argparse

FABRICS = {  # name: (alpha in microseconds, bandwidth in GB/s per rank along the ring)
    "NVLink (one node)": (8.0, 350.0),
    "400 Gb/s fabric": (10.0, 50.0),
    "100 Gb/s fabric": (10.0, 12.5),
}
# This CPU's MPI over shared memory: MPI_Allreduce of the 2.6 MB buffer took 0.195 ms on 2 ranks.
CPU_SHARED_MEMORY = {"shared memory (this CPU, Open MPI)": (5.0, 13.4)}
MNIST = 60000


def step_time(p, batch, t_img, t0, alpha, bw, nbytes):
    t_ar = 0.0 if p == 1 else 2 * (p - 1) * alpha * 1e-6 + 2 * (p - 1) / p * nbytes / (bw * 1e9)
    return t0 * 1e-6 + batch / p * t_img * 1e-6 + t_ar


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--t-img-us", type=float, required=True, help="compute time per image per step, microseconds")
    ap.add_argument("--t0-us", type=float, default=0.0, help="fixed compute time per step, microseconds")
    ap.add_argument("--bytes", type=float, default=652824 * 4 + 8, help="all-reduce message (fp32 gradients)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--cpu", action="store_true", help="model this CPU's shared-memory MPI instead of GPU fabrics")
    ap.add_argument("--max-ranks", type=int, default=64)
    args = ap.parse_args()
    ranks = [p for p in [1, 2, 4, 8, 16, 32, 64] if p <= args.max_ranks]
    for name, (alpha, bw) in (CPU_SHARED_MEMORY if args.cpu else FABRICS).items():
        print("\n%s: alpha %.0f us, %.1f GB/s; global batch %d" % (name, alpha, bw, args.batch))
        print("| ranks | " + " | ".join(str(p) for p in ranks) + " |")
        print("|---|" + "---|" * len(ranks))
        base = args.batch / step_time(1, args.batch, args.t_img_us, args.t0_us, alpha, bw, args.bytes)
        ips, eff, need = [], [], []
        for p in ranks:
            rate = args.batch / step_time(p, args.batch, args.t_img_us, args.t0_us, alpha, bw, args.bytes)
            ips.append("%.0fk" % (rate / 1e3))
            eff.append("%.0f%%" % (100 * rate / (p * base)))
            # smallest global batch (multiple of p) whose efficiency is >= 90 %
            b = p
            while b < 1 << 24:
                r1 = b / step_time(1, b, args.t_img_us, args.t0_us, alpha, bw, args.bytes)
                rp = b / step_time(p, b, args.t_img_us, args.t0_us, alpha, bw, args.bytes)
                if rp >= 0.9 * p * r1:
                    break
                b *= 2
            need.append("-" if p == 1 else (str(b) if b <= MNIST else "> 60k (all of MNIST)"))
        print("| images/s | " + " | ".join(ips) + " |")
        print("| efficiency | " + " | ".join(eff) + " |")
        print("| batch for >= 90 % | " + " | ".join(need) + " |")


if __name__ == "__main__":
    main()
