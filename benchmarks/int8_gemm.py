"""The INT8 ceiling of this CPU: one ViT-B-16 MLP matmul in PyTorch fp32, ONNX Runtime fp32 and
ONNX Runtime INT8 (QLinearMatMul, u8 activations x s8 weights), timed side by side.

A whole INT8 ViT graph cannot run faster relative to PyTorch than its matmuls do, since the
matmuls are most of its work and the rest (LayerNorm, Softmax, GELU, residual adds) stays float.
So the ratio printed here bounds what `export --quantize int8` can reach on this machine:

    python benchmarks/int8_gemm.py --repeats 5     # docs/guides/cpu.md, "The INT8 ceiling"

The shape is ViT-B-16's first MLP matmul at batch 8 (8 x 197 tokens, 768 -> 3072). Weights are
7-bit (as `export --quantize int8` writes them: `reduce_range`); the inputs are random, which
does not change the speed.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from anomed.engine.speed import cpu_info, cpu_line
from anomed.engine.timing import median_seconds

CPU = torch.device("cpu")
ITERS = 7


def ort_session(nodes, inputs, outputs, initializers, threads: int):
    import onnxruntime as ort
    from onnx import helper

    graph = helper.make_graph(nodes, "gemm", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])


def timings(m: int, k: int, n: int, threads: int) -> dict[str, float]:
    """Seconds per matmul (m, k) x (k, n) for each runtime, measured one after another."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((k, n), dtype=np.float32) * 0.02
    x_t, w_t = torch.from_numpy(x), torch.from_numpy(w)
    fp32 = ort_session(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(w, "w")],
        threads,
    )
    scalars = {"xs": 0.01, "ws": 0.001, "ys": 0.05}
    zeros = {"xz": np.uint8(128), "wz": np.int8(0), "yz": np.uint8(128)}
    int8 = ort_session(
        [helper.make_node("QLinearMatMul", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [m, n])],
        [numpy_helper.from_array(rng.integers(-63, 64, (k, n), dtype=np.int8), "w")]
        + [numpy_helper.from_array(np.array(v, np.float32), name) for name, v in scalars.items()]
        + [numpy_helper.from_array(np.array(v), name) for name, v in zeros.items()],
        threads,
    )
    x_q = rng.integers(0, 256, (m, k), dtype=np.uint8)
    with torch.inference_mode():
        return {
            "PyTorch fp32": median_seconds(lambda: x_t @ w_t, CPU, ITERS),
            "ONNX Runtime fp32": median_seconds(lambda: fp32.run(None, {"x": x}), CPU, ITERS),
            "ONNX Runtime INT8": median_seconds(lambda: int8.run(None, {"x": x_q}), CPU, ITERS),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8 * 197, help="rows: batch x tokens")
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--hidden", type=int, default=3072)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="rounds, each timing all three")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    m, k, n = args.tokens, args.width, args.hidden
    rounds = [timings(m, k, n, args.threads) for _ in range(args.repeats)]
    print(f"matmul ({m} x {k}) x ({k} x {n}), {args.threads} threads. {cpu_line(cpu_info())}")
    print("| runtime | ms (median of rounds) | GMAC/s | vs PyTorch fp32 (min-max over rounds) |")
    print("|---|---:|---:|---:|")
    for name in rounds[0]:
        seconds = float(np.median([r[name] for r in rounds]))
        ratios = [r["PyTorch fp32"] / r[name] for r in rounds]
        print(
            f"| {name} | {seconds * 1e3:.1f} | {m * k * n / seconds / 1e9:.0f} | "
            f"{np.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |"
        )


if __name__ == "__main__":
    main()
