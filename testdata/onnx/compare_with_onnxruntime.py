"""Logits of an .onnx model from onnxruntime vs `tessel run-network model.onnx --records R` on the same
input. Usage: python compare_with_onnxruntime.py MODEL.onnx RECORDS.jsonl [TESSEL_BINARY]
(needs numpy and onnxruntime; writes x.bin and y.bin in the current folder)."""
import json, subprocess, sys
import numpy as np, onnxruntime as ort
model, records = sys.argv[1], sys.argv[2]
tessel = sys.argv[3] if len(sys.argv) > 3 else "/work/main/target/release/tessel"
sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
shape = [d if isinstance(d, int) else 1 for d in inp.shape]
x = np.random.default_rng(7).standard_normal(shape).astype(np.float32)
want = sess.run(None, {inp.name: x})[0].reshape(-1)
x.transpose(0, 2, 3, 1).astype("<f4").tofile("x.bin")  # Tessel holds images NHWC
cmd = [tessel, "run-network", model, "--records", records, "--threads", "2", "--repeat", "20",
       "--no-verify", "--input-file", "x.bin", "--output-file", "y.bin"]
out = subprocess.run(cmd, capture_output=True, text=True)
print(out.stdout[-2000:], out.stderr[-1500:])
got = np.fromfile("y.bin", dtype="<f4")
print("shapes", got.shape, want.shape)
d = np.abs(got - want)
print(f"max |tessel - onnxruntime| = {d.max():.3e} over {d.size} logits (max |logit| {np.abs(want).max():.3f}); argmax equal: {got.argmax() == want.argmax()}")
