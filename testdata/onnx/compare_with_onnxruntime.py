"""Outputs of an .onnx model from onnxruntime vs `tessel run-network model.onnx --records R` on the same
input. Usage: python compare_with_onnxruntime.py MODEL.onnx RECORDS.jsonl|none [TESSEL_BINARY]
(needs numpy and onnxruntime; writes x.bin and y.bin in the current folder). Float inputs are random
normal (4-D ones written NHWC, as Tessel holds images); integer inputs (token ids) are random in
[0, 1000) and written as f32 values, as Tessel takes them. The first output is compared."""
import subprocess, sys
import numpy as np, onnxruntime as ort
model, records = sys.argv[1], sys.argv[2]
tessel = sys.argv[3] if len(sys.argv) > 3 else "/work/main/target/release/tessel"
sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
rng = np.random.default_rng(7)
feed, raw = {}, []
for inp in sess.get_inputs():
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    if "int" in inp.type:
        x = rng.integers(0, 1000, size=shape).astype(np.int64)
        raw.append(x.astype("<f4").ravel())
    else:
        x = rng.standard_normal(shape).astype(np.float32)
        raw.append((x.transpose(0, 2, 3, 1) if x.ndim == 4 else x).astype("<f4").ravel())
    feed[inp.name] = x
want = sess.run(None, feed)[0]
if want.ndim == 4:
    want = want.transpose(0, 2, 3, 1)  # Tessel gives NCHW outputs as NHWC
want = want.reshape(-1)
np.concatenate(raw).tofile("x.bin")
cmd = [tessel, "run-network", model, "--threads", "2", "--repeat", "20",
       "--no-verify", "--input-file", "x.bin", "--output-file", "y.bin"]
if records != "none":
    cmd[3:3] = ["--records", records]
out = subprocess.run(cmd, capture_output=True, text=True)
print(out.stdout[-2000:], out.stderr[-1500:])
got = np.fromfile("y.bin", dtype="<f4")[: want.size]
print("shapes", got.shape, want.shape)
d = np.abs(got - want)
print(f"max |tessel - onnxruntime| = {d.max():.3e} over {d.size} outputs (max |output| {np.abs(want).max():.3f}); argmax equal: {got.argmax() == want.argmax()}")
