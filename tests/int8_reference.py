"""Each integer layer of an int8 ONNX model run alone by ONNX Runtime, against an exact integer reference.

A layer's integer products are summed exactly here (int64); ONNX Runtime's sum is exact on every CPU only when
no pair of uint8 x int8 products can overflow int16 (x86-64 without VNNI sums them so, saturating). The inputs
are the worst case for that: uint8 activations at 0 and 255.

    python tests/int8_reference.py runs/<run>/model_int8_static.onnx   # prints each layer's largest difference
"""
from __future__ import annotations

import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

LAYERS = ("QLinearConv", "QGemm", "MatMulInteger")


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _alone(node, init: dict, inputs: dict[int, tuple], output_type: int):
    """A one-node model of `node`: its initializers as they are, the inputs at `inputs` (index -> (shape, type))
    fed by the caller."""
    feeds, inits, names = [], [], []
    for k, name in enumerate(node.input):
        if k in inputs:
            shape, dtype = inputs[k]
            feeds.append(helper.make_tensor_value_info(f"in{k}", dtype, shape))
            names.append(f"in{k}")
        elif name in init:
            inits.append(init[name])
            names.append(name)
        else:
            names.append(name)
    out = helper.make_tensor_value_info("out", output_type, None)
    one = helper.make_node(node.op_type, names, ["out"], domain=node.domain, **_attrs(node))
    graph = helper.make_graph([one], "layer", feeds, [out], inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def _run(model, feeds: dict) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return session.run(["out"], feeds)[0]


def _requantize(acc: np.ndarray, scale: np.ndarray, zero: int) -> np.ndarray:
    """uint8 output of int32 sums at float32 scale `scale`, rounded half to even, as ONNX Runtime requantizes."""
    y = np.rint(acc.astype(np.float32) * scale.astype(np.float32)) + zero
    return np.clip(y, 0, 255)


def _worst_inputs(rng, shape) -> np.ndarray:
    return (rng.random(shape) < 0.5).astype(np.uint8) * np.uint8(255)


def layer_differences(path, batch: int = 64, seed: int = 0) -> dict[str, float]:
    """{"<op type> <output>": largest |ONNX Runtime - exact integer reference|} over worst-case inputs, in the layer's output
    units (uint8 steps; int32 sums for MatMulInteger)."""
    model = onnx.load(str(path))
    init = {i.name: i for i in model.graph.initializer}
    arr = lambda name: numpy_helper.to_array(init[name])  # noqa: E731
    rng = np.random.default_rng(seed)
    out = {}
    for node in model.graph.node:
        if node.op_type not in LAYERS:
            continue
        if node.op_type == "QLinearConv":
            w = arr(node.input[3]).astype(np.int64)  # (out, in, k)
            x_scale, x_zp = arr(node.input[1]), int(arr(node.input[2]))
            w_scale, w_zp = arr(node.input[4]), arr(node.input[5]).astype(np.int64)
            y_scale, y_zp = arr(node.input[6]), int(arr(node.input[7]))
            bias = arr(node.input[8]).astype(np.int64) if len(node.input) > 8 and node.input[8] else 0
            a = _attrs(node)
            pad, stride = a.get("pads", [0, 0])[0], a.get("strides", [1])[0]
            if a.get("group", 1) != 1 or a.get("dilations", [1])[0] != 1:
                raise ValueError(f"{node.name}: groups or dilations are not in the reference")
            length = 64
            x = _worst_inputs(rng, (batch, w.shape[1], length))
            got = _run(_alone(node, init, {0: (list(x.shape), onnx.TensorProto.UINT8)}, onnx.TensorProto.UINT8),
                       {"in0": x}).astype(np.int64)
            xp = np.pad(x.astype(np.int64) - x_zp, ((0, 0), (0, 0), (pad, pad)))
            k = w.shape[2]
            steps = (xp.shape[2] - k) // stride + 1
            cols = np.stack([xp[:, :, t * stride:t * stride + k] for t in range(steps)], axis=2)  # (b, in, t, k)
            acc = np.einsum("bctk,ock->bot", cols, w - w_zp.reshape(-1, 1, 1)) + np.reshape(bias, (1, -1, 1))
            scale = (np.float32(x_scale) * w_scale.astype(np.float32) / np.float32(y_scale)).reshape(1, -1, 1)
            ref = _requantize(acc, scale, y_zp)
        elif node.op_type == "QGemm":
            a = _attrs(node)
            if a.get("transA", 0):
                raise ValueError(f"{node.name}: transA is not in the reference")
            b = arr(node.input[3]).astype(np.int64)
            b = b if a.get("transB", 0) else b.T  # (out, in)
            a_scale, a_zp = arr(node.input[1]), int(arr(node.input[2]))
            b_scale, b_zp = arr(node.input[4]), arr(node.input[5]).astype(np.int64)
            bias = arr(node.input[6]).astype(np.int64) if len(node.input) > 6 and node.input[6] else 0
            x = _worst_inputs(rng, (batch, b.shape[1]))
            x[: min(batch, len(b))] = np.where(b[: min(batch, len(b))] > 0, 255, 0)  # each output's largest sum
            quantized = len(node.input) > 7 and node.input[7]
            got = _run(_alone(node, init, {0: (list(x.shape), onnx.TensorProto.UINT8)},
                              onnx.TensorProto.UINT8 if quantized else onnx.TensorProto.FLOAT), {"in0": x})
            acc = (x.astype(np.int64) - a_zp) @ (b - b_zp.reshape(-1, 1)).T + bias
            alpha = np.float32(a.get("alpha", 1.0))
            scale = alpha * np.float32(a_scale) * b_scale.astype(np.float32)
            if quantized:
                y_scale, y_zp = arr(node.input[7]), int(arr(node.input[8]))
                ref, got = _requantize(acc, scale / np.float32(y_scale), y_zp), got.astype(np.int64)
            else:  # float output: compared in units of one output step of the sum
                ref, got = acc.astype(np.float64), got.astype(np.float64) / scale
        else:  # MatMulInteger: int32 sums, exact
            b = arr(node.input[1]).astype(np.int64)  # (in, out)
            b_zp = arr(node.input[3]).astype(np.int64) if len(node.input) > 3 and node.input[3] in init else 0
            x = _worst_inputs(rng, (batch, b.shape[0]))
            x[: min(batch, b.shape[1])] = np.where(b.T[: min(batch, b.shape[1])] > 0, 255, 0)
            a_zp = np.uint8(0)
            feeds = {0: (list(x.shape), onnx.TensorProto.UINT8)}
            model_1 = _alone(node, {**init, node.input[2]: numpy_helper.from_array(a_zp, node.input[2])}
                             if len(node.input) > 2 and node.input[2] else init, feeds, onnx.TensorProto.INT32)
            got = _run(model_1, {"in0": x}).astype(np.int64)
            ref = x.astype(np.int64) @ (b - b_zp)
        out[f"{node.op_type} {node.output[0]}"] = float(np.abs(np.asarray(got, np.float64) - ref).max())
    return out


def exact_integers(diffs: dict[str, float]) -> bool:
    """Whether layer_differences shows exact integer arithmetic: requantized layers within a rounding step of the
    reference, MatMulInteger's int32 sums equal to it."""
    return bool(diffs) and all((not k.startswith("MatMulInteger") and v <= 1) or v == 0 for k, v in diffs.items())


if __name__ == "__main__":
    for file in sys.argv[1:]:
        diffs = layer_differences(file)
        print(f"{file}: largest difference {max(diffs.values()):g} "
              f"({', '.join(f'{k} {v:g}' for k, v in diffs.items())})")
