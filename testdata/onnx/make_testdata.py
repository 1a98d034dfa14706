#!/usr/bin/env python3
"""Makes the small ONNX test models of crates/onnx/tests with onnx.helper, and their
expected outputs with onnxruntime (CPU).

For each model NAME: NAME.onnx and NAME.json = {"inputs": {name: {"shape", "data"}},
"outputs": {name: {"shape", "data"}}} with fixed random inputs (seed 0). The bad_*.onnx
files are malformed on purpose (one error each); tests also make truncated and non-ONNX
bytes themselves. `make_testdata.py --bert-base PATH` writes a BERT-base-shaped export
(random weights, about 440 MB) to PATH instead. The tests need no Python; rerun this to
regenerate:

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


def pool_activations():
    # Sigmoid, Tanh, AveragePool (pads with count_include_pad 0 and 1, strides), Concat of
    # two computed NCHW tensors along channels.
    inits = [init("w1", w(4, 3, 3, 3)), init("b1", w(4, scale=0.1)), init("w2", w(4, 3, 3, 3))]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Tanh", ["c1"], ["t"], name="tanh"),
        helper.make_node("AveragePool", ["t"], ["p1"], name="avg_exclude", kernel_shape=[3, 3],
                         strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0),
        helper.make_node("Conv", ["x", "w2"], ["c2"], name="conv2", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c2"], ["s"], name="sigmoid"),
        helper.make_node("AveragePool", ["s"], ["p2"], name="avg_include", kernel_shape=[3, 3],
                         strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1),
        helper.make_node("Concat", ["p1", "p2"], ["y"], name="concat", axis=1),
    ]
    g = helper.make_graph(nodes, "pool_activations", [vi("x", [1, 3, 9, 9])],
                          [vi("y", [1, 8, 5, 5])], initializer=inits)
    save("pool_activations", g, inputs={"x": w(1, 3, 9, 9, scale=2.0)})


def conv_transpose():
    # ConvTranspose 3x3/2, pads 1, output_padding 1, bias; ReLU; ConvTranspose 2x2/2 (the
    # registry's t2d form), no bias.
    inits = [init("w1", w(4, 3, 3, 3)), init("b1", w(3, scale=0.1)), init("w2", w(3, 2, 2, 2))]
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w1", "b1"], ["u1"], name="up1",
                         kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                         output_padding=[1, 1]),
        helper.make_node("Relu", ["u1"], ["r"], name="relu"),
        helper.make_node("ConvTranspose", ["r", "w2"], ["y"], name="up2", kernel_shape=[2, 2],
                         strides=[2, 2]),
    ]
    g = helper.make_graph(nodes, "conv_transpose", [vi("x", [1, 4, 5, 5])],
                          [vi("y", [1, 2, 20, 20])], initializer=inits)
    save("conv_transpose", g, inputs={"x": w(1, 4, 5, 5, scale=1.0)})


def split_slice():
    # Opset 13: Split with its sizes as an input, Concat of two parts, Slice with a negative
    # step (tokens reversed) and a strided Slice; two outputs.
    inits = [init("wq", w(12, 18)), init("sizes", np.array([6, 6, 6], np.int64)),
             init("rs", np.array([-1], np.int64)), init("re", np.array([-100], np.int64)),
             init("ax1", np.array([1], np.int64)), init("neg1", np.array([-1], np.int64)),
             init("s1", np.array([1], np.int64)), init("e5", np.array([5], np.int64)),
             init("st2", np.array([2], np.int64))]
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["m"], name="proj"),
        helper.make_node("Split", ["m", "sizes"], ["a", "b", "c"], name="split", axis=-1),
        helper.make_node("Concat", ["a", "b"], ["ab"], name="concat", axis=2),
        helper.make_node("Slice", ["ab", "rs", "re", "ax1", "neg1"], ["y1"], name="reverse"),
        helper.make_node("Slice", ["c", "s1", "e5", "ax1", "st2"], ["y2"], name="strided"),
    ]
    g = helper.make_graph(nodes, "split_slice", [vi("x", [1, 6, 12])],
                          [vi("y1", [1, 6, 12]), vi("y2", [1, 2, 6])], initializer=inits)
    save("split_slice", g, inputs={"x": w(1, 6, 12, scale=1.0)})


def split_opset11():
    # Opset 11: Split with the `split` attribute on NCHW channels, Slice of H (inputs form),
    # Relu, Concat back along channels.
    inits = [init("w", w(8, 4, 1, 1)), init("h0", np.array([1], np.int64)),
             init("h1", np.array([5], np.int64)), init("ax2", np.array([2], np.int64))]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[1, 1]),
        helper.make_node("Split", ["c"], ["p", "q"], name="split", axis=1, split=[3, 5]),
        helper.make_node("Relu", ["p"], ["pr"], name="relu"),
        helper.make_node("Slice", ["q", "h0", "h1", "ax2"], ["qs"], name="rows"),
        helper.make_node("Slice", ["pr", "h0", "h1", "ax2"], ["ps"], name="rows_p"),
        helper.make_node("Concat", ["qs", "ps"], ["y"], name="concat", axis=1),
    ]
    g = helper.make_graph(nodes, "split_opset11", [vi("x", [1, 4, 6, 6])],
                          [vi("y", [1, 8, 4, 6])], initializer=inits)
    save("split_opset11", g, opset=11, inputs={"x": w(1, 4, 6, 6, scale=1.0)})


def bert_graph(name, vocab, seq, hidden, heads, ffn, layers, fused_qkv, pooler, weights=None):
    """A BERT encoder in the form torch.onnx.export (opset 14) writes HuggingFace's
    BertModel: word/position/token-type embeddings by Gather (position and token-type ids
    constant), layer norms decomposed (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul,
    Add) with scalars as Constant nodes, Q/K/V by MatMul + Add then Reshape (shape by a
    Shape/Gather/Unsqueeze/Concat chain) and Transpose, scores Div by sqrt(d), Softmax, the
    context Transpose + Reshape back, exact GELU (Div, Erf, Add, Mul, Mul), and the pooler
    (Gather of token 0, Gemm-like MatMul + Add, Tanh)."""
    d = hidden // heads
    inits, nodes = [], []
    wt = weights or w
    counter = [0]

    def const(value, dtype=np.float32):
        counter[0] += 1
        n = f"/Constant_{counter[0]}"
        nodes.append(helper.make_node("Constant", [], [n + "_output_0"], name=n,
                                      value=numpy_helper.from_array(np.array(value, dtype))))
        return n + "_output_0"

    def dense(x, n_in, n_out, prefix):
        inits.extend([init(f"{prefix}.weight", wt(n_out, n_in).T.copy()),
                      init(f"{prefix}.bias", wt(n_out, scale=0.1))])
        nodes.append(helper.make_node("MatMul", [x, f"{prefix}.weight"], [f"{prefix}/MatMul_output_0"],
                                      name=f"{prefix}/MatMul"))
        nodes.append(helper.make_node("Add", [f"{prefix}.bias", f"{prefix}/MatMul_output_0"],
                                      [f"{prefix}/Add_output_0"], name=f"{prefix}/Add"))
        return f"{prefix}/Add_output_0"

    def layer_norm(x, prefix):
        inits.extend([init(f"{prefix}.weight", 1 + wt(hidden, scale=0.1)),
                      init(f"{prefix}.bias", wt(hidden, scale=0.1))])
        o = lambda s: f"{prefix}/{s}_output_0"
        nodes.extend([
            helper.make_node("ReduceMean", [x], [o("ReduceMean")], name=f"{prefix}/ReduceMean", axes=[-1]),
            helper.make_node("Sub", [x, o("ReduceMean")], [o("Sub")], name=f"{prefix}/Sub"),
            helper.make_node("Pow", [o("Sub"), const(2.0)], [o("Pow")], name=f"{prefix}/Pow"),
            helper.make_node("ReduceMean", [o("Pow")], [o("ReduceMean_1")], name=f"{prefix}/ReduceMean_1", axes=[-1]),
            helper.make_node("Add", [o("ReduceMean_1"), const(1e-12)], [o("Add")], name=f"{prefix}/Add"),
            helper.make_node("Sqrt", [o("Add")], [o("Sqrt")], name=f"{prefix}/Sqrt"),
            helper.make_node("Div", [o("Sub"), o("Sqrt")], [o("Div")], name=f"{prefix}/Div"),
            helper.make_node("Mul", [o("Div"), f"{prefix}.weight"], [o("Mul")], name=f"{prefix}/Mul"),
            helper.make_node("Add", [o("Mul"), f"{prefix}.bias"], [o("Add_1")], name=f"{prefix}/Add_1"),
        ])
        return o("Add_1")

    def heads_of(x, prefix, perm):
        # torch: x.view(x.size()[:-1] + (heads, d)).permute(...), the size by a shape chain
        o = lambda s: f"{prefix}/{s}_output_0"
        nodes.extend([
            helper.make_node("Shape", [x], [o("Shape")], name=f"{prefix}/Shape"),
            helper.make_node("Gather", [o("Shape"), const(0, np.int64)], [o("Gather")], name=f"{prefix}/Gather", axis=0),
            helper.make_node("Unsqueeze", [o("Gather"), const([0], np.int64)], [o("Unsqueeze")], name=f"{prefix}/Unsqueeze"),
            helper.make_node("Concat", [o("Unsqueeze"), const([seq, heads, d], np.int64)], [o("Concat")],
                             name=f"{prefix}/Concat", axis=0),
            helper.make_node("Reshape", [x, o("Concat")], [o("Reshape")], name=f"{prefix}/Reshape"),
            helper.make_node("Transpose", [o("Reshape")], [o("Transpose")], name=f"{prefix}/Transpose", perm=perm),
        ])
        return o("Transpose")

    inits.append(init("embeddings.word_embeddings.weight", wt(vocab, hidden, scale=1.0)))
    inits.append(init("embeddings.position_embeddings.weight", wt(512 if seq > 64 else 2 * seq, hidden, scale=0.5)))
    inits.append(init("embeddings.token_type_embeddings.weight", wt(2, hidden, scale=0.5)))
    inits.append(init("embeddings.position_ids", np.arange(seq, dtype=np.int64)[None, :]))
    inits.append(init("embeddings.token_type_ids", np.zeros((1, seq), np.int64)))
    nodes.extend([
        helper.make_node("Gather", ["embeddings.word_embeddings.weight", "input_ids"], ["/embeddings/word_embeddings/Gather_output_0"],
                         name="/embeddings/word_embeddings/Gather"),
        helper.make_node("Gather", ["embeddings.token_type_embeddings.weight", "embeddings.token_type_ids"],
                         ["/embeddings/token_type_embeddings/Gather_output_0"], name="/embeddings/token_type_embeddings/Gather"),
        helper.make_node("Add", ["/embeddings/word_embeddings/Gather_output_0", "/embeddings/token_type_embeddings/Gather_output_0"],
                         ["/embeddings/Add_output_0"], name="/embeddings/Add"),
        helper.make_node("Gather", ["embeddings.position_embeddings.weight", "embeddings.position_ids"],
                         ["/embeddings/position_embeddings/Gather_output_0"], name="/embeddings/position_embeddings/Gather"),
        helper.make_node("Add", ["/embeddings/Add_output_0", "/embeddings/position_embeddings/Gather_output_0"],
                         ["/embeddings/Add_1_output_0"], name="/embeddings/Add_1"),
    ])
    h = layer_norm("/embeddings/Add_1_output_0", "/embeddings/LayerNorm")
    for l in range(layers):
        p = f"/encoder/layer.{l}"
        if fused_qkv:
            qkv = dense(h, hidden, 3 * hidden, f"{p}/attention/self/qkv")
            parts = [f"{p}/attention/self/Split_output_{i}" for i in range(3)]
            nodes.append(helper.make_node("Split", [qkv, const([hidden] * 3, np.int64)], parts,
                                          name=f"{p}/attention/self/Split", axis=2))
            q, k, v = parts
        else:
            q = dense(h, hidden, hidden, f"{p}/attention/self/query")
            k = dense(h, hidden, hidden, f"{p}/attention/self/key")
            v = dense(h, hidden, hidden, f"{p}/attention/self/value")
        q = heads_of(q, f"{p}/attention/self/q", [0, 2, 1, 3])
        k = heads_of(k, f"{p}/attention/self/k", [0, 2, 3, 1])
        v = heads_of(v, f"{p}/attention/self/v", [0, 2, 1, 3])
        a = f"{p}/attention/self"
        nodes.extend([
            helper.make_node("MatMul", [q, k], [f"{a}/MatMul_output_0"], name=f"{a}/MatMul"),
            helper.make_node("Div", [f"{a}/MatMul_output_0", const(np.sqrt(d))], [f"{a}/Div_output_0"], name=f"{a}/Div"),
            helper.make_node("Softmax", [f"{a}/Div_output_0"], [f"{a}/Softmax_output_0"], name=f"{a}/Softmax", axis=-1),
            helper.make_node("MatMul", [f"{a}/Softmax_output_0", v], [f"{a}/MatMul_1_output_0"], name=f"{a}/MatMul_1"),
            helper.make_node("Transpose", [f"{a}/MatMul_1_output_0"], [f"{a}/Transpose_3_output_0"], name=f"{a}/Transpose_3",
                             perm=[0, 2, 1, 3]),
            helper.make_node("Reshape", [f"{a}/Transpose_3_output_0", const([1, seq, hidden], np.int64)],
                             [f"{a}/Reshape_3_output_0"], name=f"{a}/Reshape_3"),
        ])
        o = dense(f"{a}/Reshape_3_output_0", hidden, hidden, f"{p}/attention/output/dense")
        nodes.append(helper.make_node("Add", [o, h], [f"{p}/attention/output/Add_output_0"], name=f"{p}/attention/output/Add"))
        h1 = layer_norm(f"{p}/attention/output/Add_output_0", f"{p}/attention/output/LayerNorm")
        f = dense(h1, hidden, ffn, f"{p}/intermediate/dense")
        g = f"{p}/intermediate/intermediate_act_fn"
        nodes.extend([
            helper.make_node("Div", [f, const(np.sqrt(2.0))], [f"{g}/Div_output_0"], name=f"{g}/Div"),
            helper.make_node("Erf", [f"{g}/Div_output_0"], [f"{g}/Erf_output_0"], name=f"{g}/Erf"),
            helper.make_node("Add", [f"{g}/Erf_output_0", const(1.0)], [f"{g}/Add_output_0"], name=f"{g}/Add"),
            helper.make_node("Mul", [f, f"{g}/Add_output_0"], [f"{g}/Mul_output_0"], name=f"{g}/Mul"),
            helper.make_node("Mul", [f"{g}/Mul_output_0", const(0.5)], [f"{g}/Mul_1_output_0"], name=f"{g}/Mul_1"),
        ])
        f2 = dense(f"{g}/Mul_1_output_0", ffn, hidden, f"{p}/output/dense")
        nodes.append(helper.make_node("Add", [f2, h1], [f"{p}/output/Add_output_0"], name=f"{p}/output/Add"))
        h = layer_norm(f"{p}/output/Add_output_0", f"{p}/output/LayerNorm")
    nodes.append(helper.make_node("Identity", [h], ["last_hidden_state"], name="/Identity"))
    outputs = [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [1, seq, hidden])]
    if pooler:
        nodes.append(helper.make_node("Gather", [h, const(0, np.int64)], ["/pooler/Gather_output_0"],
                                      name="/pooler/Gather", axis=1))
        pd = dense("/pooler/Gather_output_0", hidden, hidden, "/pooler/dense")
        nodes.append(helper.make_node("Tanh", [pd], ["pooler_output"], name="/pooler/activation/Tanh"))
        outputs.append(helper.make_tensor_value_info("pooler_output", TensorProto.FLOAT, [1, hidden]))
    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, seq])
    return helper.make_graph(nodes, name, [ids], outputs, initializer=inits)


def bert_tiny():
    # The BERT-like encoder as torch exports it: 2 layers, fused QKV with Split, pooler.
    vocab, seq = 40, 8
    g = bert_graph("bert_tiny", vocab, seq, hidden=16, heads=2, ffn=32, layers=2, fused_qkv=True,
                   pooler=True)
    ids = rng.integers(0, vocab, size=(1, seq)).astype(np.int64)
    save("bert_tiny", g, opset=14, inputs={"input_ids": ids})


def bert_base(path):
    """BERT-base-shaped (12 layers, hidden 768, 12 heads, FFN 3072, seq 128, vocab 30522),
    random weights, as torch exports it (separate Q/K/V, no pooler): about 440 MB, so written
    to `path` outside the repository."""
    g = bert_graph("bert_base", 30522, 128, hidden=768, heads=12, ffn=3072, layers=12,
                   fused_qkv=False, pooler=False)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)],
                              producer_name="tessel-testdata")
    model.ir_version = 8
    onnx.save(model, path)
    print(path, os.path.getsize(path), "bytes")


def bad_new_operators():
    x = vi("x", [1, 4, 5, 5])
    # A dilated transposed convolution.
    g = helper.make_graph([helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up",
                                            kernel_shape=[3, 3], dilations=[2, 2])],
                          "bad_conv_transpose", [x], [vi("y", [1, 2, 9, 9])],
                          initializer=[init("w", w(4, 2, 3, 3))])
    save("bad_conv_transpose", g)
    # Average pooling that rounds up.
    g = helper.make_graph([helper.make_node("AveragePool", ["x"], ["y"], name="pool",
                                            kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)],
                          "bad_avg_pool", [x], [vi("y", [1, 4, 3, 3])])
    save("bad_avg_pool", g)
    # Split sizes that do not add up to the axis (the checker would refuse it).
    g = helper.make_graph([helper.make_node("Split", ["x"], ["a", "b"], name="split", axis=1,
                                            split=[1, 2])],
                          "bad_split", [x], [vi("a", [1, 1, 5, 5]), vi("b", [1, 2, 5, 5])])
    save("bad_split", g, opset=11, check=False)
    # Gather of a computed tensor by scattered indices.
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                           helper.make_node("Gather", ["r", "idx"], ["y"], name="pick", axis=1)],
                          "bad_gather", [x], [vi("y", [1, 2, 5, 5])],
                          initializer=[init("idx", np.array([0, 2], np.int64))])
    save("bad_gather", g)
    # A ReduceMean that is not part of a layer norm.
    g = helper.make_graph([helper.make_node("ReduceMean", ["x"], ["y"], name="mean", axes=[1])],
                          "bad_reduce_mean", [x], [vi("y", [1, 1, 5, 5])])
    save("bad_reduce_mean", g)


def bad_models():
    x = vi("x", [1, 3, 8, 8])
    y = vi("y", [1, 4, 8, 8])
    wt = init("w", w(4, 3, 3, 3))
    # An operator the importer does not map.
    g = helper.make_graph([helper.make_node("HardSwish", ["x"], ["y"], name="hs")], "bad_op",
                          [x], [vi("y", [1, 3, 8, 8])])
    save("bad_operator", g, opset=14)
    # A dilation that differs between the axes.
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="dilated",
                                            kernel_shape=[3, 3], pads=[1, 2, 1, 2],
                                            dilations=[1, 2])],
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


def grouped_dilated():
    # A grouped (2 groups) and dilated (2) 3x3 convolution with bias and ReLU, then a
    # dilated one without groups.
    nodes = [
        helper.make_node("Conv", ["x", "gw", "gb"], ["g"], name="grouped", kernel_shape=[3, 3],
                         pads=[2, 2, 2, 2], dilations=[2, 2], group=2),
        helper.make_node("Relu", ["g"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "dw"], ["y"], name="dilated", kernel_shape=[3, 3],
                         pads=[2, 2, 2, 2], dilations=[2, 2], strides=[2, 2]),
    ]
    g = helper.make_graph(nodes, "grouped_dilated", [vi("x", [1, 4, 9, 9])],
                          [vi("y", [1, 5, 5, 5])],
                          initializer=[init("gw", w(6, 2, 3, 3)), init("gb", w(6, scale=0.1)),
                                       init("dw", w(5, 6, 3, 3))])
    save("grouped_dilated", g, inputs={"x": w(1, 4, 9, 9, scale=1.0)})


def read_output():
    # An output other nodes also read (y1 feeds the bias and ReLU), listed after the final
    # one: Tessel must keep it whole and give the outputs in the model's order.
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["y1"], name="mm"),
        helper.make_node("Add", ["y1", "b"], ["z"], name="bias"),
        helper.make_node("Relu", ["z"], ["y2"], name="relu"),
    ]
    g = helper.make_graph(nodes, "read_output", [vi("x", [3, 8])],
                          [vi("y2", [3, 16]), vi("y1", [3, 16])],
                          [init("W", w(8, 16)), init("b", w(16, scale=0.5))])
    save("read_output", g, inputs={"x": w(3, 8, scale=1.0)})


def se_block():
    # Squeeze-excite twice on a small conv net: x * gate[N, C, 1, 1], the gate computed by
    # GlobalAveragePool, Conv, Relu, Conv, then Sigmoid (first block, gate second) or
    # HardSigmoid (second block, gate first).
    global rng
    rng = np.random.default_rng(29)
    inits = [init("w", w(8, 3, 3, 3)), init("b", w(8, scale=0.1))]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
    ]

    def se(x, p, act, gate_first):
        inits.extend([init(f"{p}.w1", w(4, 8, 1, 1)), init(f"{p}.b1", w(4, scale=0.1)),
                      init(f"{p}.w2", w(8, 4, 1, 1)), init(f"{p}.b2", w(8, scale=0.1))])
        nodes.extend([
            helper.make_node("GlobalAveragePool", [x], [f"{p}.pool"], name=f"{p}.pool"),
            helper.make_node("Conv", [f"{p}.pool", f"{p}.w1", f"{p}.b1"], [f"{p}.fc1"],
                             name=f"{p}.fc1", kernel_shape=[1, 1]),
            helper.make_node("Relu", [f"{p}.fc1"], [f"{p}.relu"], name=f"{p}.relu"),
            helper.make_node("Conv", [f"{p}.relu", f"{p}.w2", f"{p}.b2"], [f"{p}.fc2"],
                             name=f"{p}.fc2", kernel_shape=[1, 1]),
        ])
        if act == "HardSigmoid":
            nodes.append(helper.make_node("HardSigmoid", [f"{p}.fc2"], [f"{p}.gate"],
                                          name=f"{p}.gate", alpha=0.2, beta=0.5))
        else:
            nodes.append(helper.make_node("Sigmoid", [f"{p}.fc2"], [f"{p}.gate"],
                                          name=f"{p}.gate"))
        ins = [f"{p}.gate", x] if gate_first else [x, f"{p}.gate"]
        nodes.append(helper.make_node("Mul", ins, [f"{p}.out"], name=f"{p}.scale"))
        return f"{p}.out"

    y = se("r", "se1", "Sigmoid", False)
    inits.append(init("w2", w(8, 8, 3, 3)))
    nodes.append(helper.make_node("Conv", [y, "w2"], ["c2"], name="conv2", kernel_shape=[3, 3],
                                  pads=[1, 1, 1, 1]))
    y = se("c2", "se2", "HardSigmoid", True)
    nodes.append(helper.make_node("Identity", [y], ["y"], name="out"))
    g = helper.make_graph(nodes, "se_block", [vi("x", [1, 3, 6, 6])], [vi("y", [1, 8, 6, 6])],
                          initializer=inits)
    save("se_block", g, inputs={"x": w(1, 3, 6, 6, scale=1.0)})


def attention_mask(batch=1):
    # One attention block with the mask computed from an integer input as HuggingFace's
    # BERT does: (1 - float(mask[:, None, None, :])) * -10000 added to the scores
    # [batch, heads, seq, seq]; then Softmax, the context, and a bias row [1, hidden]
    # computed from a second input added to it.
    global rng
    rng = np.random.default_rng(30)
    seq, hidden, heads = 6, 8, 2
    name = "attention_mask" if batch == 1 else f"attention_mask_b{batch}"
    d = hidden // heads
    inits = [init("wq", w(hidden, hidden)), init("wk", w(hidden, hidden)),
             init("wv", w(hidden, hidden)),
             init("shape4", np.array([batch, seq, heads, d], np.int64)),
             init("shape3", np.array([batch, seq, hidden], np.int64)),
             init("axes", np.array([1, 2], np.int64)),
             init("one", np.array(1.0, np.float32)), init("big", np.array(-10000.0, np.float32)),
             init("scale", np.array(np.sqrt(d), np.float32))]
    nodes = []
    for n, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3])):
        nodes.extend([
            helper.make_node("MatMul", ["x", f"w{n}"], [f"{n}"], name=f"{n}.proj"),
            helper.make_node("Reshape", [n, "shape4"], [f"{n}.r"], name=f"{n}.reshape"),
            helper.make_node("Transpose", [f"{n}.r"], [f"{n}.t"], name=f"{n}.transpose",
                             perm=perm),
        ])
    nodes.extend([
        helper.make_node("Unsqueeze", ["mask", "axes"], ["m4"], name="mask.unsqueeze"),
        helper.make_node("Cast", ["m4"], ["mf"], name="mask.cast", to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one", "mf"], ["inv"], name="mask.invert"),
        helper.make_node("Mul", ["inv", "big"], ["ext"], name="mask.scale"),
        helper.make_node("MatMul", ["q.t", "k.t"], ["scores"], name="scores"),
        helper.make_node("Div", ["scores", "scale"], ["scaled"], name="scores.scale"),
        helper.make_node("Add", ["scaled", "ext"], ["masked"], name="scores.mask"),
        helper.make_node("Softmax", ["masked"], ["probs"], name="softmax", axis=-1),
        helper.make_node("MatMul", ["probs", "v.t"], ["ctx"], name="context"),
        helper.make_node("Transpose", ["ctx"], ["ctx.t"], name="context.transpose",
                         perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["ctx.t", "shape3"], ["ctx.r"], name="context.reshape"),
        helper.make_node("Relu", ["row"], ["row.relu"], name="row.relu"),
        helper.make_node("Add", ["ctx.r", "row.relu"], ["y"], name="row.add"),
    ])
    masks = [[1, 1, 0, 1, 1, 0], [1, 1, 1, 1, 0, 0]][:batch]
    g = helper.make_graph(nodes, name,
                          [vi("x", [batch, seq, hidden]),
                           helper.make_tensor_value_info("mask", TensorProto.INT64, [batch, seq]),
                           vi("row", [1, hidden])],
                          [vi("y", [batch, seq, hidden])], initializer=inits)
    save(name, g, inputs={"x": w(batch, seq, hidden, scale=1.0),
                          "mask": np.array(masks, np.int64),
                          "row": w(1, hidden, scale=1.0)})


def broadcast_sub_div():
    # Sub and Div of two computed tensors with broadcasting, both orders: an NCHW activation
    # centred by its channel means and divided by a gate (x - g, x / s, g - x, g / s2); a
    # matrix minus a computed row, divided by a computed scalar-shaped tensor.
    global rng
    rng = np.random.default_rng(31)
    inits = [init("w", w(4, 3, 1, 1)), init("b", w(4, scale=0.1)),
             init("one", np.array(1.0, np.float32)), init("scalar", np.array([], np.int64))]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[1, 1]),
        helper.make_node("GlobalAveragePool", ["c"], ["g"], name="mean"),
        helper.make_node("Sub", ["c", "g"], ["centred"], name="centre"),
        helper.make_node("Sigmoid", ["g"], ["sg"], name="gate"),
        helper.make_node("Add", ["sg", "one"], ["s"], name="gate.plus1"),
        helper.make_node("Div", ["centred", "s"], ["scaled"], name="divide"),
        helper.make_node("Sub", ["g", "scaled"], ["flipped"], name="rsub"),
        helper.make_node("Relu", ["flipped"], ["fr"], name="relu"),
        helper.make_node("Add", ["fr", "one"], ["den"], name="den"),
        helper.make_node("Div", ["g", "den"], ["y"], name="rdiv"),
        helper.make_node("Relu", ["row"], ["row.relu"], name="row.relu"),
        helper.make_node("Sub", ["m", "row.relu"], ["mr"], name="row.sub"),
        helper.make_node("Sigmoid", ["k"], ["ks"], name="k.sigmoid"),
        helper.make_node("Reshape", ["ks", "scalar"], ["k0"], name="k.scalar"),
        helper.make_node("Div", ["mr", "k0"], ["z"], name="row.div"),
    ]
    g = helper.make_graph(nodes, "broadcast_sub_div",
                          [vi("x", [1, 3, 5, 5]), vi("m", [6, 8]), vi("row", [8]), vi("k", [1])],
                          [vi("y", [1, 4, 5, 5]), vi("z", [6, 8])], initializer=inits)
    save("broadcast_sub_div", g, inputs={"x": w(1, 3, 5, 5, scale=1.0), "m": w(6, 8, scale=1.0),
                                         "row": w(8, scale=1.0), "k": w(1, scale=1.0)})


def conv_transpose_grouped():
    # A grouped (2) ConvTranspose 3x3/2, pads 1, output_padding 1, bias; ReLU.
    global rng
    rng = np.random.default_rng(32)
    inits = [init("w", w(4, 3, 3, 3)), init("b", w(6, scale=0.1))]
    nodes = [
        helper.make_node("ConvTranspose", ["x", "w", "b"], ["u"], name="up",
                         kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                         output_padding=[1, 1], group=2),
        helper.make_node("Relu", ["u"], ["y"], name="relu"),
    ]
    g = helper.make_graph(nodes, "conv_transpose_grouped", [vi("x", [1, 4, 5, 5])],
                          [vi("y", [1, 6, 10, 10])], initializer=inits)
    save("conv_transpose_grouped", g, inputs={"x": w(1, 4, 5, 5, scale=1.0)})


def bad_broadcast():
    # Two computed tensors whose shapes do not broadcast.
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                           helper.make_node("Add", ["r", "z"], ["y"], name="sum")],
                          "bad_broadcast", [vi("x", [1, 4, 5, 5]), vi("z", [1, 3, 5, 5])],
                          [vi("y", [1, 4, 5, 5])])
    save("bad_broadcast", g, check=False)
    # Two computed tensors that broadcast to a shape larger than both.
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                           helper.make_node("Mul", ["r", "z"], ["y"], name="outer")],
                          "bad_broadcast_outer", [vi("x", [1, 4, 1, 5]), vi("z", [1, 1, 3, 1])],
                          [vi("y", [1, 4, 3, 5])])
    save("bad_broadcast_outer", g)


if __name__ == "__main__":
    import sys
    if len(sys.argv) == 3 and sys.argv[1] == "--bert-base":
        bert_base(sys.argv[2])
        sys.exit(0)
    conv_bias_relu()
    depthwise()
    residual()
    gemm()
    encoder()
    bad_models()
    pool_activations()
    conv_transpose()
    split_slice()
    split_opset11()
    bert_tiny()
    bad_new_operators()
    grouped_dilated()
    read_output()
    se_block()
    attention_mask()
    attention_mask(batch=2)
    broadcast_sub_div()
    conv_transpose_grouped()
    bad_broadcast()
