#!/usr/bin/env python3
"""Makes the small ONNX test models of crates/onnx/tests with onnx.helper, and their
expected outputs with onnxruntime (CPU).

For each model NAME: NAME.onnx and NAME.json = {"inputs": {name: {"shape", "data"}},
"outputs": {name: {"shape", "data"}}} with fixed random inputs (seed 0). The bad_*.onnx
files are malformed on purpose (one error each); tests also make truncated and non-ONNX
bytes themselves. The tests need no Python; rerun this to regenerate:

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install onnx==1.23.2 onnxruntime==1.32.0 numpy==2.4.6
    /tmp/venv/bin/python testdata/onnx/make_testdata.py
"""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(0)


def w(*shape, scale=None):
    fan = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    s = scale if scale is not None else 1.0 / np.sqrt(max(fan, 1))
    return (rng.standard_normal(shape) * s).astype(np.float32)


def init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def save(name, graph, opset=13, ir=8, inputs=None, check=True):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="tessel-testdata")
    model.ir_version = ir
    if check:
        onnx.checker.check_model(model, full_check=True)
    path = os.path.join(HERE, f"{name}.onnx")
    onnx.save(model, path)
    if inputs is None:
        return
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    outs = sess.run(None, inputs)
    doc = {
        "inputs": {k: {"shape": list(v.shape), "data": [float(x) for x in v.ravel()]}
                   for k, v in inputs.items()},
        "outputs": {o.name: {"shape": list(v.shape), "data": [float(x) for x in v.ravel()]}
                    for o, v in zip(sess.get_outputs(), outs)},
    }
    with open(os.path.join(HERE, f"{name}.json"), "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    print(name, os.path.getsize(path), "bytes")


def vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def conv_bias_relu():
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    g = helper.make_graph(nodes, "conv_bias_relu", [vi("x", [1, 3, 8, 8])], [vi("y", [1, 4, 8, 8])],
                          initializer=[init("w", w(4, 3, 3, 3)), init("b", w(4, scale=0.1))])
    save("conv_bias_relu", g, inputs={"x": w(1, 3, 8, 8, scale=1.0)})


def depthwise():
    # depthwise 3x3/2 + bias + ReLU6 (Clip with constant inputs), then 1x1 conv, no bias.
    nodes = [
        helper.make_node("Conv", ["x", "dw", "db"], ["d"], name="dw", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1], strides=[2, 2], group=8),
        helper.make_node("Clip", ["d", "lo", "hi"], ["r"], name="relu6"),
        helper.make_node("Conv", ["r", "pw"], ["y"], name="pw", kernel_shape=[1, 1]),
    ]
    g = helper.make_graph(nodes, "depthwise", [vi("x", [1, 8, 9, 9])], [vi("y", [1, 6, 5, 5])],
                          initializer=[init("dw", w(8, 1, 3, 3)), init("db", w(8, scale=0.1)),
                                       init("lo", np.array(0.0, np.float32)),
                                       init("hi", np.array(6.0, np.float32)),
                                       init("pw", w(6, 8, 1, 1))])
    save("depthwise", g, inputs={"x": w(1, 8, 9, 9, scale=3.0)})


def residual():
    # Opset 9, IR 3: initializers are listed as graph inputs too. Conv + BatchNormalization
    # (folded) + ReLU, conv + bias, residual Add, ReLU, MaxPool, GlobalAveragePool, Flatten,
    # Gemm.
    c = 8
    inits = [init("w1", w(c, c, 3, 3)), init("bn_scale", 1 + w(c, scale=0.1)),
             init("bn_bias", w(c, scale=0.1)), init("bn_mean", w(c, scale=0.1)),
             init("bn_var", (1 + np.abs(w(c, scale=0.3))).astype(np.float32)),
             init("w2", w(c, c, 3, 3)), init("b2", w(c, scale=0.1)),
             init("fc_w", w(5, c)), init("fc_b", w(5, scale=0.1))]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"],
                         ["n1"], name="bn1", epsilon=1e-3),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["c2", "x"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["r2"], name="relu2"),
        helper.make_node("MaxPool", ["r2"], ["p"], name="pool", kernel_shape=[3, 3],
                         strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("GlobalAveragePool", ["p"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["y"], name="fc", transB=1),
    ]
    inputs = [vi("x", [1, c, 10, 10])] + [vi(t.name, list(t.dims)) for t in inits]
    g = helper.make_graph(nodes, "residual", inputs, [vi("y", [1, 5])], initializer=inits)
    save("residual", g, opset=9, ir=3, inputs={"x": w(1, c, 10, 10, scale=1.0)})


def gemm():
    # Symbolic batch; Gemm (transB=0, alpha, beta), ReLU, a Shape/Gather/Unsqueeze/Concat
    # chain feeding Reshape, MatMul + Add (bias), Softmax, and a Flatten back.
    inits = [init("gw", w(16, 12)), init("gb", w(12, scale=0.1)),
             init("mw", w(12, 6)), init("mb", w(6, scale=0.1)),
             init("zero", np.array([0], np.int64)), init("tail", np.array([3, 4], np.int64))]
    nodes = [
        helper.make_node("Gemm", ["x", "gw", "gb"], ["g"], name="gemm", alpha=0.5, beta=2.0),
        helper.make_node("Relu", ["g"], ["r"], name="relu"),
        helper.make_node("Shape", ["r"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "zero"], ["n"], name="gather", axis=0),
        helper.make_node("Concat", ["n", "tail"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["r", "target"], ["r3"], name="reshape"),
        helper.make_node("Flatten", ["r3"], ["r2"], name="flatten", axis=1),
        helper.make_node("MatMul", ["r2", "mw"], ["m"], name="matmul"),
        helper.make_node("Add", ["m", "mb"], ["mbias"], name="bias"),
        helper.make_node("Softmax", ["mbias"], ["y"], name="softmax", axis=-1),
    ]
    g = helper.make_graph(nodes, "gemm", [vi("x", ["batch", 16])], [vi("y", ["batch", 6])],
                          initializer=inits)
    save("gemm", g, inputs={"x": w(2, 16, scale=1.0)})


def encoder():
    # One post-norm transformer encoder layer on x (1, seq 8, hidden 16), 2 heads:
    # Q, K, V = MatMul + Add; heads by Reshape + Transpose; scores MatMul / sqrt(d);
    # Softmax; context MatMul, Transpose + Reshape back; output MatMul + Add + residual
    # Add; LayerNormalization; FFN MatMul + Add, exact (Erf) GELU, MatMul + Add, residual,
    # LayerNormalization. (No embedding: Tessel networks take float inputs.)
    s, h, heads, ffn = 8, 16, 2, 32
    d = h // heads
    inits, nodes = [], []

    def dense(x, n_in, n_out, name):
        inits.extend([init(f"{name}.w", w(n_out, n_in).T.copy()), init(f"{name}.b", w(n_out, scale=0.1))])
        nodes.append(helper.make_node("MatMul", [x, f"{name}.w"], [f"{name}.mm"], name=f"{name}.mm"))
        nodes.append(helper.make_node("Add", [f"{name}.mm", f"{name}.b"], [name], name=name))
        return name

    def ln(x, name):
        inits.extend([init(f"{name}.g", 1 + w(h, scale=0.1)), init(f"{name}.beta", w(h, scale=0.1))])
        nodes.append(helper.make_node("LayerNormalization", [x, f"{name}.g", f"{name}.beta"], [name],
                                      name=name, axis=-1, epsilon=1e-5))
        return name

    inits.append(init("heads_shape", np.array([1, s, heads, d], np.int64)))
    inits.append(init("merged_shape", np.array([1, s, h], np.int64)))
    inits.append(init("sqrt_d", np.array(np.sqrt(d), np.float32)))
    inits.append(init("sqrt2", np.array(np.sqrt(2.0), np.float32)))
    inits.append(init("one", np.array(1.0, np.float32)))
    inits.append(init("half", np.array(0.5, np.float32)))
    for t, perm in [("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3])]:
        y = dense("x", h, h, t)
        nodes.append(helper.make_node("Reshape", [y, "heads_shape"], [f"{t}.r"], name=f"{t}.r"))
        nodes.append(helper.make_node("Transpose", [f"{t}.r"], [f"{t}.t"], name=f"{t}.t", perm=perm))
    nodes += [
        helper.make_node("MatMul", ["q.t", "k.t"], ["scores"], name="scores"),
        helper.make_node("Div", ["scores", "sqrt_d"], ["scaled"], name="scale"),
        helper.make_node("Softmax", ["scaled"], ["probs"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["probs", "v.t"], ["ctx"], name="context"),
        helper.make_node("Transpose", ["ctx"], ["ctx.t"], name="ctx.t", perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["ctx.t", "merged_shape"], ["ctx.r"], name="ctx.r"),
    ]
    o = dense("ctx.r", h, h, "out")
    nodes.append(helper.make_node("Add", [o, "x"], ["res1"], name="res1"))
    h1 = ln("res1", "norm1")
    f = dense(h1, h, ffn, "ffn1")
    nodes += [
        helper.make_node("Div", [f, "sqrt2"], ["g.div"], name="gelu.div"),
        helper.make_node("Erf", ["g.div"], ["g.erf"], name="gelu.erf"),
        helper.make_node("Add", ["g.erf", "one"], ["g.add"], name="gelu.add"),
        helper.make_node("Mul", [f, "g.add"], ["g.mul"], name="gelu.mul"),
        helper.make_node("Mul", ["g.mul", "half"], ["gelu"], name="gelu.half"),
    ]
    f2 = dense("gelu", ffn, h, "ffn2")
    nodes.append(helper.make_node("Add", [f2, h1], ["res2"], name="res2"))
    ln("res2", "y")
    g = helper.make_graph(nodes, "encoder", [vi("x", [1, s, h])], [vi("y", [1, s, h])],
                          initializer=inits)
    save("encoder", g, opset=17, inputs={"x": w(1, s, h, scale=1.0)})


def bad_models():
    x = vi("x", [1, 3, 8, 8])
    y = vi("y", [1, 4, 8, 8])
    wt = init("w", w(4, 3, 3, 3))
    # An operator the importer does not map.
    g = helper.make_graph([helper.make_node("HardSwish", ["x"], ["y"], name="hs")], "bad_op",
                          [x], [vi("y", [1, 3, 8, 8])])
    save("bad_operator", g, opset=14)
    # A dilated convolution.
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="dilated",
                                            kernel_shape=[3, 3], pads=[2, 2, 2, 2],
                                            dilations=[2, 2])],
                          "bad_attr", [x], [y], initializer=[wt])
    save("bad_attribute", g)
    # A symbolic spatial size.
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "dynamic",
                          [vi("x", [1, 3, "height", "width"])], [vi("y", [1, 3, "height", "width"])])
    save("bad_dynamic", g)
    # An opset newer than the importer knows (the checker would refuse it too).
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "new",
                          [x], [vi("y", [1, 3, 8, 8])])
    save("bad_opset", g, opset=99, check=False)


if __name__ == "__main__":
    conv_bias_relu()
    depthwise()
    residual()
    gemm()
    encoder()
    bad_models()
